# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet -c constraints.txt
DEMO_STAMP := $(VENV)/.demo-stamp
TEST_STAMP := $(VENV)/.test-stamp

.PHONY: demo test lint install clean browser

# What the demo needs: Despina and its runtime libraries, nothing for development.
$(DEMO_STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, pinned (constraints.txt), so nothing pulls a CUDA build.
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $(DEMO_STAMP)

# What the tests need besides: linters, Ray, PostgreSQL's driver, S3 through moto, a browser driver.
$(TEST_STAMP): $(DEMO_STAMP)
	$(PIP) -e '.[dev]'
	touch $(TEST_STAMP)

# The console tests drive the system's Chromium (Playwright cannot download its own here):
# installed with apt where this user may; elsewhere a loud warning, and those tests fail.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "WARNING: no Chromium, and it cannot be installed here (apt-get install chromium):" \
	       "the console tests will fail"

install: $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/despina demo --out demo-output

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two test processes (pytest-xdist), each a module at a time, so a module's fixtures are
# made once: the suite alone keeps about one of two cores busy. tests/__init__.py gives each
# process one OpenMP thread; tests/conftest.py deals the heaviest modules first.
TEST_WORKERS ?= 2
test: lint browser
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
