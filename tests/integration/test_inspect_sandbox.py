"""`inspection.inspect_sandbox` and the two passes after it (`with_leftovers`,
`with_replacements`), called in this process on checkpoints the product's own writer made:
what each field of an `Inspection` says of a live supervisor's task, a gone one's, an
earlier attempt a registry entry names, a supervisor that let go; whose uid a header may
name (`trusted_run_uid`), which LOST tasks a later supervisor replaced, and the leftovers of
a LOST task found by its marker (real `sleep` processes, killed after)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from executor.host import identity
from executor.host.entry import NO_TASK, RegistryEntry
from executor.host.truth import GONE as GONE_STATE
from executor.host.truth import LOST, SinceSource, Truth
from executor.procs import proctree, sandboxfs
from executor.procs.runenv import TASK_MARKER
from executor.task import inspection
from executor.task.heldfile import write_held
from executor.task.inspection import Inspection, TaskUser
from executor.task.viewcache import ViewCache
from tests.support.statuscli import GONE, RUNNING, entry_for, header, write
from tests.support.users import effective_user
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

ME = identity.own_identity()
NOBODY = 65534


def _pin(sandbox: Path) -> str:
    fd = os.open(sandbox / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return sandboxfs.dir_id(fd)
    finally:
        os.close(fd)


def test_a_live_supervisor_s_task_read_through_its_entry_says_its_pin_registration_and_user(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(ME.pid, ME.start_ticks), run_uid=os.geteuid()), *RUNNING])
    entry = entry_for(sandbox, stoker_dir=_pin(sandbox))
    seen = inspection.inspect_sandbox(sandbox, entry)
    assert seen.truth.alive and seen.truth.state == "RUNNING", seen.truth
    assert seen.problem == "" and seen.pinned == entry.stoker_dir and seen.registered_wall == 1234.5, seen
    assert seen.after_latest and seen.attempt is not None and seen.attempt is seen.view.current, seen
    assert seen.run_uid == os.geteuid() and inspection.task_user(seen) == TaskUser(os.geteuid(), "checkpoint_header")
    assert inspection.held_task_id(sandbox) == "web-0-1"
    # without an entry: neither a pin nor a registration
    alone = inspection.inspect_sandbox(sandbox)
    assert alone.pinned == "" and alone.registered_wall is None and alone.truth.alive, alone


def test_a_sandbox_without_a_checkpoint_holds_no_task_id(tmp_path):
    (tmp_path / "sb").mkdir()
    assert inspection.held_task_id(tmp_path / "sb") == ""


def test_a_pinned_stoker_dir_that_is_not_the_sandbox_s_is_not_read(tmp_path):
    """An entry whose `.stoker` was replaced (the sandbox deleted and run again) reads none of
    the new one: GONE, the task id its sandbox holds now said."""
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7)), *RUNNING])
    entry = entry_for(sandbox, GONE, 7, stoker_dir="1:2")  # a `.stoker` that is not this one
    seen = inspection.inspect_sandbox(sandbox, entry)
    assert seen.truth.state == GONE_STATE and seen.view is None and seen.pinned == "1:2", seen
    assert "web-0-1" in seen.problem, seen.problem


def test_a_gone_supervisor_s_records_without_wall_times_are_lost_since_the_checkpoint_s_change(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7)), *RUNNING])
    checkpoint = sandbox / ".stoker/checkpoint.jsonl"  # as an older Stoker wrote it: no wall times
    checkpoint.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "wall"}) + "\n"
                                  for line in checkpoint.read_text().splitlines()))
    os.utime(checkpoint, (5000.0, 5000.0))
    seen = inspection.inspect_sandbox(sandbox, entry_for(sandbox, GONE, 7, stoker_dir=_pin(sandbox)))
    assert seen.truth.lost and seen.truth.since == SinceSource.CHECKPOINT_MTIME, seen.truth
    assert seen.truth.since_wall == 5000.0, seen.truth


def test_a_supervisor_that_let_go_before_any_task_state_ended_with_no_task(tmp_path):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7))])
    entry = entry_for(sandbox, GONE, 7, stoker_dir=_pin(sandbox), ended_wall=2000.0)
    seen = inspection.inspect_sandbox(sandbox, entry)
    assert seen.truth.ended and not seen.truth.lost and seen.truth.state == NO_TASK, seen.truth
    gone = inspection.inspect_sandbox(sandbox, attrs.evolve(entry, ended_wall=None))  # it did not let go
    assert gone.truth.lost and gone.truth.since_wall == 1000.0, gone.truth


def test_an_earlier_attempt_named_by_its_entry_is_shown_as_it_left_the_sandbox(tmp_path):
    """A later `stoker run` in the same sandbox (another task: its own id, supervisor, ports)
    is not the earlier one's to show, nor its kill's end: its checkpoint's last write is not
    the earlier supervisor's."""
    sandbox = tmp_path / "sb"
    killing = {"kind": "task", "from": "RUNNING", "to": "KILLING", "reason": "killed", "wall": 1003.0,
               "ends_as": "KILLED"}
    second = dict(header(GONE + 1, 9, wall=2000.0), task_id="web-0-2", ports={"http": 8081})
    third = dict(header(GONE + 2, 11, wall=3000.0), task_id="web-0-3")
    write(sandbox, [dict(header(GONE, 7), ports={"http": 8080}), *RUNNING, killing, second, *RUNNING, third])
    seen = inspection.inspect_sandbox(sandbox, entry_for(sandbox, GONE, 7, task_id="web-0-1"))
    assert seen.attempt is not None and seen.attempt.supervisor_pid == GONE, seen.attempt
    assert len(seen.view.attempts) == 1 and seen.view.attempts[0] is seen.attempt, seen.view
    assert seen.view.task_id == "web-0-1" and seen.view.ports == {"http": 8080}, seen.view
    assert seen.truth.lost and not seen.truth.died_killing and seen.truth.since == SinceSource.REGISTRY, seen.truth
    later = inspection.inspect_sandbox(sandbox, entry_for(sandbox, GONE + 1, 9, task_id="web-0-2"))
    assert later.view.task_id == "web-0-2" and len(later.view.attempts) == 2, later.view
    assert inspection.marker_of(seen) == "m4rk3r" and inspection.marker_of(attrs.evolve(seen, attempt=None)) == ""


