"""What is said of a sandbox whose checkpoint names no supervisor (`executor/task/unrecorded.py`),
read in this process from real sandboxes: a lock file that names a live supervisor, a dead
one, a live process that does not hold the lock, or nobody, with the lock held or not; a
registry entry that let go (with its reason, or none), died, or pins a `.stoker` renamed,
removed, replaced or unopenable since; a checkpoint that keeps none of the entry's attempts;
and which of a checkpoint's attempts is a later task's. The lock is held by this process
(`SandboxLock`, as a supervisor holds it); the dead supervisors are reaped children."""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest

from executor.host import identity
from executor.host.clock import iso_time
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.lock import SandboxLock
from executor.host.sandbox import LOCK_FILE, TASK_FILE, open_stoker_dir
from executor.procs import sandboxfs
from executor.task import unrecorded as u

ENDED = 1_700_000_000.0


@pytest.fixture
def box(tmp_path) -> tuple[Path, str]:
    """A sandbox with its `.stoker`, and the id that pins it."""
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = open_stoker_dir(sandbox)
    try:
        return sandbox, sandboxfs.dir_id(fd)
    finally:
        os.close(fd)


@pytest.fixture
def other() -> Iterator[identity.ProcessIdentity]:
    """A live process that holds no lock."""
    run = subprocess.Popen(["sleep", "600"])
    yield identity.identity_of(run.pid)
    run.kill()
    run.wait(10)


@pytest.fixture
def held(box) -> Iterator[identity.ProcessIdentity]:
    """The sandbox's lock taken by this process, as its supervisor takes it."""
    sandbox, _ = box
    me = identity.own_identity()
    fd = open_stoker_dir(sandbox)
    try:
        lock = SandboxLock.acquire(fd, str(sandbox), me, "run", time.time(), identity.boot_secs())
    finally:
        os.close(fd)
    yield me
    lock.release()


def lock_names(sandbox: Path, who: identity.ProcessIdentity) -> None:
    (sandbox / ".stoker" / LOCK_FILE).write_text(json.dumps(
        {"pid": who.pid, "start": who.start_ticks, "boot": who.boot_id, "front_end": "run", "since": 1.0}))


def entry(sandbox: Path, pinned: str, who: identity.ProcessIdentity, **fields) -> RegistryEntry:
    return RegistryEntry(**{**dict(sandbox=str(sandbox), supervisor_pid=who.pid, supervisor_start=who.start_ticks,
                                   supervisor_boot=who.boot_id, front_end=FrontEnd.RUN, registered_wall=ENDED - 60,
                                   task_id="t-1", stoker_dir=pinned), **fields})


def test_a_directory_with_no_lock_nor_entry_is_no_task_sandbox(box):
    sandbox, pinned = box
    got = u.unrecorded(sandbox, pinned, None)
    assert (got.unrecorded, got.supervisor_pid, got.pinned) == (False, None, pinned)
    assert got.problem == f"no checkpoint in {sandbox}/.stoker (is this a task sandbox?)"
    assert (got.truth.state, got.truth.alive, got.truth.ended) == ("LOST", False, False)
    made = u.unrecorded(sandbox, pinned, None, made=True)
    assert made.problem == f"the checkpoint in {sandbox}/.stoker holds no record" and not made.unrecorded


def test_a_live_supervisor_holding_the_lock_is_starting(box, held):
    sandbox, pinned = box
    got = u.unrecorded(sandbox, pinned, None)
    assert (got.unrecorded, got.supervisor_pid, got.truth.alive, got.truth.state) == (True, held.pid, True, "NEW")
    assert got.problem == (f"no checkpoint in {sandbox}/.stoker yet: its supervisor (pid {held.pid}) is starting "
                           "and has recorded nothing so far")


def test_a_lock_file_naming_a_dead_supervisor_says_it_died(box, dead):
    sandbox, pinned = box
    lock_names(sandbox, dead)
    got = u.unrecorded(sandbox, pinned, None, made=True)
    assert (got.unrecorded, got.supervisor_pid, got.truth.alive, got.pinned) == (True, dead.pid, False, pinned)
    assert got.problem == (f"the checkpoint in {sandbox}/.stoker holds no record: its supervisor (pid {dead.pid}) "
                           "died before it recorded anything")


def test_a_lock_file_naming_a_live_process_that_does_not_hold_the_lock_names_no_one(box, other):
    sandbox, pinned = box
    lock_names(sandbox, other)  # the task may write the file, naming any process
    got = u.unrecorded(sandbox, pinned, None)
    assert (got.unrecorded, got.supervisor_pid, got.truth.alive) == (True, None, False)
    assert got.problem == (f"no checkpoint in {sandbox}/.stoker: its supervisor died before it recorded anything, "
                           "in its early start (its lock file names no pid, or a process that does not hold the "
                           "lock, and nothing holds it)")


