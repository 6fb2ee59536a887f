"""Benchmarks of the CLAW.AI task system (`make bench`; never part of `make test`)."""
