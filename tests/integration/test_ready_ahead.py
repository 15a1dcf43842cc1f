"""A supervisor's runs readied ahead (`Supervisor.ready_ahead`): their log directories and
files made before the first step, taken by their spawns; what no spawn took is removed at
the next idle moment or at close, and nothing of it stays open. Real shells."""
from __future__ import annotations

import os
import shutil
import stat
import threading

import pytest

from config.spec import LoggerSpec, LogMode, ProcessSpec
from executor.procs import runlogs
from tests.support.supervision import Harness, fds_on
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def _spec(name: str, cmdline: str = "true", **kw) -> ProcessSpec:  # type: ignore[no-untyped-def]
    return ProcessSpec(name=name, cmdline=cmdline, **kw)


def test_a_run_readied_ahead_writes_to_the_files_made_then_and_holds_nothing_after(tmp_path, tracker):
    h = Harness(tmp_path / "sandbox", tracker)
    a, b = _spec("a", "echo out-a; echo err-a >&2"), _spec("b", "echo out-b")
    try:
        h.sup.ready_ahead([(a, 0), (b, 0)])
        made = {name: os.stat(h.log(name)).st_ino for name in ("a", "b")}  # before any spawn
        assert fds_on(h.sandbox / ".logs" / "a" / "0") == 1  # its directory, until the spawn
        pids = h.sup.spawn_many([(a, 0), (b, 0)])
        for pid in pids:
            assert isinstance(pid, int)
            tracker.add(pid)
        assert fds_on(h.sandbox / ".logs" / "a" / "0") == 0
        for _ in pids:
            h.next_exit()
        wait_for(lambda: h.log("a").read_text() == "out-a\n", 5, message="a's stdout")
        assert h.log("a", stream="stderr").read_text() == "err-a\n"
        assert h.log("b").read_text() == "out-b\n"
        assert {name: os.stat(h.log(name)).st_ino for name in ("a", "b")} == made
    finally:
        h.sup.close()


@pytest.mark.parametrize("ends_by", ["idle", "close"])
def test_a_run_readied_and_not_started_is_removed(tmp_path, tracker, ends_by):
    h = Harness(tmp_path / "sandbox", tracker)
    started, left = _spec("started"), _spec("left")
    try:
        h.sup.ready_ahead([(started, 0), (left, 0)])
        assert h.log("left").exists()
        tracker.add(h.sup.spawn(started, 0))
        h.next_exit()
        if ends_by == "idle":  # the first step is over: what it did not start is given up then
            h.sup.idle()
            assert not (h.sandbox / ".logs" / "left" / "0").exists()
    finally:
        h.sup.close()
    assert not (h.sandbox / ".logs" / "left").exists()
    assert h.log("started").exists()  # the run's own stay
    assert fds_on(h.sandbox / ".logs" / "left") == 0


def test_only_a_plain_logger_is_readied(tmp_path, tracker):
    h = Harness(tmp_path / "sandbox", tracker)
    rotated = _spec("rotated", logger=LoggerSpec(mode=LogMode.ROTATE))
    try:
        h.sup.ready_ahead([(rotated, 0)])
        assert not (h.sandbox / ".logs" / "rotated").exists()
    finally:
        h.sup.close()


def test_runs_readied_and_none_started_leave_no_logs_directory(tmp_path, tracker):
    """As a kill before the first step: the sandbox is left as a task that started nothing."""
    h = Harness(tmp_path / "sandbox", tracker)
    try:
        h.sup.ready_ahead([(_spec("a"), 0), (_spec("b"), 0)])
        assert (h.sandbox / ".logs" / "b" / "0").is_dir()
    finally:
        h.sup.close()
    assert not (h.sandbox / ".logs").exists()



def test_an_earlier_attempts_logs_under_the_same_run_number_are_kept(tmp_path, tracker):
    """A sandbox whose `.logs` was not archived (it could not be: `logs_not_archived`) holds
    run 0's logs of an earlier attempt: readied and then given up (a stop before the first
    step), they are not removed, as a spawn would have appended to them."""
    h = Harness(tmp_path / "sandbox", tracker)
    earlier = h.sandbox / ".logs" / "a" / "0"
    earlier.mkdir(parents=True)
    (earlier / "stdout").write_text("earlier attempt\n")
    (earlier / "stderr").write_text("earlier error\n")
    try:
        h.sup.ready_ahead([(_spec("a"), 0), (_spec("b"), 0)])
        assert h.log("b").exists()
    finally:
        h.sup.close()
    assert (earlier / "stdout").read_text() == "earlier attempt\n"
    assert (earlier / "stderr").read_text() == "earlier error\n"
    assert not (h.sandbox / ".logs" / "b").exists()


@pytest.mark.parametrize("meanwhile", ["removed", "moved"])
def test_a_run_readied_in_a_logs_removed_or_moved_since_writes_to_the_new_one(tmp_path, tracker, meanwhile):
    """`.logs` removed, or moved away (as `stoker run` archives it), between the readying and
    the spawn: the run's output goes to `SANDBOX/.logs`, not into the files made before."""
    h = Harness(tmp_path / "sandbox", tracker)
    a = _spec("a", "echo out-a")
    try:
        h.sup.ready_ahead([(a, 0), (_spec("b"), 0)])
        if meanwhile == "removed":
            shutil.rmtree(h.sandbox / ".logs")
        else:
            (h.sandbox / ".logs").rename(h.sandbox / ".logs.attempt-0")
        tracker.add(h.sup.spawn(a, 0))
        h.next_exit()
        wait_for(lambda: h.log("a").exists() and h.log("a").read_text() == "out-a\n", 5, message="a's stdout")
        assert not (h.sandbox / ".logs" / "b").exists()
    finally:
        h.sup.close()
    assert fds_on(h.sandbox / ".logs.attempt-0" / "b" / "0") == 0


def test_a_close_on_another_thread_while_a_run_is_readied_leaves_nothing(tmp_path, monkeypatch):
    """`close()` between the making of a run's directory and of its files (on another
    thread, as the lock allows): the files were kept, open, in a `.logs` nothing removes."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    logs = runlogs.RunLogs(sandbox, "test.0")
    make = runlogs._new_plain_stdio

    def closed_meanwhile(directory):  # type: ignore[no-untyped-def]
        closing = threading.Thread(target=logs.close)
        closing.start()
        closing.join(5)
        return make(directory)

    monkeypatch.setattr(runlogs, "_new_plain_stdio", closed_meanwhile)
    logs.ready_ahead([(_spec("a"), 0)], 1 << 20)
    assert not (sandbox / ".logs").exists()
    assert fds_on(sandbox / ".logs" / "a" / "0" / "stdout") == 0


def test_a_readied_run_s_stdout_is_marked_until_its_spawn_takes_it(tmp_path, tracker):
    h = Harness(tmp_path / "sandbox", tracker)
    try:
        h.sup.ready_ahead([(_spec("a"), 0)])
        readied = os.stat(h.log("a")).st_mode
        assert readied & stat.S_ISVTX  # readers list no run 0 yet
        tracker.add(h.sup.spawn(_spec("a"), 0))
        assert os.stat(h.log("a")).st_mode == readied & ~stat.S_ISVTX
        h.next_exit()
    finally:
        h.sup.close()
