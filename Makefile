# Stoker: two commands get you going — `make run` and `make test`.
PY      ?= python3
# A recipe's pipe fails when any of its commands does (`coverage report | tail`), not only its last.
SHELL   := bash
.SHELLFLAGS := -o pipefail -c
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
EXAMPLE ?= examples/hello_world.aurora
DIST    := dist
RUNS    := .run

.PHONY: FORCE run test test-fast test-pythons test-deps-oldest test-reproducible lint faults coverage bench dist mutation fuzz clean zookeeper browser prometheus hosttools

# The venv: made, made again when it cannot be used (its python gone, no pip: a Ctrl-C while
# it was made), installed (the checkout editable, with the test extra) and stamped last, by one
# make of the checkout at a time (tools/make_venv.py). Looked at again whenever its python is
# gone, and whenever PY is given (`make test PY=python3.12`): then it must be that Python's.
# PY names one program, quoted in the recipes (a path with a space runs as one), not a command
# line: `PY="env python3"` or `PY="python3 -X dev"` is looked for as one file of that name.
SAME_PY := $(if $(filter command line environment,$(origin PY)),--same-python)
ifneq ($(SAME_PY)$(if $(realpath $(BIN)/python),,gone),)
$(STAMP): FORCE
endif
$(STAMP): setup.py
	"$(PY)" tools/make_venv.py $(SAME_PY) "$(VENV)"

FORCE:

# Each `make run` gets a fresh sandbox under .run/ (git-ignored; `make clean` removes it), or
# under RUNS=DIR: a checkout this user cannot write (a read-only mount) says to give one.
run: $(STAMP)
	@mkdir -p "$(RUNS)" || { echo "make run: no $(RUNS) for the run's sandbox: give a directory you can write, make run RUNS=DIR" >&2; exit 2; }
	$(BIN)/stoker run "$(EXAMPLE)" --sandbox "$(RUNS)/$$(basename "$(EXAMPLE)" .aurora)-$$(date +%Y%m%d-%H%M%S)"

# The whole suite: lint (ruff, mypy), then every test tier (the fault suite's short version).
# The unit and integration tiers run on TEST_WORKERS pytest-xdist workers (3 on CI's 2 cores:
# the tests wait on processes, servers and timers about a third of their time, docs/testing.md
# §13); then the end-to-end and fault tiers on LATER_WORKERS (4: they wait more), each module on
# one worker (--dist loadfile: its module fixtures made once); the tests marked `serial`, of any tier (they look at
# or change something the whole host shares: its mount table, the venv, its next pid), run
# last, alone (§13). A failure in one run still lets the next ones run, and any fails the target.
TEST_WORKERS ?= 3
LATER_WORKERS ?= 4
LATER_TIERS  := --ignore=tests/unit --ignore=tests/integration
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m 'not serial' tests/unit tests/integration; status=$$?; \
	$(BIN)/python -m pytest -q -n $(LATER_WORKERS) --dist loadfile -m 'not serial' $(LATER_TIERS) || status=1; \
	$(BIN)/python -m pytest -q -m serial tests || status=1; \
	exit $$status

# The unit tests only: the pure cores and the layering rules (about a minute).
test-fast: lint
	$(BIN)/python -m pytest -q tests/unit

# The unit tests and the start-up smoke (tests/e2e/test_startup_imports.py) again on every
# other CPython >= 3.11 this machine has (pyenv's, python3.N on PATH), each in a venv of its
# own (.venv-3.N, made on first use): by hand, not part of `make test` (docs/testing.md
# §5, "Other Python versions"). PYTEST_ARGS=--tiers runs every tier there as `test` does (three workers,
# the serial tests last); PYTEST_ARGS=tests every tier in one run on one worker.
PYTEST_ARGS ?=
test-pythons: $(STAMP)
	$(BIN)/python tools/test_pythons.py $(PYTEST_ARGS)

# The unit tests, and the attrs code cache's (it serves steps of attrs' internals: about 25 s
# more), on the oldest version of each dependency setup.py admits (its `>=`, `~=` bounds,
# pinned in tools/deps-oldest.txt and given to pip as constraints), in .venv-oldest: made
# afresh when setup.py or that file changes (about 30 s), then about two minutes a run. By hand, not
# part of `make test`: CI tests what pip resolves today, the newest (docs/testing.md §9).
# OLDEST_TESTS=tests runs every tier there instead.
OLDEST_VENV  := .venv-oldest
OLDEST_TESTS ?= tests/unit tests/integration/test_codecache.py tests/integration/test_codecache_files.py tests/integration/test_codecache_lock.py
$(OLDEST_VENV)/.installed: setup.py tools/deps-oldest.txt
	@command -v cc >/dev/null || echo "test-deps-oldest: no C compiler (cc): pip builds psutil 5.9.0 here (no wheel for CPython 3.11), which needs one and Python's headers (gcc, python3-dev; docs/testing.md §9)" >&2
	rm -rf $(OLDEST_VENV)
	"$(PY)" -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	STOKER_BUILD_VERSION=0.1.0 $(OLDEST_VENV)/bin/python -m pip install -q -c tools/deps-oldest.txt -e '.[test]'
	touch $@

test-deps-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m pip check
	$(OLDEST_VENV)/bin/python -m pytest -q $(OLDEST_TESTS)

# Debian's ZooKeeper server, for the announcer's integration tests (they are skipped without
# it, except in CI). Installs it only when it is missing; needs root, as apt-get does.
ZOOKEEPER_JAR := /usr/share/java/zookeeper.jar
zookeeper:
	@if [ -e $(ZOOKEEPER_JAR) ] && command -v java >/dev/null; then \
	  echo "zookeeper: installed ($(ZOOKEEPER_JAR))"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends zookeeper; \
	fi

# Debian's chromium and chromium-driver, for the observer's browser tests (skipped without
# them, except in CI). Installs them only when missing; needs root, as apt-get does.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
	  echo "browser: installed (/usr/bin/chromium, /usr/bin/chromedriver)"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	fi

# Debian's Prometheus server and promtool (2.42), for the /metrics tests against a real
# Prometheus (skipped without it, except in CI). Installs it only when missing; needs root, as
# apt-get does. About 40 s (update, 22 MB download, install) and 320 MB (96 MB of it prometheus,
# 218 MB its web UI's time zones).
prometheus:
	@if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then \
	  echo "prometheus: installed (/usr/bin/prometheus, /usr/bin/promtool)"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; \
	fi

# Debian's busybox (the watchdog's script under busybox sh, tests/integration/
# test_watchdog_shells.py), s6 (the example s6 service under s6-supervise,
# tests/e2e/test_supervisors.py) and runit (the example runit service under runsv, the full
# fault suite's), each test skipped without them. Installs them only when missing; needs root,
# as apt-get does. About 10 s and 2.5 MB.
hosttools:
	@if command -v busybox >/dev/null && command -v s6-supervise >/dev/null && command -v runsv >/dev/null; then \
	  echo "hosttools: installed (busybox, s6-supervise, runsv)"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends busybox s6 runit; \
	fi

# A checkout this user cannot write (a read-only mount, another user's) keeps no lint caches:
# ruff failed making its own, with a backtrace, and mypy with an INTERNAL ERROR.
NO_CACHE := $(shell test -w . || echo yes)
lint: $(STAMP)
	$(BIN)/ruff check $(if $(NO_CACHE),--no-cache) .
	$(BIN)/mypy $(if $(NO_CACHE),--cache-dir=/dev/null)

faults: $(STAMP)
	STOKER_FAULTS_FULL=1 $(BIN)/python -m pytest -q -m faults tests/faults

# Writes .bench/RESULTS.md (git-ignored); docs/benchmarks.md keeps the run we publish, the README its summary.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py --output .bench/RESULTS.md

# dist/stoker-VERSION-py3-none-any.whl and dist/stoker.pyz (see tools/build_dist.py).
# The dist extra (shiv, wheel, setuptools) is installed once per venv and setup.py change.
dist: $(STAMP)
	"$(PY)" tools/make_venv.py --extra dist "$(VENV)"
	$(BIN)/python tools/build_dist.py --dist-dir "$(DIST)"

