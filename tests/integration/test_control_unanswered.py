"""`stoker kill` / `stoker restart` of a supervisor whose control socket takes the request but
never answers (its task owner stuck: a hung file system, a deadlock) while the kernel shows
it running, neither stopped nor frozen. Before, the command waited for ever without a word;
now it waits `ANSWER_SECS` for the first answer, then says so on one `stoker: error:` line,
exit 1. The supervisor here is this process: it holds the sandbox's lock and listens on the
control socket, and never accepts (the kernel completes the connection in its backlog)."""
from __future__ import annotations

import os
import socket
import time

import pytest

from executor.cli import control as control_cli
from executor.cli.main import main
from executor.host.identity import own_identity
from executor.host.lock import SandboxLock
from executor.host.sandbox import open_stoker_dir

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("command", [["kill"], ["restart", "web"]], ids=["kill", "restart"])
def test_a_supervisor_that_takes_the_request_and_never_answers_is_given_up_on(
        tmp_path, monkeypatch, capfd, command):
    monkeypatch.setattr(control_cli, "ANSWER_SECS", 0.3)
    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = open_stoker_dir(sandbox)
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", time.time(),
                               time.clock_gettime(time.CLOCK_BOOTTIME))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sandbox / ".stoker" / "control.sock"))
    listener.listen(8)
    try:
        started = time.monotonic()
        code = main([command[0], str(sandbox), *command[1:]])
        took = time.monotonic() - started
    finally:
        listener.close()
        lock.release()
        os.close(fd)
    out, err = capfd.readouterr()
    assert (code, out) == (1, "")
    assert err == (f"stoker: error: the supervisor (pid {os.getpid()}) of {sandbox} took the request but has "
                   "not answered it in 0.3 s, neither stopped nor frozen: it may be stuck (a hung file system); "
                   "it acts on the request if it recovers\n")
    assert 0.3 <= took < 5