def test_a_gone_supervisor_s_view_keeps_no_fold_to_go_on_from(tmp_path):
    """Its last writer is gone: the cache keeps its view, not the fold (`ViewCache.settle`)."""
    sandbox, cache = tmp_path / "sb", ViewCache()
    write(sandbox, [dict(header(GONE, 7)), *RUNNING])
    assert inspection.inspect_sandbox(sandbox, cache=cache).truth.lost
    assert len(cache) == 1 and cache.folds() == 0
    live = tmp_path / "live"
    write(live, [dict(header(ME.pid, ME.start_ticks)), *RUNNING])
    assert inspection.inspect_sandbox(live, cache=cache).truth.alive
    assert len(cache) == 2 and cache.folds() == 1


def _meanwhile(monkeypatch, change) -> None:
    """`change()` once, as the supervisor is looked for: after its checkpoint was read."""
    real, todo = inspection._alive, [change]

    def alive_then_changed(entry, attempt):
        while todo:
            todo.pop()()
        return real(entry, attempt)

    monkeypatch.setattr(inspection, "_alive", alive_then_changed)


def test_a_supervisor_that_records_its_end_as_it_is_read_is_read_again(tmp_path, monkeypatch):
    """Its checkpoint read, then the supervisor looked for: one that recorded its end and
    exited between the two was judged LOST; read again once it is gone, it is KILLED, and the
    reader's cache keeps that view, no fold to go on from."""
    sandbox, cache = tmp_path / "sb", ViewCache()
    write(sandbox, [dict(header(GONE, 7), run_uid=os.geteuid()), *RUNNING])
    entry = entry_for(sandbox, GONE, 7, stoker_dir=_pin(sandbox))
    end = {"kind": "task", "from": "RUNNING", "to": "KILLED", "reason": "killed", "wall": 1005.0}
    _meanwhile(monkeypatch, lambda: write(sandbox, [end]))  # appended by the supervisor, then it exits
    seen = inspection.inspect_sandbox(sandbox, entry, cache=cache)
    assert seen.truth.state == "KILLED" and seen.truth.ended, seen.truth
    assert seen.sandbox == sandbox and seen.registered_wall == 1234.5 and seen.pinned == entry.stoker_dir, seen
    assert seen.run_uid == os.geteuid(), seen
    kept = cache.last((str(sandbox), entry.stoker_dir))
    assert kept is not None and kept[0].current.state == "KILLED" and cache.folds() == 0, kept


