# make run    the whole system on this machine (API+admin :8000, worker, beat, Flower :5555)
# make test   ruff, mypy, then the whole test suite against real PostgreSQL, Redis and Celery workers
# make test-fast  the tests that start no worker (or other) process
# make bench  the benchmarks (never part of make test)
# With DATABASE_URL / REDIS_URL unset, private servers are started (and stopped) under .devdata/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test test-fast check bench lint clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(INSTALLED)

run: $(INSTALLED)
	$(PY) -m devtools.run

# Two pytest processes (pytest-xdist), a test file to each at a time: the end-to-end tests spend most
# of their time waiting on worker processes. TEST_PROCESSES=1 runs them in one.
TEST_PROCESSES ?= 2

PYTEST := $(PY) -m devtools.private_servers --data .devdata/test -- $(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

test: check
	$(PYTEST) $(PYTEST_ARGS)

# The tests marked `worker` start processes (Celery workers, beat, Flower, web servers); the rest need
# only PostgreSQL and Redis.
test-fast: $(INSTALLED)
	$(PYTEST) -m "not worker" $(PYTEST_ARGS)

# Lint and type check first, so a mistake fails in seconds rather than after the suite. mypy's
# Django plugin loads the settings, which need the two URLs (nothing connects to them); its
# incremental cache is .mypy_cache.
check: $(INSTALLED)
	$(VENV)/bin/ruff check .
	DATABASE_URL=$${DATABASE_URL:-postgres://localhost/unused} REDIS_URL=$${REDIS_URL:-redis://localhost/0} \
		$(VENV)/bin/mypy

bench: $(INSTALLED)
	$(PY) -m devtools.private_servers --data .devdata/bench -- $(PY) -m bench

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .devdata staticfiles
