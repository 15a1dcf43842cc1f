"""An exception a finalizer raises once the log is set up (`executor/cli/logsetup.py`,
`_ignored`) is logged, and handed on to the unraisable hook a `sitecustomize` installed (an
error reporter's), which the log's replaced: it never saw one."""
from __future__ import annotations

import json

import pytest

from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess

pytestmark = pytest.mark.timeout(120)

REPORTER = """
def _report(unraisable):  # an error reporter's hook, installed as the process starts
    with open(os.environ["REPORTED"], "a") as out:
        out.write(f"{type(unraisable.exc_value).__name__}: {unraisable.exc_value}\\n")

sys.unraisablehook = _report

def _patch(module):  # as the observer's server loads, after the log is set up
    import signal

    class Leaky:
        def __del__(self):
            raise ValueError("raised in a finalizer")

    Leaky()
    os.kill(os.getpid(), signal.SIGTERM)  # then the observer stops
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_exception_a_finalizer_raised_reaches_a_sitecustomize_s_hook_too(tmp_path, log_format):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(patched_at_load("waitress", REPORTER))
    reported = tmp_path / "reported"
    observer = StokerProcess(["observe", "--root", str(tmp_path / "root"), "--port", "0",
                              "--log-format", log_format], tmp_path,
                             env={"PYTHONPATH": f"{hook}:{REPO}", "REPORTED": str(reported)})
    try:
        assert observer.wait(60) == 0, observer.stderr()
        assert "exception_ignored" in observer.stderr()  # the log's, as before
        assert reported.read_text() == "ValueError: raised in a finalizer\n"  # was: no file
    finally:
        observer.close()


FAILING_REPORTER = REPORTER.replace(  # the reporter writes, then fails
    "\n\nsys.unraisablehook", '\n    raise RuntimeError("the reporter is down")\n\nsys.unraisablehook')


def test_a_sitecustomize_hook_that_raises_is_one_json_record_not_a_traceback(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    assert FAILING_REPORTER != REPORTER
    (hook / "sitecustomize.py").write_text(patched_at_load("waitress", FAILING_REPORTER))
    reported = tmp_path / "reported"
    observer = StokerProcess(["observe", "--root", str(tmp_path / "root"), "--port", "0",
                              "--log-format", "json"], tmp_path,
                             env={"PYTHONPATH": f"{hook}:{REPO}", "REPORTED": str(reported)})
    try:
        assert observer.wait(60) == 0, observer.stderr()
        assert reported.read_text() == "ValueError: raised in a finalizer\n"
        lines = observer.stderr().splitlines()
        records = [json.loads(line) for line in lines]  # was: Python's text traceback, blaming _ignored
        failed = [r for r in records if r["event"] == "unraisable_hook_failed"]
        assert len(failed) == 1 and failed[0]["error"] == "RuntimeError: the reporter is down", lines
    finally:
        observer.close()
