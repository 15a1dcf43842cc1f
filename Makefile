# Stoker: two commands get you going — `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXAMPLE ?= examples/hello_world.aurora

.PHONY: run test test-fast faults bench dist clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/stoker run $(EXAMPLE)

test: $(STAMP)
	$(BIN)/python -m pytest -q

faults: $(STAMP)
	STOKER_FAULTS_FULL=1 $(BIN)/python -m pytest -q -m faults tests/faults

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

dist: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dist]'
	rm -rf dist build
	$(BIN)/python -m pip wheel --no-deps -w dist .
	$(BIN)/shiv -q -c stoker -o dist/stoker.pyz -p '/usr/bin/env python3' .
	@ls -l dist

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache
