# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv with python3 when it is missing and installs the project
# into it (editable, so the cffi extension is built in place), then runs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# Rebuild the install when the build inputs change (the C helpers live in _build.py).
BUILD_INPUTS := pyproject.toml setup.py uring/_build.py uring/crc32c.h statelets/_index_build.py
COMPAT_VERSIONS ?= $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.(12|13)(\.|$$)')

.PHONY: demo test test-compat bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel cffi

$(VENV)/.installed: $(PY) $(BUILD_INPUTS)
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: $(PY) $(BUILD_INPUTS)
	$(PIP) install -e '.[test]'
	@touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(PY) samples/demo.py

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# Runs the whole suite on every Python 3.12/3.13 that pyenv has, each in its
# own venv (curio 1.6 needs uring.curio_compat there). Each
# interpreter builds its own ABI-tagged extension in place, so they coexist.
test-compat:
	@test -n "$(COMPAT_VERSIONS)" || { echo "no Python 3.12/3.13 found by pyenv"; exit 1; }
	@set -e; for v in $(COMPAT_VERSIONS); do \
	  echo "== Python $$v"; \
	  test -x .venv-$$v/bin/python || PYENV_VERSION=$$v python -m venv .venv-$$v; \
	  .venv-$$v/bin/python -m pip --disable-pip-version-check -q install --upgrade pip setuptools wheel cffi; \
	  .venv-$$v/bin/python -m pip --disable-pip-version-check -q install -e '.[test]'; \
	  .venv-$$v/bin/python -m pytest -q; \
	done

# Quick runs of every benchmark (each prints a table, then one JSON line).
bench: $(VENV)/.installed
	$(PIP) install -e '.[bench]'
	$(PY) benchmarks/io_bench.py --quick
	$(PY) benchmarks/actor_bench.py --quick
	$(PY) benchmarks/state_bench.py --quick
	$(PY) benchmarks/dataflow_bench.py --quick

clean:
	rm -rf $(VENV) .venv-3.* build *.egg-info uring/_uring_c*.so uring/_uring_c.c statelets/_index_c*.so statelets/_index_c.c .pytest_cache