def test_the_lock_s_holder_is_the_supervisor_whoever_the_file_names(box, other, held):
    sandbox, pinned = box
    lock_names(sandbox, other)
    got = u.unrecorded(sandbox, pinned, None)
    assert (got.supervisor_pid, got.truth.alive) == (held.pid, True)


def test_a_held_lock_of_an_entry_s_dead_supervisor_is_its_holder_s(box, dead, held):
    sandbox, pinned = box
    got = u.unrecorded(sandbox, pinned, entry(sandbox, pinned, dead))
    assert (got.supervisor_pid, got.truth.alive) == (held.pid, True)


@pytest.mark.parametrize(("reason", "said"), [
    ("cannot go on: no disk", "stopped before it recorded anything: cannot go on: no disk"),
    ("", "let go of the sandbox before it recorded anything"),
])
def test_an_entry_that_let_go_says_why_it_stopped(box, dead, reason, said):
    sandbox, pinned = box
    got = u.unrecorded(sandbox, pinned, entry(sandbox, pinned, dead, ended_wall=ENDED, ended_reason=reason))
    assert (got.supervisor_pid, got.truth.state, got.truth.ended) == (dead.pid, "NEW", True)
    assert got.problem == f"no checkpoint in {sandbox}/.stoker: its supervisor (pid {dead.pid}) {said}"


def test_an_entry_that_let_go_after_writing_its_definition_is_gone_its_file_removed(box, dead):
    sandbox, pinned = box
    (sandbox / ".stoker" / TASK_FILE).write_text("{}")
    let_go = entry(sandbox, pinned, dead, ended_wall=ENDED, ended_reason="stopped by SIGTERM")
    got = u.unrecorded(sandbox, pinned, let_go)
    assert (got.truth.state, got.truth.ended, got.supervisor_pid, got.unrecorded) == ("GONE", True, dead.pid, True)
    assert got.problem == (f"its sandbox no longer holds its checkpoint: its file removed, its .stoker kept; "
                           f"its supervisor (pid {dead.pid}) ended at {iso_time(ENDED)}: stopped by SIGTERM")
    assert u.unrecorded(sandbox, pinned, let_go, made=True).truth.state == "NEW"  # a checkpoint is there
    assert u.unrecorded(sandbox, "", let_go).truth.state == "NEW"  # nothing pinned: not known its
    (sandbox / ".stoker" / TASK_FILE).rename(sandbox / ".stoker" / "elsewhere")
    (sandbox / ".stoker" / TASK_FILE).symlink_to("elsewhere")  # not a file it wrote
    assert u.unrecorded(sandbox, pinned, let_go).truth.state == "NEW"
    (sandbox / ".stoker" / TASK_FILE).unlink()
    (sandbox / ".stoker" / TASK_FILE).mkdir()  # no file: not a definition written
    assert u.unrecorded(sandbox, pinned, let_go).truth.state == "NEW"


@pytest.mark.parametrize(("who", "ended", "reason", "now"), [
    ("held", False, "", "runs"),
    ("dead", False, "", "is gone"),
    ("dead", True, "cannot go on: x", "stopped: cannot go on: x"),
    ("dead", True, "", "let go of the sandbox"),
])
def test_a_garbled_checkpoint_says_where_its_supervisor_is(box, request, who, ended, reason, now):
    sandbox, pinned = box
    me = request.getfixturevalue(who)
    fields = dict(ended_wall=ENDED, ended_reason=reason) if ended else {}
    got = u.unrecorded(sandbox, pinned, entry(sandbox, pinned, me, **fields), made=True, garbled="its one line")
    assert got.problem == (f"the checkpoint in {sandbox}/.stoker holds no readable record (its one line): "
                           f"its supervisor (pid {me.pid}) {now}; what it recorded cannot be read")


def test_a_garbled_checkpoint_of_no_known_supervisor(box, dead):
    sandbox, pinned = box
    lock_names(sandbox, dead)
    (sandbox / ".stoker" / LOCK_FILE).write_text("not the holder's")
    got = u.unrecorded(sandbox, pinned, None, made=True, garbled="2 lines")
    assert got.problem == (f"the checkpoint in {sandbox}/.stoker holds no readable record (2 lines): "
                           "its supervisor is gone; what it recorded cannot be read")
    (sandbox / ".stoker" / LOCK_FILE).unlink()
    (sandbox / ".stoker" / LOCK_FILE).mkdir()  # no lock file: no task sandbox
    assert not u.unrecorded(sandbox, pinned, None, made=True, garbled="2 lines").unrecorded


def test_the_pinned_stoker_is_no_lost_pin(box, dead):
    sandbox, pinned = box
    assert u.pin_lost(sandbox, entry(sandbox, pinned, dead), lambda: "t-2") is None


