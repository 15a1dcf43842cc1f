"""The next run's log directory, made while the owner is idle (`executor/procs/logstage.py`):
a process that has restarted gets `.logs/PROCESS/.next-(k+1)` once the supervisor is told it
is idle, and its next run starts there, renamed to `.logs/PROCESS/(k+1)`. Whatever a task
does to the staged directory meanwhile, nothing is written outside the sandbox's `.logs`,
and a run whose staged directory is gone takes the ordinary path. Real processes, real
directories and symlinks.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.spec import LoggerSpec, LogMode
from tests.support.stoker_proc import REPO
from tests.support.supervision import Harness

pytestmark = pytest.mark.timeout(30)


def names(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def restarted(h: Harness, name: str = "p", **kw) -> Path:  # type: ignore[no-untyped-def]
    """Runs 0 and 1 of `name` (each says its run number and exits), then the idle moment;
    returns the process's log directory."""
    for run in (0, 1):
        h.spawn(name, f"echo run {run}", run=run, **kw)
        assert h.next_exit().run == run
    h.sup.idle()
    return h.sandbox / ".logs" / name


def test_a_restarted_process_gets_its_next_run_directory_when_the_supervisor_is_idle(harness):
    logs = restarted(harness)
    assert names(logs) == [".next-2", "0", "1"]
    assert names(logs / ".next-2") == ["stderr", "stdout"]
    harness.spawn("p", "echo run 2", run=2)
    assert harness.next_exit().run == 2
    assert names(logs) == ["0", "1", "2"]  # renamed into place, nothing else left staged
    assert (logs / "2" / "stdout").read_text() == "run 2\n"
    assert (logs / "1" / "stdout").read_text() == "run 1\n"


def test_a_first_run_and_a_rotating_logger_stage_nothing(harness):
    harness.spawn("once", "true")
    harness.next_exit()
    rotating = restarted(harness, "rot", logger=LoggerSpec(mode=LogMode.ROTATE))
    harness.sup.idle()
    assert names(harness.sandbox / ".logs" / "once") == ["0"]
    assert names(rotating) == ["0", "1"]


def test_close_removes_what_is_still_staged(harness):
    logs = restarted(harness)
    assert ".next-2" in names(logs)
    harness.sup.close()
    assert names(logs) == ["0", "1"]


def test_a_staged_directory_the_task_removed_leaves_the_run_to_the_ordinary_path(harness):
    logs = restarted(harness)
    shutil.rmtree(logs / ".next-2")
    harness.spawn("p", "echo run 2", run=2)
    assert harness.next_exit().run == 2
    assert (logs / "2" / "stdout").read_text() == "run 2\n"
    assert names(logs) == ["0", "1", "2"]


def test_a_symlink_put_in_place_of_the_staged_directory_leads_nowhere_outside(harness, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    logs = restarted(harness)
    os.rename(logs / ".next-2", logs / "moved")  # the task moves it away ...
    os.symlink(outside, logs / ".next-2")  # ... and plants a link to elsewhere
    with pytest.raises(Exception, match="outside"):  # RUN would be that link: refused
        harness.spawn("p", "echo run 2", run=2)
    assert list(outside.iterdir()) == []
    assert os.path.islink(logs / "2")  # the task's link, renamed by it; never written through


def test_a_stale_staged_directory_from_a_killed_supervisor_is_reused(harness, tracker):
    logs = restarted(harness)
    harness.sup.close()
    (logs / ".next-3").mkdir()  # as a supervisor killed with -9 while run 2 ran left it
    (logs / ".next-3" / "stdout").write_text("")
    again = Harness(harness.sandbox, tracker, create=False)
    try:
        again.spawn("p", "echo run 2", run=2)
        assert again.next_exit().run == 2
        again.sup.idle()
        assert names(logs) == [".next-3", "0", "1", "2"]
        again.spawn("p", "echo run 3", run=3)
        assert again.next_exit().run == 3
        assert (logs / "3" / "stdout").read_text() == "run 3\n"
        assert names(logs) == ["0", "1", "2", "3"]
    finally:
        again.sup.close()


def test_an_idle_moment_stages_at_most_two_runs_and_the_next_one_the_rest(harness):
    for name in ("a", "b", "c"):
        for run in (0, 1):
            harness.spawn(name, "true", run=run)
            assert harness.next_exit().run == run
    harness.sup.idle()
    staged = [n for n in ("a", "b", "c") if ".next-2" in names(harness.sandbox / ".logs" / n)]
    assert len(staged) == 2
    harness.sup.idle()
    assert all(".next-2" in names(harness.sandbox / ".logs" / n) for n in ("a", "b", "c"))


# A restart's fork does none of the log bookkeeping (the runs' bound, the next run's
# staging): the owner's next idle moment does, before it stages. Seen as what the first
# restart's spawn loads, in a fresh interpreter (a pytest worker loaded both long ago).
FIRST_RESTART_LOADS = """
import os, queue, sys, tempfile
from pathlib import Path
from config.spec import ProcessSpec
from executor.procs.supervisor import Supervisor
events = queue.SimpleQueue()
with tempfile.TemporaryDirectory() as sandbox:
    sup = Supervisor(sandbox=Path(sandbox), task_label="t.0", env={"PATH": os.environ["PATH"]},
                     post=events.put)
    try:
        spec = ProcessSpec("p", "exit 3")
        sup.spawn(spec, 0)
        events.get(timeout=10)
        sup.idle()
        before = set(sys.modules)
        sup.spawn(spec, 1)
        loaded_by_spawn = sorted(m for m in sys.modules if m not in before)
        events.get(timeout=10)
        sup.idle()
        loaded_when_idle = sorted(m for m in sys.modules if m not in before)
        staged = sorted(os.listdir(Path(sandbox) / ".logs" / "p"))
    finally:
        sup.close()
assert loaded_by_spawn == [], loaded_by_spawn
assert loaded_when_idle == ["executor.procs.logstage", "executor.procs.runprune"], loaded_when_idle
assert staged == [".next-2", "0", "1"], staged
print("ok")
"""


def test_a_restarts_fork_leaves_the_log_bookkeeping_to_the_next_idle_moment():
    done = subprocess.run([sys.executable, "-c", FIRST_RESTART_LOADS], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
