"""Which attempts of a sandbox a re-run ends (`executor/task/leftovers.end_lost_attempts`),
on real checkpoints and real leftovers: an attempt that recorded no end and whose supervisor
is gone, numbered after those compaction dropped; not one that ended, nor one whose
supervisor still runs (as the header names it: pid, start and boot, or an older header's pid
started before it was written), nor one of a checkpoint in another `.stoker` than the one
the lock was taken in. Each leftover is a real `sleep` carrying the attempt's marker,
SIGKILLed or left alive; the checkpoint is written through the product's own writer."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from executor.host.identity import own_identity
from executor.procs import sandboxfs
from executor.procs.saferead import MAX_LINE_BYTES
from executor.task.leftovers import LostAttempt, end_lost_attempts, header_bytes
from tests.support.marked import marked_sleeps
from tests.support.statuscli import GONE, RUNNING, header, write

pytestmark = pytest.mark.timeout(60)

FINISHED = [*RUNNING, {"kind": "task", "from": "RUNNING", "to": "FINISHED", "reason": "done", "wall": 1003.0}]
# markers of this test process's own: a re-run kills every process of its user that carries one
LOST, ENDED, MINE = (f"{name}-{os.getpid()}" for name in ("lost-one", "ended-one", "mine"))
SUMMARY = {"kind": "summary", "earlier_attempts": 2, "earlier_runs": {}, "health_state": None, "wall": 999.0}


def _killed(proc: subprocess.Popen[bytes]) -> bool:
    """Whether `proc` was SIGKILLed (by the call just made: it ran until then)."""
    try:
        return proc.wait(5) == -signal.SIGKILL
    except subprocess.TimeoutExpired:
        return False


def test_an_unfinished_attempt_is_numbered_after_those_compaction_dropped_and_one_that_ended_is_left(tmp_path):
    write(tmp_path, [SUMMARY, header(GONE, 7, marker=LOST), *RUNNING,
                     header(GONE, 8, marker=ENDED), *FINISHED])
    with marked_sleeps(LOST, ENDED) as (lost, ended):
        (attempt,) = end_lost_attempts(tmp_path)
        assert _killed(lost) and ended.poll() is None
    assert (attempt.number, attempt.supervisor_pid, attempt.killed) == (3, GONE, (lost.pid,))
    assert attempt.describe() == (f"attempt 3 in this sandbox recorded no end (its supervisor (pid {GONE}) "
                                  f"died); killed the 1 process(es) it left running: {lost.pid}")


def _me(**changed: object) -> dict:
    """A header naming this process as the attempt's supervisor (`changed`: but for these)."""
    me = own_identity()
    return {**header(me.pid, me.start_ticks, marker=MINE, wall=1000.0), **changed}


@pytest.mark.parametrize("named, ended", [
    ({}, False),  # this process, as it is: its supervisor runs
    ({"supervisor_boot": "another-boot"}, True),  # this pid and start, of another boot
    ({"supervisor_start": None}, True),  # an older header's pid alone, written before this process started
], ids=["running", "another-boot", "pid-reused-since"])
def test_an_attempt_whose_supervisor_still_runs_is_left(tmp_path, named, ended):
    write(tmp_path, [_me(**named), *RUNNING])
    with marked_sleeps(MINE) as (left,):
        assert [a.number for a in end_lost_attempts(tmp_path)] == ([1] if ended else [])
        assert _killed(left) if ended else left.poll() is None


def test_an_attempt_with_no_marker_has_nothing_to_end(tmp_path):
    write(tmp_path, [header(GONE, 7, marker=""), *RUNNING])
    assert end_lost_attempts(tmp_path) == []


def test_only_the_checkpoint_in_the_stoker_dir_the_lock_was_taken_in_names_attempts(tmp_path):
    write(tmp_path, [header(GONE, 7, marker=LOST), *RUNNING])
    fd = os.open(tmp_path / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pinned = sandboxfs.dir_id(fd)
    finally:
        os.close(fd)
    with marked_sleeps(LOST) as (lost,):
        assert end_lost_attempts(tmp_path, pinned="1:1") == []  # another `.stoker`'s: nothing
        assert lost.poll() is None
        assert [a.number for a in end_lost_attempts(tmp_path, pinned=pinned)] == [1]
        assert _killed(lost)


def test_a_sandbox_without_a_checkpoint_has_nothing_to_end(tmp_path):
    assert end_lost_attempts(tmp_path / "none") == []
    assert end_lost_attempts(Path("/proc/self/nothing")) == []


def test_what_was_done_of_a_lost_attempt_is_one_sentence():
    done = LostAttempt(2, None, (41, 40), ("removed its cgroup /sys/fs/cgroup/stoker-m",), ((5, "bob"), (6, "eve")))
    assert done.describe() == (
        "attempt 2 in this sandbox recorded no end (its supervisor died); killed the 2 process(es) it left "
        "running: 41 40; left the 2 process(es) of other users that carry its marker: 5 (bob) 6 (eve); "
        "removed its cgroup /sys/fs/cgroup/stoker-m")
    assert LostAttempt(1, 7, (9,)).describe() == ("attempt 1 in this sandbox recorded no end (its supervisor "
                                                  "(pid 7) died); killed the 1 process(es) it left running: 9")
    nothing_killed = LostAttempt(4, None, (), (), ((5, "bob"),))
    assert nothing_killed.describe() == ("attempt 4 in this sandbox recorded no end (its supervisor died); left the "
                                         "1 process(es) of other users that carry its marker: 5 (bob)")


def test_a_header_is_read_up_to_what_the_re_run_s_own_processes_and_ports_take_in_json():
    assert header_bytes(["web", "db"], {"http": 31000}) == MAX_LINE_BYTES + len('["web", "db"]') + len('{"http": 31000}')