# Both artifacts built twice from HEAD, in two fresh clones under a different umask, TZ and
# LANG, and compared byte for byte (tools/check_reproducible.py, about 30 s; docs/testing.md §8).
# By hand: tests/e2e/test_dist.py checks what made two builds differ on its one build.
test-reproducible: $(STAMP)
	"$(PY)" tools/make_venv.py --extra dist "$(VENV)"
	$(BIN)/python tools/check_reproducible.py

# Mutation testing of the pure cores against their unit tests (tens of minutes; not part of
# `make test`): prints mutants, survivors and the score per module. MUTATE="health service"
# runs only those (tools/mutation.py lists them). Niced, one worker: the machine is shared.
# Work and results stay in .mutation/ (git-ignored); docs/testing.md reads a survivor.
MUTATE ?=
mutation: $(STAMP)
	"$(PY)" tools/make_venv.py --extra mutation "$(VENV)"
	nice -n 19 $(BIN)/python tools/mutation.py --max-children 1 $(MUTATE)

# Coverage-guided fuzzing of every decoder of outside bytes (tests/fuzz/, atheris), each
# harness for FUZZ_SECONDS, niced, one at a time; FUZZ="mesos_event config" runs only those.
# Not part of `make test` (atheris is no CI dependency). Corpora and findings in .fuzz/
# (git-ignored); docs/testing.md says what each harness checks and how to read a finding.
FUZZ ?=
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	"$(PY)" tools/make_venv.py --extra fuzz "$(VENV)"
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m tests.fuzz.run $(FUZZ)

# Line and branch coverage of executor/, healthcheck/ and config/ over the four tiers as
# `make test` runs them (the processes the tests start measure themselves: pyproject.toml's
# [tool.coverage.run] patch), niced; then one combined report: the text summary and htmlcov/
# (git-ignored). Slower than `make test` and not part of it (docs/testing.md §14). The
# data files go to .coverage-data/, mode 1777: the tests run `stoker` as other users too, and
# in other directories, so its absolute path is theirs, quoted (a checkout at "/a b/stoker" had
# `rm -rf /a b/stoker/.coverage-data` remove /a). COVERAGE_TIERS="tests/unit" measures those
# only (still combined and reported).
COVERAGE_TIERS ?=
COVERAGE_DATA  := .coverage-data
COVERAGE_RUN   := COVERAGE_FILE="$(CURDIR)/$(COVERAGE_DATA)/.coverage" nice -n 10 $(BIN)/coverage run -m pytest -q
coverage: $(STAMP)
	"$(PY)" tools/make_venv.py --extra coverage "$(VENV)"
	rm -rf .coverage $(COVERAGE_DATA) && mkdir -m 1777 $(COVERAGE_DATA)
	if [ -n "$(COVERAGE_TIERS)" ]; then $(COVERAGE_RUN) -n $(TEST_WORKERS) $(COVERAGE_TIERS) || true; else \
	  $(COVERAGE_RUN) -n $(TEST_WORKERS) -m 'not serial' tests/unit tests/integration || true; \
	  $(COVERAGE_RUN) -n $(LATER_WORKERS) --dist loadfile -m 'not serial' $(LATER_TIERS) || true; \
	  $(COVERAGE_RUN) -m serial tests || true; fi
	$(BIN)/coverage combine -q $(COVERAGE_DATA) 2>&1 | grep -v "^  data._warn" || true
	$(BIN)/coverage report --sort=miss | tail -n 60
	$(BIN)/coverage html -q
	@echo "coverage: htmlcov/index.html"

clean:
	rm -rf "$(VENV)" .venv-3.* "$(OLDEST_VENV)" "$(DIST)" build *.egg-info .pytest_cache .mypy_cache .ruff_cache "$(RUNS)" .bench .mutation .fuzz htmlcov .coverage "$(COVERAGE_DATA)"
