"""A supervisor's session of its sandbox (executor/host/session.py) as its registry entry
and its callers see it: what the entry says at each step (opened, a task started, closed,
and why), one session per sandbox, a lock an early start took handed over only when it is
the one in `.stoker`, a control socket that cannot be had (a WARNING, and the task runs on)
or a thread that cannot (the session closed with why), the times a request is posted with,
and the words of `stopped_on` and `sandbox_unusable`."""
from __future__ import annotations

import errno
import logging
import os
import queue
import socket
import time
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.events import KillRequested, RestartRequested
from executor.host.control import ControlServer
from executor.host.controlwire import KillControl, RestartControl, encode_request
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import host_identity, own_identity
from executor.host.registry import Registry
from executor.host.sandbox import LOCK_FILE
from executor.host.session import HostSession, sandbox_unusable, stopped_on
from executor.procs import sandboxfs
from tests.support.control_socket import ask_all
from tests.support.limits import closed
from tests.support.logevents import records

pytestmark = pytest.mark.timeout(30)


def sandbox_in(tmp_path: Path, name: str = "sandbox") -> Path:
    sandbox = tmp_path / name
    sandbox.mkdir()
    return sandbox


def entry_of(settings: RegistrySettings, sandbox: Path) -> RegistryEntry:
    (entry,) = [i.entry for i in Registry(settings).entries() if i.entry.sandbox == str(sandbox)]
    return entry


def test_a_new_session_s_entry_names_this_supervisor_its_host_and_the_stoker_it_pinned(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    before = time.time()
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        entry, me = entry_of(settings, sandbox), own_identity()
        assert (entry.supervisor_pid, entry.supervisor_start, entry.supervisor_boot) == (
            me.pid, me.start_ticks, me.boot_id)
        assert (entry.front_end, entry.host_id, entry.host_name) == (FrontEnd.RUN, *host_identity())
        assert before <= entry.registered_wall <= time.time() and entry.ended_wall is None
        fd = os.open(sandbox / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert entry.stoker_dir == sandboxfs.dir_id(fd) == session.pinned
        finally:
            os.close(fd)
        assert (entry.task_id, entry.ended_reason, entry.earlier_task_ids) == ("", "", ())
    finally:
        session.close()


def test_a_task_started_is_in_the_entry_with_the_attempts_before_it(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    session = HostSession.open(sandbox, settings, FrontEnd.RUN, register=False)
    try:
        assert [i for i in Registry(settings).entries() if i.entry.sandbox == str(sandbox)] == []  # not yet
        session.task_started(task_id="t-1", job_key="c/r/e/j", label="j.0", marker="m1", post=lambda e: None)
        first = entry_of(settings, sandbox)
        assert (first.task_id, first.job_key, first.label, first.marker, first.earlier_task_ids) == (
            "t-1", "c/r/e/j", "j.0", "m1", ())
        assert first.host_name == host_identity()[1]
        session.task_ended("FAILED")  # its end recorded: said once the session lets go
        session.task_started(task_id="t-2", job_key="c/r/e/j", label="j.0", marker="m2", post=lambda e: None)
        second = entry_of(settings, sandbox)
        assert (second.task_id, second.marker, second.earlier_task_ids) == ("t-2", "m2", ("t-1",))
        assert second.ended_state == ""  # the next task's end is not the last one's
        session.task_started(task_id="t-2", job_key="c/r/e/j", label="j.0", marker="m2", post=lambda e: None)
        assert entry_of(settings, sandbox).earlier_task_ids == ("t-1",)  # the same task again: no earlier one
        session.task_ended("KILLED")
    finally:
        session.close()
    last = entry_of(settings, sandbox)
    assert (last.ended_reason, last.ended_state, last.end_recorded) == ("", "KILLED", True)  # closed with no reason


def test_an_end_not_recorded_is_no_end_the_entry_says(tmp_path, settings):
    """A task whose owner could not write its end (a full disk), or a supervisor that let go
    before its task ended: the entry says no end, so readers replay the checkpoint (LOST)."""
    for told in ((), ("",)):
        sandbox = sandbox_in(tmp_path, f"told{len(told)}")
        session = HostSession.open(sandbox, settings, FrontEnd.RUN, register=False)
        session.task_started(task_id="t-1", job_key="c/r/e/j", label="j.0", marker="m1", post=lambda e: None)
        session.task_ended(*told)
        session.close()
        entry = entry_of(settings, sandbox)
        assert (entry.ended_wall is not None, entry.ended_state, entry.end_recorded) == (True, "", False)


def test_a_host_renamed_while_the_session_holds_the_sandbox_is_named_as_it_is_now(tmp_path, settings, monkeypatch):
    """The entry's host name is read again as a task starts and as the session closes: a
    reader on the renamed host still finds the entry its own."""
    from executor.host import session as module

    sandbox = sandbox_in(tmp_path)
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        host_id, _ = host_identity()
        monkeypatch.setattr(module, "host_identity", lambda: (host_id, "renamed"))
        session.task_started(task_id="t-1", job_key="k", label="t.0", marker="m", post=lambda e: None)
        assert entry_of(settings, sandbox).host_name == "renamed"
        monkeypatch.setattr(module, "host_identity", lambda: (host_id, "renamed-again"))
    finally:
        session.close()
    assert entry_of(settings, sandbox).host_name == "renamed-again"


def test_the_control_thread_is_named_after_the_sandbox(tmp_path, settings):
    import threading

    session = HostSession.open(sandbox_in(tmp_path, "web-7"), settings, FrontEnd.RUN)
    try:
        assert "control web-7" in [thread.name for thread in threading.enumerate()]
    finally:
        session.close()


def test_the_last_close_marks_the_entry_ended_with_its_reason_and_lets_the_sandbox_go(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    again = HostSession.open(sandbox, settings, FrontEnd.RUN)
    assert again is session
    session.close("not yet")  # one holder of two
    assert entry_of(settings, sandbox).ended_wall is None
    os.close(session.stoker_dir())  # still open
    before = time.time()
    again.close("cannot go on: no memory")
    entry = entry_of(settings, sandbox)
    assert entry.ended_wall is not None and before <= entry.ended_wall <= time.time()
    assert (entry.ended_reason, entry.host_name) == ("cannot go on: no memory", host_identity()[1])
    with pytest.raises(ValueError, match=f"the session of {sandbox} is closed"):
        session.stoker_dir()
    session.close("a third close")  # closed: nothing written again
    assert entry_of(settings, sandbox).ended_reason == "cannot go on: no memory"
    HostSession.open(sandbox, settings, FrontEnd.RUN).close()  # the lock let go: a new session takes it


def test_two_sandboxes_have_two_sessions(tmp_path, settings):
    one = HostSession.open(sandbox_in(tmp_path, "one"), settings, FrontEnd.RUN)
    try:
        two = HostSession.open(sandbox_in(tmp_path, "two"), settings, FrontEnd.RUN)
        try:
            assert two is not one and (one.sandbox.name, two.sandbox.name) == ("one", "two")
        finally:
            two.close()
    finally:
        one.close()


def test_a_kill_hook_given_to_a_second_open_is_heard(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    heard: list[tuple[bool, float | None]] = []
    again = HostSession.open(sandbox, settings, FrontEnd.RUN,
                             on_operator_kill=lambda reached, grace: heard.append((reached, grace)) or "stops")
    try:
        (answer,) = ask_all(sandbox, KillControl(1.5))
        assert (answer.ok, answer.done, answer.message, heard) == (True, True, "stops", [(False, 1.5)])
    finally:
        again.close()
        session.close()


def test_requests_are_posted_with_the_monotonic_time_they_came(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    events: queue.SimpleQueue = queue.SimpleQueue()
    try:
        session.task_started(task_id="t-1", job_key="k", label="t.0", marker="m", post=events.put)
        before = time.monotonic()
        with socket.socket(socket.AF_UNIX) as kill, socket.socket(socket.AF_UNIX) as restart:
            for client, request in ((kill, KillControl(2.0)), (restart, RestartControl("web"))):
                client.connect(str(sandbox / ".stoker" / "control.sock"))
                client.sendall(encode_request(request))
                event = events.get(timeout=10)
                assert isinstance(event, (KillRequested, RestartRequested))
                assert before <= event.at <= time.monotonic()
    finally:
        session.close()


def test_the_refusals_without_a_task_are_done(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        (restart,) = ask_all(sandbox, RestartControl("web"))
        (kill,) = ask_all(sandbox, KillControl())
        assert (restart.ok, restart.done, kill.ok, kill.done) == (False, True, False, True)
    finally:
        session.close()


def test_a_control_socket_that_cannot_be_had_is_a_warning_and_the_session_runs_on(tmp_path, settings, caplog):
    """A directory where the socket goes (the bind's unlink fails: EISDIR): one WARNING naming
    the sandbox, the error and what an operator loses; the session holds the sandbox all the
    same and closes."""
    sandbox = sandbox_in(tmp_path)
    (sandbox / ".stoker").mkdir(mode=0o700)
    (sandbox / ".stoker" / "control.sock").mkdir()
    with caplog.at_level(logging.WARNING, logger="executor.host.session"):
        session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        [line] = records(caplog, "control_unavailable")
        assert (line.name, line.levelno, line.stoker_fields["sandbox"]) == (
            "executor.host.session", logging.WARNING, sandbox)
        assert "directory" in line.stoker_fields["error"].lower()
        assert line.stoker_fields["consequence"] == "stoker kill and stoker restart cannot reach this supervisor"
        assert entry_of(settings, sandbox).ended_wall is None
    finally:
        session.close()
    assert entry_of(settings, sandbox).ended_wall is not None


def test_a_control_thread_that_cannot_start_closes_the_session_saying_why(tmp_path, settings, monkeypatch):
    """No thread to be had (a full pids cgroup): the open raises it, and the entry it wrote
    says the session ended on it, as the `stoker: error:` line says it."""
    def refused(self) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(ControlServer, "start", refused)
    sandbox = sandbox_in(tmp_path)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        HostSession.open(sandbox, settings, FrontEnd.RUN)
    entry = entry_of(settings, sandbox)
    assert entry.ended_wall is not None and entry.ended_reason == stopped_on(RuntimeError("can't start new thread"))
    assert entry.ended_reason.startswith("cannot go on: ") and HostSession._open == {}


def _early_lock(sandbox: Path) -> int:
    """A lock file an early start made and locked in `.stoker`."""
    (sandbox / ".stoker").mkdir(mode=0o700)
    return os.open(sandbox / ".stoker" / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def test_an_early_start_s_lock_is_taken_over_when_it_is_the_one_in_stoker(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    held = _early_lock(sandbox)
    session = HostSession.open(sandbox, settings, FrontEnd.RUN, held_lock=held)
    assert entry_of(settings, sandbox).ended_wall is None
    session.close()
    assert closed(held)  # the session's, closed with it


@pytest.mark.parametrize("swap", ["moved", "symlink", "removed"])
def test_an_early_start_s_lock_no_longer_in_stoker_is_refused_andclosed(tmp_path, settings, swap):
    """The early runs renamed `.stoker` and put another in its place, or left a symlink to the
    held file where the lock file goes: refused (its lock closed), nothing registered."""
    sandbox = sandbox_in(tmp_path)
    held = _early_lock(sandbox)
    if swap == "moved":
        os.rename(sandbox / ".stoker", sandbox / "elsewhere")
        (sandbox / ".stoker").mkdir(mode=0o700)
        (sandbox / ".stoker" / LOCK_FILE).touch()
    elif swap == "removed":
        os.unlink(sandbox / ".stoker" / LOCK_FILE)
    else:
        os.rename(sandbox / ".stoker" / LOCK_FILE, sandbox / "held.lock")
        os.symlink(sandbox / "held.lock", sandbox / ".stoker" / LOCK_FILE)
    with pytest.raises(sandboxfs.UnsafePath) as refused:
        HostSession.open(sandbox, settings, FrontEnd.RUN, held_lock=held)
    assert str(refused.value) == (f"{sandbox}/.stoker is not the directory this start made and locked "
                                  "(the task's early runs may have put another in its place)")
    assert closed(held)
    assert HostSession._open == {}
    assert [i for i in Registry(settings).entries() if i.entry.sandbox == str(sandbox)] == []


def test_a_stoker_that_cannot_be_made_closes_the_early_start_s_lock(tmp_path, settings):
    sandbox = sandbox_in(tmp_path)
    held = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    (sandbox / ".stoker").write_text("a file where the directory goes")
    with pytest.raises(OSError):
        HostSession.open(sandbox, settings, FrontEnd.RUN, held_lock=held)
    assert closed(held)


@pytest.mark.parametrize(("exc", "said"), [
    (None, ""),
    (ValueError("a bug"), ""),
    (KeyboardInterrupt(), ""),
    (OSError(errno.EMFILE, "Too many open files"),
     "cannot go on: no file descriptor is left: Too many open files (ulimit -n)"),
    (OSError(errno.EAGAIN, "Resource temporarily unavailable"), "cannot go on: Resource temporarily "
     "unavailable: the process limit may be reached (a pids cgroup's pids.max, or ulimit -u)"),
])
def test_what_an_entry_keeps_of_the_error_its_supervisor_stopped_on(exc, said):
    assert stopped_on(exc) == said


def test_an_unusable_sandbox_names_its_stoker_and_lock_file_or_says_its_own_words(tmp_path):
    sandbox = tmp_path / "it's"
    full = sandbox_unusable(sandbox, OSError(errno.ENOSPC, "No space left on device"))
    assert full.startswith(f"cannot use sandbox \"{sandbox}\": its .stoker directory or its lock file "
                           f"(.stoker/{LOCK_FILE}): ")
    assert full.endswith(sandboxfs.describe_os_error(OSError(errno.ENOSPC, "No space left on device")))
    unsafe = sandbox_unusable(str(sandbox), sandboxfs.UnsafePath("a symlink in its place"))
    assert unsafe == f"cannot use sandbox \"{sandbox}\": a symlink in its place"