def test_a_checkpoint_removed_as_it_is_read_is_judged_as_it_was_read(tmp_path, monkeypatch):
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7)), *RUNNING])
    _meanwhile(monkeypatch, lambda: (sandbox / ".stoker/checkpoint.jsonl").unlink())
    seen = inspection.inspect_sandbox(sandbox)
    assert seen.truth.lost and seen.view is not None and seen.view.task_id == "web-0-1", seen


def test_a_live_supervisor_s_first_attempt_started_when_the_kernel_says_it_did(tmp_path):
    """A header without the boot clock's moment (an older Stoker's): its first attempt's
    start is its supervisor's as the kernel counts it; a later attempt of the same supervisor
    keeps its recorded start, its restart its recorded due time, and the first attempt is
    left as it was."""
    sandbox, started = tmp_path / "sb", identity.started_wall(ME)
    write(sandbox, [dict(header(ME.pid, ME.start_ticks)), *RUNNING])
    seen = inspection.inspect_sandbox(sandbox)
    assert seen.attempt.started_wall == pytest.approx(started, abs=0.02), (seen.attempt, started)
    failed = {"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "web failed", "wall": 2500.0}
    restart = {"kind": "restart", "delay_secs": 5.0, "reason": "task failed (1 of 3)", "wall": 2600.0}
    write(sandbox, [dict(header(ME.pid, ME.start_ticks, wall=2000.0)), *RUNNING, failed, restart])
    again = inspection.inspect_sandbox(sandbox)
    assert again.truth.state == "RESTARTING" and again.attempt.started_wall == 2000.0, again.attempt
    assert again.attempt.restart.due_wall == 2605.0, again.attempt.restart
    assert again.view.attempts[0].started_wall == 1000.0 and again.view.attempts[-1] is again.attempt, again.view


@pytest.mark.parametrize("entry_id,its", [("web-0-2", False), ("", True)])
def test_a_header_just_written_under_another_id_than_the_entry_s_is_not_its_attempt(tmp_path, entry_id, its):
    """The entry read a moment (STALE_SECS) before its live supervisor wrote the next
    attempt's header: not that attempt's, and after the latest one recorded only when the
    entry names the checkpoint's id as an earlier one of its own; an entry that names no id
    yet takes the attempt."""
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(ME.pid, ME.start_ticks), boot=identity.boot_secs()), *RUNNING])
    seen = inspection.inspect_sandbox(sandbox, entry_for(sandbox, task_id=entry_id))
    assert (seen.attempt is not None) is its and not seen.after_latest is not its, seen
    assert seen.view.task_id == (entry_id or "web-0-1"), seen.view