GOES_ON = ("still runs and goes on recording in the directory it made, under whatever name it has now; "
           "rename that back to .stoker to see the task")


def test_a_live_supervisor_s_stoker_removed_or_replaced_is_said_so(box, held):
    sandbox, pinned = box
    mine = entry(sandbox, pinned, held)
    (sandbox / ".stoker").rename(sandbox / "moved")
    got = u.pin_lost(sandbox, mine, lambda: "")
    assert (got.unrecorded, got.pinned, got.truth.state, got.truth.alive) == (False, pinned, "UNKNOWN", True)
    assert got.problem == (f"{sandbox}/.stoker is not the directory its supervisor made (there is none): it was "
                           f"renamed or removed since the task started; its supervisor (pid {held.pid}) {GOES_ON}")
    (sandbox / ".stoker").mkdir()
    got = u.pin_lost(sandbox, mine, lambda: "")
    assert "(another directory has its name)" in got.problem and got.truth.alive


def test_a_live_supervisor_whose_whole_sandbox_is_gone_is_not_said_here(box, held, tmp_path):
    sandbox, pinned = box
    sandbox.rename(tmp_path / "elsewhere")
    assert u.pin_lost(sandbox, entry(sandbox, pinned, held), lambda: "") is None


def test_a_dead_supervisor_s_stoker_removed_is_gone(box, dead):
    sandbox, pinned = box
    (sandbox / ".stoker").rmdir()
    got = u.pin_lost(sandbox, entry(sandbox, pinned, dead), lambda: "t-2")
    assert (got.truth.state, got.truth.ended, got.supervisor_pid, got.pinned) == ("GONE", False, dead.pid, pinned)
    assert got.problem == (f"its sandbox no longer holds its checkpoint: removed; its supervisor (pid {dead.pid}) "
                           "is gone and recorded no end")


@pytest.mark.parametrize(("held_now", "now"), [
    ("t-2", "now task t-2's"),
    ("", "now another task's"),
    ("t-1", "another .stoker has its name, whose checkpoint names task t-1 too (its sandbox copied back, or "
            "the task's own making: not read)"),
    ("t-0", "another .stoker has its name, whose checkpoint names task t-0 too (its sandbox copied back, or "
            "the task's own making: not read)"),
])
def test_a_dead_supervisor_s_stoker_replaced_is_gone_and_says_whose_it_is_now(box, dead, held_now, now):
    sandbox, pinned = box
    (sandbox / ".stoker").rename(sandbox / "old")  # (kept: a new one made after its removal may reuse its inode)
    (sandbox / ".stoker").mkdir()
    let_go = entry(sandbox, pinned, dead, ended_wall=ENDED, earlier_task_ids=("t-0",))
    got = u.pin_lost(sandbox, let_go, lambda: held_now)
    assert (got.truth.state, got.truth.ended) == ("GONE", True)
    assert got.problem == (f"its sandbox no longer holds its checkpoint: {now}; its supervisor (pid {dead.pid}) "
                           f"ended at {iso_time(ENDED)}")


def test_a_stoker_that_cannot_be_opened_is_said_so_and_not_taken_for_gone(box, dead):
    sandbox, pinned = box
    (sandbox / ".stoker").rmdir()
    (sandbox / ".stoker").write_text("a file")
    got = u.pin_lost(sandbox, entry(sandbox, pinned, dead), lambda: "t-2")
    assert (got.unrecorded, got.truth.state, got.truth.alive) == (False, "LOST", False)
    assert got.truth.since_wall == ENDED - 60  # as its entry says
    assert got.problem.startswith(f"{sandbox}/.stoker is not the directory its supervisor made (it cannot be "
                                  "opened: "), got.problem
    assert got.problem.endswith(f"renamed or removed since the task started; its supervisor (pid {dead.pid}) "
                                "no longer runs"), got.problem


WHERE = "the checkpoint in {sandbox}/.stoker keeps no attempt of its supervisor (pid {pid})"


@pytest.mark.parametrize(("who", "state"), [("held", "it runs"), ("dead", "it is gone")])
def test_records_after_no_header_are_said_with_the_damaged_record(box, request, who, state):
    sandbox, pinned = box
    me = request.getfixturevalue(who)
    got = u.none_of_its(sandbox, pinned, entry(sandbox, pinned, me), headless="line 2 is garbled", held_now="t-2")
    assert (got.supervisor_pid, got.pinned, got.truth.alive) == (me.pid, pinned, who == "held")
    assert got.truth.since_wall == (None if who == "held" else ENDED - 60)
    assert got.problem == (WHERE.format(sandbox=sandbox, pid=me.pid) + f": {state}; its records follow no "
                           "readable header (its own header garbled?): line 2 is garbled")


