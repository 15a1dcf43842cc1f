"""tests/support/forkguard.py: a forked child of a test that raises or returns instead of
ending with `os._exit` ends at the first pytest hook it reaches (exit 70), named, and the
test process goes on alone; a child that begins a session of its own is left to it. Real
pytest runs of a small test file, in a child python."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.forkguard import ESCAPED_EXIT
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

ESCAPES = f"""
import os

def _child_status(pid):
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def test_raises_in_the_child():
    pid = os.fork()
    if pid == 0:
        raise RuntimeError("the child got out")
    assert _child_status(pid) == {ESCAPED_EXIT}

def test_returns_in_the_child():
    pid = os.fork()
    if pid != 0:
        assert _child_status(pid) == {ESCAPED_EXIT}

def test_a_child_s_own_session():  # as mutmut's children run each mutant's tests: not escaped
    pid = os.fork()
    if pid == 0:
        import pytest
        code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "tests.support.forkguard",
                            __file__ + "::test_after_them"])
        os._exit(10 + int(code))
    assert _child_status(pid) == 10

def test_after_them():
    assert True
"""


def run_pytest(tmp_path: Path, *plugins: str, test: str = "") -> subprocess.CompletedProcess[str]:
    """A pytest run of ESCAPES (`test`: that test alone) with `plugins`."""
    (tmp_path / "test_escapes.py").write_text(ESCAPES)
    args = [arg for plugin in plugins for arg in ("-p", plugin)]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-p", "no:hypothesispytest", "--rootdir", str(tmp_path), *args,
                           f"{tmp_path / 'test_escapes.py'}{test and '::' + test}"],
                          cwd=REPO, capture_output=True, text=True, timeout=50)


def test_a_child_that_gets_back_into_pytest_ends_there_named_and_the_run_goes_on(tmp_path):
    done = run_pytest(tmp_path, "tests.support.forkguard")
    assert (done.returncode, done.stdout.count("passed"), "failed" in done.stdout) == (0, 1, False), done
    assert done.stdout.rstrip().splitlines()[-1].startswith("4 passed in "), done.stdout
    told = done.stderr.split("forkguard: ")[1:]
    assert [line.split(": a forked child")[0] for line in told] == [
        "test_escapes.py::test_raises_in_the_child (call)", "test_escapes.py::test_returns_in_the_child (call)"], done.stderr
    assert "RuntimeError: the child got out" in told[0] and "(no exception: it returned)" in told[1], done.stderr


def test_without_the_guard_the_child_reports_as_the_test_process(tmp_path):
    """The control: without the plugin the escaped children report and sum up too (the
    harm the guard prevents), so the test above tells the two apart. One test: each child
    that got out would run the rest of the file again."""
    done = run_pytest(tmp_path, test="test_raises_in_the_child")
    summaries = re.findall(r"^=*\s*\d+ (?:passed|failed).* in [\d.]+s", done.stdout, re.M)
    assert "RuntimeError: the child got out" in done.stdout and len(summaries) == 2, done
    assert "forkguard" not in done.stderr, done.stderr
