"""`stoker kill` / `stoker restart`'s wait for a supervisor's first answer
(`executor/cli/control.py`): a running supervisor is given ANSWER_SECS, a stopped or frozen
one is waited for as long as it takes, said once on stderr (`_say_paused`), also when it
is stopped during the wait. The supervisor here is a child `sleep` (stopped with SIGSTOP,
or frozen as `frozen_cgroup` says), the request's socket one end of a socketpair."""
from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from executor.cli import control as control_cli
from executor.host import frozen
from executor.host.controlclient import ControlUnavailable
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
