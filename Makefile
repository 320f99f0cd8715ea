# Everything installs into .venv from pyproject.toml; nothing by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv test unit hil fuzz demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q --durations=12 tests hil_tests

unit: $(STAMP)
	$(BIN)/pytest -q tests

hil: $(STAMP)
	$(BIN)/pytest -q hil_tests

# The fuzz suites at the full count (`make test` runs them CI-sized): hypothesis
# examples per host-side property, seeded cases per device-side suite on MicroPython.
FUZZ_EXAMPLES ?= 2000
FUZZ_CASES ?= 100000

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_CASES=$(FUZZ_CASES) $(BIN)/pytest -q \
		--hypothesis-show-statistics tests/host/test_fuzz_*.py tests/test_fuzz_firmware.py

demo: $(STAMP)
	$(BIN)/cabctl demo --seconds 40

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache
