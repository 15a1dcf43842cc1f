"""`make mutation`: mutation testing of the pure cores, one module against its unit tests.

For each entry of MODULES (tools/mutation_rows.py) this copies the product packages, the test support, the examples
and the module's unit tests into `.mutation/SLUG/` (git-ignored), writes the `[mutmut]`
section of a `setup.cfg` there, runs `mutmut run` in it (niced by the Makefile, one worker:
the machine is shared with timing-sensitive tests) and reads back each mutant's result. It
prints one row per module: mutants, killed, survived, no tests, other (timeouts, ...) and
the score: detected (killed, timed out or caught by the type check) / mutants checked.

Each module's `.mutation/SLUG/` stays after the run, so a survivor can be read there:
`cd .mutation/SLUG && ../../.venv/bin/mutmut results` lists them, `mutmut show NAME` prints
one as a diff (docs/testing.md). `make clean` removes the directory.

Usage: python tools/mutation.py [--max-children N] [SLUG ...]   (no SLUG: every module)
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mutation_module import Module  # a row of the table (this directory is sys.path[0])
from mutation_rows import MODULES  # the table of modules

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
# What every run copies: the product packages (imported by the tests), the tests' helpers
# and data (`tests/aurora`: Aurora's own readings of its jobs) and the pytest settings. The
# module's own test files are added per module.
COPIED = ("config", "healthcheck", "executor", "tests/support", "tests/aurora", "examples", "pytest.ini")
PACKAGES = ("config", "healthcheck", "executor")  # mutmut's source paths; a module's own top directory too


@dataclass(frozen=True)
class Score:
    title: str
    counts: dict[str, int]  # mutmut's status -> how many mutants
    failed: str = ""  # why there are no results (mutmut itself failed), else ""

    @property
    def mutants(self) -> int:
        return sum(self.counts.values())

    @property
    def undetected(self) -> int:
        """Mutants no test noticed: survivors, and those no test runs at all."""
        return self.counts.get("survived", 0) + self.counts.get("no tests", 0)

    @property
    def percent(self) -> float:
        """Detected / mutants: a kill, a timeout or a type-check catch each detect one."""
        scored = self.mutants - self.counts.get("skipped", 0) - self.counts.get("not checked", 0)
        return 100.0 * (scored - self.undetected) / scored if scored else 0.0


def conftests(tests: tuple[str, ...]) -> list[str]:
    """The conftest.py of each directory from tests/ down to each test file's (the session's
    settings: Hypothesis' fixed profile, the private STOKER_ROOT; the tier's fixtures)."""
    found: list[str] = []
    for test in tests:
        for parent in reversed(Path(test.partition("::")[0]).parents[:-1]):
            name = str(parent / "conftest.py")
            if (ROOT / name).exists() and name not in found:
                found.append(name)
    return found


def prepare(module: Module) -> Path:
    """A fresh copy of what the module's tests need, with its mutmut settings."""
    work = WORK / module.slug
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tops = sorted({s.partition("/")[0] for s in module.sources} - set(PACKAGES))  # tools/
    beside = ("setup.py",) if tops else ()  # (make_venv.py's stamp is judged against it)
    for name in (*COPIED, *tops, *beside, *conftests(module.tests), *(t.partition("::")[0] for t in module.tests)):
        source, target = ROOT / name, work / name
        if not source.exists():
            raise SystemExit(f"mutation: {name} does not exist (MODULES in mutation_rows.py)")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    lines = ["[mutmut]", "source_paths =", *(f"    {p}" for p in (*PACKAGES, *tops)),
             "only_mutate =", *(f"    {s}" for s in module.sources),
             "also_copy =", "    pytest.ini", "    examples", *(f"    {b}" for b in beside), *(["    conftest.py"] if _conftest(module) else []),
             "pytest_add_cli_args_test_selection =", *(f"    {t}" for t in module.tests),
             # Hypothesis on a fixed seed, so a run's score does not depend on luck.
             "pytest_add_cli_args =", "    --hypothesis-seed=0", ""]
    (work / "setup.cfg").write_text("\n".join(lines))
    if text := _conftest(module):
        (work / "conftest.py").write_text(text)
    return work


def _conftest(module: Module) -> str:
    """The conftest.py a module's runs are given (CHILDREN_, SUBREAPER_, OWN_GROUP_CONFTEST):
    "" for none."""
    return "\n\n".join([f"SOURCES = {module.sources!r}\n" + CHILDREN_CONFTEST] * module.children
                       + [SUBREAPER_CONFTEST] * module.subreaper + [OWN_GROUP_CONFTEST] * module.own_group)


# For a module whose tests run it in child processes: the children import the mutated copy
# (where mutmut runs the tests), with the mutant under test in their environment as mutmut
# puts it there; and each test counts as reaching each of the module's functions (mutmut
# sees the calls of its own process only, and without a test for a function runs none).
# Set per test, not in mutmut's environment: a PYTHONPATH there left its stats pass blind
# (no test found for any function). In the stats pass the children run the code unmutated,
# without the mutant's name: they would record their calls with mutmut's settings, which
# they cannot find from their working directory. A child whose test gives it an environment
# of its own (`env=` with this copy on its PYTHONPATH, not os.environ's) gets the mutant's
# name added: it ran the mutated copy as the original (`test_token.py`'s executor, whose
# `secrets_hidden` line no mutant could change); in the stats pass it gets an empty name
# (the code as it is), so a test the added variable would break fails there, not as a kill.
CHILDREN_CONFTEST = """import json
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BEFORE = os.environ.get("PYTHONPATH")
_POPEN_INIT = subprocess.Popen.__init__


def _runs_this_copy(env):
    entries = str(env.get("PYTHONPATH", "")).split(os.pathsep)
    return any(entry and os.path.realpath(entry) == os.path.realpath(HERE) for entry in entries)


def _popen_init(self, *args, **kwargs):
    env = kwargs.get("env")
    if env is not None and "MUTANT_UNDER_TEST" not in env and _runs_this_copy(env):
        kwargs["env"] = {**env, "MUTANT_UNDER_TEST": os.environ.get("MUTANT_UNDER_TEST", "")}
    _POPEN_INIT(self, *args, **kwargs)


subprocess.Popen.__init__ = _popen_init


@pytest.fixture(autouse=True)
def _children_run_the_mutants():
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (HERE, BEFORE)))
        yield
        return
    from mutmut.stats import record_trampoline_hit

    for source in SOURCES:
        with open(os.path.join(HERE, source + ".meta")) as meta:
            for name in json.load(meta)["exit_code_by_key"]:
                record_trampoline_hit(name.partition("__mutmut_")[0])
    os.environ.pop("MUTANT_UNDER_TEST")  # (mutmut keeps its own copy) children run the code as it is
    try:
        yield
    finally:
        os.environ["MUTANT_UNDER_TEST"] = "stats"
"""


# For a module whose tests start a Supervisor (its reaper makes the process a child
# subreaper): mutmut forks each mutant's run from its own process, where the stats pass ran
# those tests. The flag is not inherited by a fork, but the reaper's record that it is set
# is, so a mutant's run was no subreaper (its orphans not its own: the walk's tests failed
# whatever the mutant), and mutmut's process was one: a run's orphan came to it, and its
# wait for a run took that pid (`KeyError` in `wait_for_result`). So the flag is set for
# each test and cleared after it, in whichever process the test runs; and the orphans that
# came to it during the test and ended after the test's supervisor closed its reaper (a
# shell check's leftover `sleep`, killed as it closes) are reaped then, so that mutmut's
# wait, in the process of the stats pass, meets none of them.
SUBREAPER_CONFTEST = """import ctypes
import os

import pytest

PR_SET_CHILD_SUBREAPER = 36


def _reap_ended_children():
    me = os.getpid()
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as stat:
                state, parent = stat.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state == "Z" and int(parent) == me:
            try:
                os.waitpid(int(name), os.WNOHANG)
            except ChildProcessError:
                continue


@pytest.fixture(autouse=True)
def _a_subreaper_during_each_test_only():
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    _reap_ended_children()
"""


