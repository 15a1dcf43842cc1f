"""`stoker kill` / `stoker restart`'s wait for a supervisor's first answer
(`executor/cli/control.py`): a running supervisor is given ANSWER_SECS, a stopped or frozen
one is waited for as long as it takes, said once on stderr (`_say_paused`), also when it
is stopped during the wait. The supervisor here is a child `sleep` (stopped with SIGSTOP,
or frozen as `frozen_cgroup` says), the request's socket one end of a socketpair."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.cli import control as control_cli
from executor.cli.main import main
from executor.host import frozen
from executor.host.controlclient import ControlUnavailable
from executor.host.identity import own_identity
from executor.host.lock import SandboxLock
from executor.host.sandbox import open_stoker_dir
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def supervisor() -> Iterator[subprocess.Popen]:
    child = subprocess.Popen(["sleep", "60"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def stopped(child: subprocess.Popen) -> None:
    from executor.host.identity import is_stopped

    child.send_signal(signal.SIGSTOP)
    wait_for(lambda: is_stopped(child.pid), 5, message="the child stopped")


def stopped_line(pid: int) -> str:
    return (f"stoker kill: the supervisor (pid {pid}) is stopped (SIGSTOP, or a debugger): it answers once "
            f"continued (kill -CONT {pid})\n")


def test_a_running_supervisor_is_not_said_paused(supervisor, capsys):
    assert control_cli._say_paused("kill", supervisor.pid) is False
    assert capsys.readouterr() == ("", "")


def test_a_stopped_supervisor_is_said_so_on_stderr(supervisor, capsys):
    stopped(supervisor)
    assert control_cli._say_paused("kill", supervisor.pid) is True
    assert capsys.readouterr() == ("", stopped_line(supervisor.pid))


def test_a_frozen_supervisor_is_said_so_naming_its_cgroup(supervisor, capsys, monkeypatch):
    monkeypatch.setattr(frozen, "frozen_cgroup", lambda pid: "/sys/fs/cgroup/t\x1b" if pid == supervisor.pid else None)
    assert control_cli._say_paused("restart", supervisor.pid) is True
    assert capsys.readouterr() == ("", f"stoker restart: the supervisor (pid {supervisor.pid}) is frozen (its cgroup "
                                       "/sys/fs/cgroup/t\\x1b): it answers once thawed\n")


def answer_after(sock: socket.socket, secs: float) -> threading.Timer:
    timer = threading.Timer(secs, sock.send, [b'{"ok": true}\n'])
    timer.start()
    return timer


def test_an_answer_ends_the_wait_at_once(supervisor, capsys):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.send(b"x")
        control_cli._first_answer(ours, "kill", supervisor.pid, "/sb", False)
    assert capsys.readouterr() == ("", "")


def test_a_supervisor_paused_from_the_start_is_waited_for_past_answer_secs_and_not_said_again(
        supervisor, capsys, monkeypatch):
    monkeypatch.setattr(control_cli, "ANSWER_SECS", 0.1)
    stopped(supervisor)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        timer = answer_after(theirs, 0.5)
        control_cli._first_answer(ours, "kill", supervisor.pid, "/sb", True)
        timer.join()
    assert capsys.readouterr() == ("", "")  # `_say_paused` said it before the request


def test_a_supervisor_stopped_during_the_wait_is_said_so_and_waited_for(supervisor, capsys, monkeypatch):
    monkeypatch.setattr(control_cli, "ANSWER_SECS", 0.2)
    stopped(supervisor)  # (running when the request went: paused=False)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        timer = answer_after(theirs, 0.8)
        control_cli._first_answer(ours, "kill", supervisor.pid, "/sb", False)
        timer.join()
    assert capsys.readouterr() == ("", stopped_line(supervisor.pid))


def test_a_running_supervisor_that_never_answers_is_given_up_on(supervisor, capsys, monkeypatch):
    monkeypatch.setattr(control_cli, "ANSWER_SECS", 0.2)
    ours, theirs = socket.socketpair()
    with ours, theirs, pytest.raises(ControlUnavailable) as refused:
        control_cli._first_answer(ours, "kill", supervisor.pid, "/s\x1bb", False)
    assert str(refused.value) == (f"the supervisor (pid {supervisor.pid}) of /s\\x1bb took the request but has not "
                                  "answered it in 0.2 s, neither stopped nor frozen: it may be stuck (a hung file "
                                  "system); it acts on the request if it recovers")
    assert capsys.readouterr() == ("", "")


@pytest.fixture
def listening_child(tmp_path) -> Iterator[tuple[Path, int]]:
    """A sandbox whose supervisor is a forked child: it holds the lock and listens on the
    control socket, and never accepts (the kernel completes the connection in its backlog);
    killed and reaped on the way out."""
    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    ready, told = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fd = open_stoker_dir(sandbox)
            SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", time.time(),
                                time.clock_gettime(time.CLOCK_BOOTTIME))
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(str(sandbox / ".stoker" / "control.sock"))
            listener.listen(8)
            os.write(told, b"r")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(told)
    try:
        assert os.read(ready, 1) == b"r"
        yield sandbox, pid
    finally:
        os.close(ready)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@pytest.mark.parametrize("stop_after, answer_secs, end_after", [(None, 10.0, 0.5), (None, 0.3, 1.0), (0.2, 0.5, 1.5)],
                         ids=["stopped-before", "stopped-before-past-answer-secs", "stopped-while-waited-for"])
def test_kill_of_a_stopped_supervisor_says_so_once_and_waits_for_it(listening_child, capfd, monkeypatch,
                                                                     stop_after, answer_secs, end_after):
    """Said once: at once when it was stopped before the request (the first case's wait ends
    with the supervisor, well before ANSWER_SECS), else at ANSWER_SECS; and waited for past
    ANSWER_SECS, until the supervisor dies (the stream ends unanswered)."""
    sandbox, pid = listening_child
    monkeypatch.setattr(control_cli, "ANSWER_SECS", answer_secs)
    if stop_after is None:
        os.kill(pid, signal.SIGSTOP)
    timers = [threading.Timer(end_after, os.kill, [pid, signal.SIGKILL])]
    if stop_after is not None:
        timers.append(threading.Timer(stop_after, os.kill, [pid, signal.SIGSTOP]))
    for timer in timers:
        timer.start()
    try:
        main(["kill", str(sandbox)])
    finally:
        for timer in timers:
            timer.cancel()
    err = capfd.readouterr().err
    assert err.startswith(stopped_line(pid)) and err.count("is stopped") == 1, err
    assert "has not answered" not in err
