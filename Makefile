# Everything installs into .venv from pyproject.toml; nothing by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv test unit hil demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q tests hil_tests

unit: $(STAMP)
	$(BIN)/pytest -q tests

hil: $(STAMP)
	$(BIN)/pytest -q hil_tests

demo: $(STAMP)
	$(BIN)/cabctl demo --seconds 40

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache
