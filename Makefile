# make run    the whole system on this machine (API+admin :8000, worker, beat, Flower :5555;
#             other ports: make run WEB_PORT=8001 FLOWER_PORT=5556)
# make admin-password   the admin password make run generated, again
# make test   ruff, mypy, then the whole test suite against real PostgreSQL, Redis and Celery workers
# make check  ruff and mypy alone
# make test-fast  the tests that start no worker (or other) process
# make bench  the benchmarks (never part of make test)
# With DATABASE_URL / REDIS_URL unset, private servers are started (and stopped) under .devdata/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run admin-password test test-fast check bench lint clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version'
	@test -x $(PY) || { echo "install 1/3: creating $(VENV)/"; $(PYTHON) -m venv $(VENV); }
	@echo "install 2/3: upgrading pip"
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "install 3/3: the pinned requirements (about 360 MB the first time: a few minutes)"
	@$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(INSTALLED)
	@echo "install: done"

run: $(INSTALLED)
	@$(PY) -m devtools.run

admin-password: $(INSTALLED)
	@$(PY) -m devtools.run --admin-password

# Three pytest processes (pytest-xdist) on this 2-core machine, a test file to each at a time, the
# longest files first (tests/conftest.py; xdist would otherwise hand out the files with most tests
# first, leaving a one-test file of minutes for the end): the end-to-end tests spend much of their
# time waiting on worker processes, so a third process fills the cores the other two leave idle
# (back to back on 2026-12-03: 6 min 32 s against 7 min 55 s with two).
# TEST_PROCESSES=1 runs them in one.
TEST_PROCESSES ?= 3

PYTEST := $(PY) -m devtools.private_servers --data .devdata/test -- $(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

# mypy's Django plugin loads the settings, which need the two URLs (nothing connects to them); its
# incremental cache is .mypy_cache.
MYPY := DATABASE_URL=$${DATABASE_URL:-postgres://localhost/unused} REDIS_URL=$${REDIS_URL:-redis://localhost/0} \
	$(VENV)/bin/mypy

test: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(MYPY)
	$(PYTEST) $(PYTEST_ARGS)

# The tests marked `worker` start processes (Celery workers, beat, Flower, web servers); the rest need
# only PostgreSQL and Redis. An unmarked test that starts one through tests/support/processes.py fails.
test-fast: $(INSTALLED)
	$(PYTEST) -m "not worker" $(PYTEST_ARGS)

# Lint and type check, as make test starts (ruff's rule families: pyproject.toml).
check: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(MYPY)

bench: $(INSTALLED)
	$(PY) -m devtools.private_servers --data .devdata/bench -- $(PY) -m bench

# make test leaves the format check out: a formatting difference is no failure of the system.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .devdata staticfiles