def test_a_supervisor_in_a_pid_namespace_of_its_own_runs_by_its_lock(tmp_path):
    """A container's main process (pid 1 there) recorded its own pid: no process here is it
    by that pid; the holder of its lock whose pid in its namespace and start are the ones
    recorded is (`lock.seen_here`)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a PID namespace of the test's own)")
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7))])
    lock_file = sandbox / ".stoker/supervisor.lock"
    lock_file.touch()
    holder = subprocess.Popen(  # flocks the file, says its pid in its namespace, holds it until stdin closes
        ["unshare", "--pid", "--kill-child", sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
         "print(os.getpid(), flush=True); sys.stdin.read()", str(lock_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        inner = int(holder.stdout.readline())
        (here,) = proctree.children(holder.pid)
        start = identity.identity_of(here).start_ticks
        write(sandbox, [dict(header(inner, start, wall=2000.0)), *RUNNING])  # its attempt, the latest
        seen = inspection.inspect_sandbox(sandbox)
        assert seen.truth.alive and seen.truth.state == "RUNNING", seen.truth
        write(sandbox, [dict(header(inner, start + 1000, wall=3000.0)), *RUNNING])  # not its start
        assert inspection.inspect_sandbox(sandbox).truth.lost
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


@contextlib.contextmanager
def _lost_in_tmp(owner: int) -> Iterator[Path]:
    """A sandbox holding a LOST task's checkpoint, it and its `.stoker` `owner`'s, in a directory
    of its own under /tmp that anyone may pass (tmp_path's parents are root's, 0700); removed
    after (as root, whatever modes the test left)."""
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root")
    top = Path(tempfile.mkdtemp(prefix="stoker-inspect-"))
    try:
        top.chmod(0o755)
        sandbox = top / "sb"
        write(sandbox, [dict(header(GONE, 7)), *RUNNING])
        for path in (sandbox, sandbox / ".stoker", sandbox / ".stoker/checkpoint.jsonl"):
            os.chown(path, owner, owner)
        yield sandbox
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("closed,mode,words", [
    (".stoker", 0o000, ".stoker is yours, but its mode (000) lets not even its owner read it"),
    (".stoker", 0o300, ".stoker is yours, but its mode (300) lets not even its owner read it"),  # passed, not read
    (".stoker/checkpoint.jsonl", 0o000,
     "checkpoint.jsonl is yours, but its mode (000) lets not even its owner read it"),
    ("", 0o100, "the sandbox SB is yours, but its mode (100) lets not even its owner read it"),
    ("", 0o600, "the sandbox SB is yours, but its mode (600) lets not even its owner read it"),
    (None, 0o700, "only the supervisor's user (or root) may read its task's state"),  # root's `.stoker`
    (None, 0o000, "only the supervisor's user (or root) may read its task's state"),  # root's sandbox, shut
])
def test_a_checkpoint_the_reader_may_not_read_says_why(closed, mode, words):
    """Read in this process as nobody (its effective user: `users.effective_user`): its own
    files' modes are named, and which of them shuts it out; another user's are that user's."""
    with _lost_in_tmp(NOBODY if closed is not None else 0) as sandbox:
        os.chmod(sandbox / (closed if closed is not None else ".stoker" if mode else ""), mode)
        with effective_user(NOBODY):
            seen = inspection.inspect_sandbox(sandbox)
    fix = {"": " (chmod u+rx on it)", None: ""}.get(closed, " (chmod u+rwx .stoker, u+rw .stoker/checkpoint.jsonl)")
    assert seen.view is None and seen.problem == (
        f"cannot read the checkpoint in {sandbox}/.stoker: Permission denied (EACCES): "
        f"{words.replace('SB', str(sandbox))}{fix}"), seen.problem


@pytest.mark.parametrize("dir_mode,file_mode,owners,recorded,trusted", [
    (0o700, 0o600, (0, 0), 1234, True),  # root's: any user it names
    (0o700, 0o600, (1234, 0), 1234, True),  # the named user's own `.stoker`
    (0o700, 0o600, (1234, 1234), 1234, True),
    (0o700, 0o600, (1234, 1234), 4321, False),  # another user's files naming someone else
    (0o770, 0o600, (0, 0), 1234, False),  # a `.stoker` its group may write to
    (0o702, 0o600, (0, 0), 1234, False),
    (0o700, 0o620, (0, 0), 1234, False),  # a checkpoint others may write
    (0o700, 0o602, (0, 0), 1234, False),
])
def test_a_header_s_uid_is_trusted_only_in_files_no_one_else_could_write(tmp_path, dir_mode, file_mode, owners,
                                                                          recorded, trusted):
    if os.geteuid() != 0:
        pytest.skip("chown: root only")
    stoker, checkpoint = tmp_path / ".stoker", tmp_path / ".stoker/checkpoint.jsonl"
    stoker.mkdir()
    checkpoint.write_bytes(b"")
    os.chown(stoker, owners[0], owners[0])
    os.chown(checkpoint, owners[1], owners[1])
    stoker.chmod(dir_mode)
    checkpoint.chmod(file_mode)
    fd = os.open(stoker, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.stat(checkpoint)
        assert inspection.trusted_run_uid(recorded, st, fd) == (recorded if trusted else None)
        assert inspection.trusted_run_uid(None, st, fd) is None
        assert inspection.trusted_run_uid(recorded, None, fd) is None
        assert inspection.trusted_run_uid(recorded, st, -1) is None
    finally:
        os.close(fd)


def test_a_task_s_user_is_its_sandbox_s_owner_without_a_trusted_header_and_none_without_a_sandbox(tmp_path):
    truth = Truth(LOST, alive=False, ended=False)
    owned = Inspection(sandbox=tmp_path, view=None, attempt=None, truth=truth)
    assert inspection.task_user(owned) == TaskUser(os.stat(tmp_path).st_uid, "sandbox_owner")
    assert inspection.task_user(attrs.evolve(owned, sandbox=tmp_path / "no")) == TaskUser(None, None)
    assert inspection.task_user(attrs.evolve(owned, run_uid=4321)) == TaskUser(4321, "checkpoint_header")


def _lost(sandbox: str, **fields) -> Inspection:
    truth = fields.pop("truth", Truth(LOST, alive=False, ended=False))
    return Inspection(sandbox=Path(sandbox), view=None, attempt=None, truth=truth, **fields)


def _taker(sandbox: str, start: int, **fields) -> RegistryEntry:
    return entry_for(Path(sandbox), GONE + start, start, **{"task_id": "", **fields})


@pytest.mark.parametrize("lost_pin,taker_path,taker_pin", [
    ("", "/sb", ""),  # neither pinned: by its path
    ("1:2", "/sb", ""),  # the taker pinned none
    ("1:2", "/moved", "1:2"),  # the `.stoker` it pinned, its sandbox renamed since
])
def test_a_lost_task_whose_sandbox_a_later_supervisor_took_names_it(lost_pin, taker_path, taker_pin):
    lost = _taker("/sb", 10, stoker_dir=lost_pin, task_id="web-0-1")
    taker = _taker(taker_path, 20, stoker_dir=taker_pin)
    for every in ([lost, taker], [taker]):  # `every` without the lost one's own entry: its path or pin no one's
        (out,) = inspection.with_replacements([_lost("/sb")], [lost], every)
        assert out.replaced_by == taker and out.truth.replaced_by == f"the supervisor pid {GONE + 20}", out


def test_only_a_task_that_left_nothing_and_did_not_end_is_replaced():
    lost = _taker("/sb", 10, task_id="web-0-1")
    taker = _taker("/sb", 20, task_id="web-0-2")
    unended = Truth(GONE_STATE, alive=False, ended=False)
    cases = [  # (the inspection, replaced)
        (_lost("/sb"), True),
        (_lost("/sb", leftovers=(inspection.Leftover(1, "", None, ""),)), False),  # processes left: act on them
        (_lost("/sb", truth=unended, leftovers_looked=True), True),  # its sandbox deleted and run again
        (_lost("/sb", truth=unended), False),  # its leftovers not looked for
        (_lost("/sb", truth=Truth(GONE_STATE, alive=False, ended=True), leftovers_looked=True), False),  # let go
        (_lost("/sb", truth=Truth("KILLED", alive=False, ended=True, died_killing=True), leftovers_looked=True),
         False),
    ]
    for seen, replaced in cases:
        (out,) = inspection.with_replacements([seen], [lost], [lost, taker])
        assert (out.replaced_by == taker) is replaced and (out.truth.replaced_by == "web-0-2") is replaced, seen


def test_a_lost_task_s_leftovers_are_the_processes_carrying_its_marker(tmp_path):
    marker = f"inspect{os.getpid()}{time.monotonic_ns()}"
    env = {"PATH": os.environ["PATH"], TASK_MARKER: marker}
    procs = [subprocess.Popen(["sleep", "600"], env=env, stdin=subprocess.DEVNULL) for _ in range(2)]
    try:
        for p in procs:
            wait_for(lambda p=p: Path(f"/proc/{p.pid}/cmdline").read_bytes(), 10, message="sleep's exec")
        live = _lost(str(tmp_path), truth=Truth("RUNNING", alive=True, ended=False))
        found, running, garbled, unprintable, nameless = inspection.with_leftovers(
            [_lost(str(tmp_path)) for _ in range(5)][:1] + [live] + [_lost(str(tmp_path)) for _ in range(3)],
            [marker, marker, "\ud800", marker + "\n", ""])
        assert [p.pid for p in found.leftovers] == sorted(p.pid for p in procs), found.leftovers
        assert found.leftovers_looked and found.judged_as == TaskUser(os.stat(tmp_path).st_uid, "sandbox_owner")
        assert found.foreign == () and all(p.command.startswith("sleep") for p in found.leftovers), found
        for other in (running, garbled, unprintable, nameless):  # supervised, or a marker that names nothing
            assert not other.leftovers_looked and other.leftovers == () and other.judged_as is None, other
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def test_the_processes_a_lost_task_s_watchdog_held_are_its_leftovers_marked_or_not(tmp_path):
    """Its watchdog's list (`.stoker/held.json`, pid and start) names a process that carries
    no marker (one not dumpable hides it) and another user's that carries it: both are the
    task's, the first with no process or run known; read through the `.stoker` its entry
    pinned only, so through another none is, and the other user's is shown, not counted."""
    if os.geteuid() != 0:
        pytest.skip("a process of another user: root only")
    marker, sandbox = f"held{os.getpid()}{time.monotonic_ns()}", tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7, marker=marker)), *RUNNING])
    plain = {"PATH": os.environ["PATH"]}
    procs = [subprocess.Popen(["sleep", "600"], env=plain, stdin=subprocess.DEVNULL),
             subprocess.Popen(["sleep", "600"], env={**plain, TASK_MARKER: marker}, stdin=subprocess.DEVNULL,
                              user=NOBODY, group=NOBODY, extra_groups=[])]
    try:
        for p in procs:
            wait_for(lambda p=p: Path(f"/proc/{p.pid}/cmdline").read_bytes(), 10, message="sleep's exec")
        fd = os.open(sandbox / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
        try:
            write_held(fd, marker, {p.pid: identity.identity_of(p.pid).start_ticks for p in procs})
        finally:
            os.close(fd)
        unmarked, theirs = procs[0].pid, procs[1].pid
        (held,) = inspection.with_leftovers([_lost(str(sandbox), pinned=_pin(sandbox))], [marker])
        assert {p.pid for p in held.leftovers} == {unmarked, theirs} and held.foreign == (), held
        (plain_one,) = [p for p in held.leftovers if p.pid == unmarked]
        assert plain_one.process == "" and plain_one.run is None and plain_one.command == "sleep 600", plain_one
        (elsewhere,) = inspection.with_leftovers([_lost(str(sandbox), pinned="1:2")], [marker])
        assert elsewhere.leftovers == () and [f.pid for f in elsewhere.foreign] == [theirs], elsewhere
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def test_a_checkpoint_that_keeps_none_of_the_entry_s_supervisor_s_attempts_says_so(tmp_path):
    """Another run's checkpoint in the sandbox the entry's live supervisor took: it has
    recorded nothing yet, and nothing of the other run's is shown as its."""
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(GONE, 7)), *RUNNING])
    entry = entry_for(sandbox, stoker_dir=_pin(sandbox))
    seen = inspection.inspect_sandbox(sandbox, entry)
    assert seen.view is None and seen.truth.alive and seen.pinned == entry.stoker_dir, seen
    assert seen.problem == (f"the checkpoint in {sandbox}/.stoker keeps no attempt of its supervisor (pid {ME.pid}), "
                            "only other runs' of the sandbox: it has recorded none yet"), seen.problem


@pytest.mark.parametrize("reached", ["through a link", "under a closed directory"])
def test_a_sandbox_reached_through_a_link_is_judged_by_its_target_and_an_unreachable_one_as_another_s(reached):
    """The sandbox's path may end in a symlink (the Mesos agent's `runs/latest`, root's): its
    target's mode is the one named; one under a directory the reader may not pass is not said
    to be its own."""
    with _lost_in_tmp(NOBODY) as sandbox:
        sandbox.chmod(0o000)
        asked = sandbox.parent / "latest"
        asked.symlink_to(sandbox)  # root's link
        if reached != "through a link":
            sandbox.parent.chmod(0o700)
        with effective_user(NOBODY):
            seen = inspection.inspect_sandbox(asked)
    why = (f"the sandbox {asked} is yours, but its mode (000) lets not even its owner read it (chmod u+rx on it)"
           if reached == "through a link" else "only the supervisor's user (or root) may read its task's state")
    assert seen.problem == f"cannot read the checkpoint in {asked}/.stoker: Permission denied (EACCES): {why}", seen