@pytest.mark.parametrize(("who", "now"), [("held", "it has recorded none yet"), ("dead", "it is gone")])
def test_a_checkpoint_of_other_runs_only(box, request, who, now):
    sandbox, pinned = box
    me = request.getfixturevalue(who)
    more = {"held_now": "t-2"} if who == "held" else {}  # (none by default)
    got = u.none_of_its(sandbox, pinned, entry(sandbox, pinned, me), **more)
    assert (got.supervisor_pid, got.pinned, got.unrecorded) == (me.pid, pinned, True)
    assert got.truth.state == ("NEW" if who == "held" else "LOST")
    assert got.truth.since_wall == (None if who == "held" else ENDED - 60)  # its entry's registration
    assert got.problem == WHERE.format(sandbox=sandbox, pid=me.pid) + f", only other runs' of the sandbox: {now}"


def test_a_dead_supervisor_s_checkpoint_of_another_task_only_is_gone(box, dead):
    sandbox, pinned = box
    got = u.none_of_its(sandbox, pinned, entry(sandbox, pinned, dead), held_now="t-1")
    assert got.truth.state == "GONE" and got.problem.startswith("its sandbox no longer holds its checkpoint: now task t-1's;")


def view(start: int | None, boot: str, wall: float | None) -> SimpleNamespace:
    return SimpleNamespace(current=SimpleNamespace(supervisor_start=start, supervisor_boot=boot, started_wall=wall))


def test_a_later_task_by_its_supervisor_s_start_on_this_boot_else_by_wall_time(box, dead):
    sandbox, pinned = box
    registered = entry(sandbox, pinned, dead, supervisor_start=1000, supervisor_boot="b", registered_wall=ENDED)
    assert u.later_task(view(1001, "b", ENDED - 99), registered)  # its clock, whatever the wall clock says
    assert not u.later_task(view(999, "b", ENDED + 99), registered)
    assert u.later_task(view(1000, "b", ENDED + 1), registered)  # the same start: by wall time
    assert not u.later_task(view(1000, "b", ENDED), registered)
    assert u.later_task(view(5, "other", ENDED + 1), registered) and not u.later_task(view(5, "other", ENDED - 1), registered)
    assert u.later_task(view(None, "b", ENDED + 1), registered)
    assert not u.later_task(view(None, "b", None), registered)
    assert u.later_task(view(5, "", ENDED + 1), attrs.evolve(registered, supervisor_boot=""))


def test_a_live_supervisor_that_lost_its_sandbox_is_told_how_to_stop():
    assert u.unreachable(42) == ("its supervisor (pid 42) still runs, but without its sandbox it cannot be "
                                 "reached: `kill 42` (SIGTERM) stops it gracefully")


def test_a_stoker_that_is_not_the_pinned_one_is_not_read_for_a_supervisor(box, dead, tmp_path):
    sandbox, pinned = box
    lock_names(sandbox, dead)
    (sandbox / ".stoker" / TASK_FILE).write_text("{}")
    elsewhere = "1:2"  # another directory's id: nothing of this `.stoker` is its
    got = u.unrecorded(sandbox, elsewhere, None)
    assert (got.unrecorded, got.supervisor_pid, got.pinned) == (False, None, elsewhere)
    let_go = entry(sandbox, elsewhere, dead, ended_wall=ENDED)
    assert u.unrecorded(sandbox, elsewhere, let_go).truth.state == "NEW"  # its definition not this one
    assert u.unrecorded(sandbox, pinned, let_go).truth.state == "GONE"


def test_a_lock_file_naming_a_live_process_of_another_boot_names_a_dead_supervisor(box, other):
    sandbox, pinned = box
    lock_names(sandbox, attrs.evolve(other, boot_id="another-boot"))
    got = u.unrecorded(sandbox, pinned, None)
    assert (got.supervisor_pid, got.truth.alive) == (other.pid, False)
    assert got.problem.endswith(f"its supervisor (pid {other.pid}) died before it recorded anything"), got.problem


def test_an_entry_of_another_boot_is_no_live_supervisor_whatever_runs_under_its_pid(box, held):
    sandbox, pinned = box
    (sandbox / ".stoker").rename(sandbox / "moved")
    got = u.pin_lost(sandbox, entry(sandbox, pinned, held, supervisor_boot="another-boot"), lambda: "")
    assert got.truth.state == "GONE" and got.problem == (
        f"its sandbox no longer holds its checkpoint: removed; its supervisor (pid {held.pid}) is gone and recorded no end")


def test_a_dead_supervisor_s_truth_is_lost_since_its_entry_s_last_word(box, dead):
    sandbox, pinned = box
    got = u.unrecorded(sandbox, pinned, entry(sandbox, pinned, dead))
    assert (got.truth.state, got.truth.since_wall, got.pinned) == ("LOST", ENDED - 60, pinned)
