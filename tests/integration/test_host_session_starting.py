"""An operator's request (`stoker kill`, `status`) while a supervisor starts, while a new one
takes the sandbox, or after one died where it left its socket: it waits for the supervisor
that is starting, and only for one that is."""
from __future__ import annotations

import os
import queue
import socket
import threading
import time

import pytest

from config.registry import RegistrySettings
from executor.events import ControlReply, KillRequested
from executor.host.controlclient import ControlUnavailable
from executor.host.controlwire import KillControl
from executor.host.entry import FrontEnd
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.host.sandbox import open_stoker_dir
from executor.host.session import HostSession

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("name, shown", [("sandbox", "sandbox"), ("sb\x1b[2J\u202ex", "sb\\x1b[2J\\u202ex")])
def test_a_kill_while_the_supervisor_starts_waits_for_it(tmp_path, monkeypatch, capsys, name, shown):
    """`stoker kill SANDBOX` while `stoker run` loads after its early start (the sandbox
    locked, no pid in the lock, no socket yet): it said "no live supervisor holds SANDBOX"
    and exited 1, and the task ran on. Now it waits for the supervisor and is answered.
    The client's wait is held until the session is up, so the order is the one asked for.
    Its line writes a sandbox's control and format characters out (was: as they are, an
    escape sequence reaching the terminal)."""
    import fcntl
    import types

    from executor.cli import control as control_cli

    sandbox = tmp_path / name
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = os.open(sandbox / ".stoker" / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the early start takes it
    waiting, go = threading.Event(), threading.Event()

    def held(secs: float) -> None:  # the client waits for the supervisor: until the test says
        waiting.set()
        go.wait(10)

    monkeypatch.setattr(control_cli, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=held))
    got: list[object] = []

    def client() -> None:
        try:
            got.extend(control_cli._replies(sandbox, lambda: None, KillControl(), "kill"))
        except ControlUnavailable as exc:
            got.append(exc)
        finally:
            waiting.set()

    thread = threading.Thread(target=client)
    thread.start()
    assert waiting.wait(10)
    assert got == [], got  # it did not give up on a starting supervisor
    session = HostSession.open(sandbox, front_end=FrontEnd.RUN, held_lock=fd)
    try:
        events: queue.SimpleQueue = queue.SimpleQueue()
        session.task_started(task_id="t-1", job_key="k", label="t.0", marker="m", post=events.put)
        go.set()
        event = events.get(timeout=10)
        assert isinstance(event, KillRequested)
        event.reply(ControlReply(ok=True, done=True, message="task t.0 KILLED"))
        thread.join(10)
    finally:
        go.set()
        session.close()
    assert got == [ControlReply(ok=True, done=True, message="task t.0 KILLED")]
    assert capsys.readouterr().err == f"stoker kill: the supervisor of {tmp_path}/{shown} is starting; waiting for it\n"


def test_a_kill_as_a_new_supervisor_takes_the_sandbox_looks_its_entry_up_again(tmp_path):
    """`stoker kill SANDBOX` as a re-run in the same sandbox starts: the client found the
    ended entry of the run before in the registry, then the lock of the new one, and said
    "the lock names pid N, not the supervisor the host registry names", exit 1, the task
    running on. Now the registry is read again; its new entry pins the same `.stoker`."""
    import attrs

    from executor.cli import control as control_cli
    from executor.host.registrylookup import find_sandbox

    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        events: queue.SimpleQueue = queue.SimpleQueue()
        session.task_started(task_id="t-2", job_key="k", label="t.0", marker="m", post=events.put)
        now = find_sandbox(Registry(settings).entries(), str(sandbox)).entry
        before = attrs.evolve(now, supervisor_start=now.supervisor_start + 100, ended_wall=time.time(),
                              task_id="t-1")  # the run before, in the same sandbox: gone
        looks = [before]  # the first look came before the new supervisor registered
        got: list[ControlReply] = []

        def lookup():
            return looks.pop(0) if looks else find_sandbox(Registry(settings).entries(), str(sandbox)).entry

        client = threading.Thread(target=lambda: got.extend(
            control_cli._replies(sandbox, lookup, KillControl(), "kill")))
        client.start()
        event = events.get(timeout=10)
        event.reply(ControlReply(ok=True, done=True, message="task t.0 KILLED"))
        client.join(10)
    finally:
        session.close()
    assert [r.message for r in got] == ["task t.0 KILLED"]


def test_a_supervisor_without_a_control_socket_is_not_waited_for_as_starting(tmp_path, monkeypatch, capsys):
    """A supervisor whose control socket could not be made (`control_unavailable`: no
    descriptor, a full disk) holds its sandbox for good without one: `stoker kill` took it
    for one starting, said "the supervisor of SANDBOX is starting; waiting for it" and
    waited 5 s each time before failing. A lock taken longer ago than that is not a start."""
    import types

    from executor.cli import control as control_cli
    from executor.host.lock import SandboxLock

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = open_stoker_dir(sandbox)
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", time.time(),  # no socket made
                               time.clock_gettime(time.CLOCK_BOOTTIME) - 2 * control_cli.STARTING_SECS)

    def waited(secs: float) -> None:
        raise AssertionError("it waited for a supervisor that is not starting")

    clock = types.SimpleNamespace(monotonic=time.monotonic, time=time.time, sleep=waited,
                                  clock_gettime=time.clock_gettime, CLOCK_BOOTTIME=time.CLOCK_BOOTTIME)
    monkeypatch.setattr(control_cli, "time", clock)
    try:
        with pytest.raises(ControlUnavailable, match="has no control socket"):
            list(control_cli._replies(sandbox, lambda: None, KillControl(), "kill"))
    finally:
        lock.release()
        os.close(fd)
    assert "starting" not in capsys.readouterr().err


def test_a_kill_as_a_re_run_starts_where_a_killed_supervisor_left_its_socket_waits_for_the_new_one(
        tmp_path, monkeypatch):
    """A supervisor SIGKILLed leaves its control socket behind. `stoker kill` as a re-run in
    that sandbox started (its lock taken, its own socket not made yet) took the old socket
    for the new supervisor's, and said "the supervisor of SANDBOX does not answer (it is
    gone)". A socket made before the lock was taken is not the new supervisor's: it waits."""
    import types

    from executor.cli import control as control_cli
    from executor.host.lock import SandboxLock

    class Waited(Exception):
        """The client chose to wait for the new supervisor."""

    def waited(secs: float) -> None:
        raise Waited

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(sandbox / ".stoker" / "control.sock"))
    old.close()  # the killed supervisor's, left behind
    os.utime(sandbox / ".stoker" / "control.sock", (time.time() - 60, time.time() - 60))
    fd = open_stoker_dir(sandbox)
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", time.time(),  # the re-run's
                               time.clock_gettime(time.CLOCK_BOOTTIME))
    clock = types.SimpleNamespace(monotonic=time.monotonic, time=time.time, sleep=waited,
                                  clock_gettime=time.clock_gettime, CLOCK_BOOTTIME=time.CLOCK_BOOTTIME)
    monkeypatch.setattr(control_cli, "time", clock)
    try:
        with pytest.raises(Waited):
            control_cli._started(fd, str(sandbox), "kill")
    finally:
        lock.release()
        os.close(fd)


@pytest.mark.parametrize("step", [-60.0, 60.0])
def test_the_wait_for_a_starting_supervisor_is_timed_by_no_wall_clock(tmp_path, monkeypatch, step):
    """The lock's age was `time.time()` minus the wall time it was taken at: a step of the
    wall clock forward since (NTP, an operator's `date -s`) made `stoker kill` take a
    supervisor that had just locked its sandbox for one that never made its socket, and not
    wait at all ("has no control socket"); a step back made it wait its whole 5 s for one
    that could not make it. Its age is CLOCK_BOOTTIME's now."""
    import types

    from executor.cli import control as control_cli
    from executor.host.lock import SandboxLock

    class Waited(Exception):
        """The client chose to wait for the supervisor."""

    def waited(secs: float) -> None:
        raise Waited

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = open_stoker_dir(sandbox)
    boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    just_now = step > 0  # the wall clock stepped forward since a lock taken just now
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", time.time() - step,
                               boot if just_now else boot - 2 * control_cli.STARTING_SECS)
    clock = types.SimpleNamespace(monotonic=time.monotonic, time=time.time, sleep=waited,
                                  clock_gettime=time.clock_gettime, CLOCK_BOOTTIME=time.CLOCK_BOOTTIME)
    monkeypatch.setattr(control_cli, "time", clock)
    try:
        if just_now:
            with pytest.raises(Waited):
                control_cli._started(fd, str(sandbox), "kill")
        else:
            assert control_cli._started(fd, str(sandbox), "kill") is not None
    finally:
        lock.release()
        os.close(fd)


@pytest.mark.parametrize("step", ["back between the lock and the socket", "forward since the socket"])
def test_a_socket_made_after_the_lock_is_the_supervisor_s_whatever_the_wall_clock_did(tmp_path, monkeypatch, step):
    """The socket's time (its mtime, on the wall clock) was compared with the wall time the
    lock was taken at: a wall clock stepped back between the two made a supervisor's own
    socket look made before its lock, a SIGKILLed one's left behind, and `stoker kill` right
    after the start waited up to STARTING_SECS for another. It is the supervisor's when made
    after the lock on the wall clock, or younger than the lock, whose age is the boot clock's."""
    import types

    from executor.cli import control as control_cli
    from executor.host.lock import SandboxLock

    def waited(secs: float) -> None:
        raise AssertionError("it waited for a socket the supervisor had made")

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = open_stoker_dir(sandbox)
    boot, now = time.clock_gettime(time.CLOCK_BOOTTIME), time.time()
    if step.startswith("back"):  # locked 0.5 s ago at a wall time 60 s ahead of the socket's
        taken_wall, made = now + 60 - 0.5, now - 0.1
    else:  # locked 0.5 s ago, the socket made 0.1 s later, the wall clock 60 s ahead since
        taken_wall, made = now - 60 - 0.5, now - 60 - 0.4
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", taken_wall, boot - 0.5)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sandbox / ".stoker" / "control.sock"))
    os.utime(sandbox / ".stoker" / "control.sock", (made, made))
    clock = types.SimpleNamespace(monotonic=time.monotonic, time=time.time, sleep=waited,
                                  clock_gettime=time.clock_gettime, CLOCK_BOOTTIME=time.CLOCK_BOOTTIME)
    monkeypatch.setattr(control_cli, "time", clock)
    try:
        assert control_cli._started(fd, str(sandbox), "kill") is not None
    finally:
        server.close()
        lock.release()
        os.close(fd)