# For a module a mutant of which may signal process group 0 (a child's pid mutated to 0, then
# killed: `os.kill(0, SIGKILL)`): mutmut forks each mutant's run in its own process group, so
# that signal kills everything it started, mutmut with it (a run ended at its 92nd of 305
# mutants so, the table never written). Each mutant's run is put in a group of its own, in
# which such a mutant kills only that run: a mutant its tests detect. (Not in mutmut's own
# process, where the stats pass runs: a session leader under `setsid`, a job's under a shell.)
OWN_GROUP_CONFTEST = """import contextlib
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _each_mutants_run_in_a_process_group_of_its_own():
    if os.getpid() != os.getpgrp():
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
    yield
"""


def run(module: Module, max_children: int) -> Score:
    work = prepare(module)
    log = work / "mutmut-run.log"
    done = _mutmut(work, log, max_children, list(module.functions))
    if done.returncode != 0:  # the other modules still run, and the table says which failed
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("\n".join([f"mutation: mutmut failed for {module.title} "
                          f"(exit {done.returncode}); the end of {log}:", *tail]), flush=True)
        return Score(module.title, {}, failed=f"mutmut failed (exit {done.returncode})")
    return score(module, work)


def _mutmut(work: Path, log: Path, max_children: int,
            names: list[str]) -> subprocess.CompletedProcess[bytes]:
    """`mutmut run` in `work` (of the mutants `names` only, when any), its output added to `log`."""
    mutmut = Path(sys.executable).parent / "mutmut"
    with log.open("a") as out:
        return subprocess.run([str(mutmut), "run", "--max-children", str(max_children), *names], cwd=work,
                              stdout=out, stderr=subprocess.STDOUT, check=False)


def _results(module: Module, work: Path) -> dict[str, int | None]:
    """Each mutant of the module's (of `functions` only, when any) → mutmut's exit code."""
    results: dict[str, int | None] = {}
    for source in module.sources:
        meta = work / "mutants" / (source + ".meta")
        if not meta.exists():
            raise SystemExit(f"mutation: no results for {source}; see {work / 'mutmut-run.log'}")
        for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
            if not module.functions or any(fnmatch.fnmatch(name, glob) for glob in module.functions):
                results[name] = code
    return results


def score(module: Module, work: Path) -> Score:
    counts: dict[str, int] = {}
    for code in _results(module, work).values():
        status = STATUS_BY_EXIT_CODE.get(code, "suspicious")
        counts[status] = counts.get(status, 0) + 1
    return Score(module.title, counts)


# mutmut 3.8.1's own reading of a mutant's exit code (mutmut.stats.status_by_exit_code; it
# cannot be imported outside a directory with mutmut settings). pytest's 1 is a failing test.
STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    1: "killed", 3: "killed", 0: "survived", 5: "no tests", 2: "interrupted", None: "not checked",
    33: "no tests", 34: "skipped", 35: "suspicious", 36: "timeout", 37: "caught by type check",
    -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault",
}


def table(scores: list[Score]) -> str:
    rows = [("module", "mutants", "killed", "survived", "no tests", "other", "score")]
    for s in scores:
        c = s.counts
        other = s.failed or ", ".join(f"{v} {k}" for k, v in sorted(c.items())
                                      if k not in ("killed", "survived", "no tests")) or "-"
        rows.append((s.title, str(s.mutants), str(c.get("killed", 0)), str(c.get("survived", 0)),
                     str(c.get("no tests", 0)), other, "-" if s.failed else f"{s.percent:.1f} %"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("slugs", nargs="*", metavar="SLUG",
                        help="modules to run: " + ", ".join(m.slug for m in MODULES))
    args = parser.parse_args(argv)
    known = {m.slug: m for m in MODULES}
    unknown = [s for s in args.slugs if s not in known]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; one of {', '.join(known)}")
    chosen = [known[s] for s in args.slugs] if args.slugs else list(MODULES)
    scores = []
    for module in chosen:
        print(f"mutation: {module.title} ({', '.join(module.sources)}) ...", flush=True)
        scores.append(run(module, args.max_children))
    print(table(scores))
    return 1 if any(s.failed for s in scores) else 0


if __name__ == "__main__":
    sys.exit(main())
