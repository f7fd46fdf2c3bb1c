# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=
# axe-core, which the browser tests inject into pages to check accessibility.
AXE    := tests/browser/node_modules/axe-core/axe.min.js

.PHONY: run test lint format check-python clean

run: $(VENV)/.installed
	$(BIN)/collab migrate
	$(BIN)/collab serve $(ARGS)

test: $(VENV)/.installed-test $(AXE)
	bash tests/bootstrap-system.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "collab needs Python 3.11 or newer; set PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "Could not create $(VENV). On Debian/Ubuntu: sudo apt-get install python3-venv"; \
	  rm -rf $(VENV); exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

# npm may be missing on a fresh machine: the bootstrap installs it first. The
# touch makes the file newer than the lock (npm keeps the package's old mtime),
# so this runs once, and again only when package-lock.json changes.
$(AXE): tests/browser/package-lock.json
	bash tests/bootstrap-system.sh
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache tests/artifacts \
	  tests/browser/node_modules
