# Stoker: two commands get you going — `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXAMPLE ?= examples/hello_world.aurora
DIST    ?= dist

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

# dist/stoker-VERSION-py3-none-any.whl and dist/stoker.pyz (see tools/build_dist.py).
# The dist extra (shiv, wheel, setuptools) is installed once per venv and setup.py change.
dist: $(STAMP)
	test $(VENV)/.dist-installed -nt setup.py || \
	  { $(BIN)/python -m pip install -q -e '.[dist]' && touch $(VENV)/.dist-installed; }
	$(BIN)/python tools/build_dist.py --dist-dir $(DIST)

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache
