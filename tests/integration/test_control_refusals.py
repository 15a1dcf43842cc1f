"""What the control socket refuses (executor/host/control.py), and to whom: the peer's
credentials (`peer`: struct ucred's pid, uid and gid are three C ints, `pid_t` signed,
`uid_t` and `gid_t` unsigned, in the machine's byte order), a client past MAX_CONNECTIONS
(refused, and not acted on), and what the client is told, a client that half-closes included."""
from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from executor.events import ControlReply, Replier
from executor.host import control
from executor.host.control import MAX_CONNECTIONS, ControlServer
from executor.host.controlclient import ask, connect
from executor.host.controlwire import ControlRequest, KillControl, RestartControl, encode_request
from executor.host.sandbox import CONTROL_SOCKET
from tests.support.stoker_proc import REPO
from tests.support.users import as_user, needs_root, open_sandbox
from tests.support.waiting import wait_for

HIGH_ID = 4294967294  # (uid_t)-2: nfsnobody of 64-bit RHEL; a user namespace's ids above 2**31 too


def _kill_own(stoker_dir_path: Path) -> str:
    """What a supervisor's control socket in `stoker_dir_path` answers its own process's
    `stoker kill` (or the traceback)."""
    try:
        stoker_dir = os.open(stoker_dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        server = ControlServer(stoker_dir, lambda request, reply: reply(
            ControlReply(ok=True, done=True, message="answered")))
        try:
            server.start()
            with connect(stoker_dir, str(stoker_dir_path), os.getpid()) as sock:
                return " ".join(reply.message for reply in ask(sock, KillControl(grace_secs=None)))
        finally:
            server.close()
            os.close(stoker_dir)
    except Exception:
        return traceback.format_exc()


@needs_root
def test_a_supervisor_whose_uid_is_above_2_31_answers_its_own_user() -> None:
    """The uid was read as a signed int (-2 for 4294967294), never equal to `os.geteuid()`:
    a supervisor running as such a user refused its own user's `stoker kill` and `restart`
    ("only the supervisor's user may control it")."""
    with open_sandbox() as sandbox:
        os.chown(sandbox, HIGH_ID, HIGH_ID)
        assert as_user(HIGH_ID, HIGH_ID, lambda: _kill_own(sandbox)) == "answered"


def test_the_supervisor_s_own_user_is_answered() -> None:
    """The same, as the test's own user (the pid read as the supervisor's own)."""
    with open_sandbox() as sandbox:
        assert _kill_own(sandbox) == "answered"


def test_a_request_sent_before_its_refusal_is_not_acted_on() -> None:
    """Past MAX_CONNECTIONS a client is refused, but a request it had sent before the server
    accepted it (queued with the connection) was read after the refusal and acted on: the
    operator was told "too many control connections", and the task was killed all the same."""
    gate, acted = threading.Event(), []

    def on_request(request: ControlRequest, reply: Replier) -> None:
        acted.append(request)
        if len(acted) == 1:  # the first holds the server's thread (its loop) until the last client is in
            gate.wait(10)
        reply(ControlReply(ok=True, done=False, message="working"))

    with open_sandbox() as sandbox, _serving(sandbox, on_request), contextlib.ExitStack() as held:
        clients = [held.enter_context(socket.socket(socket.AF_UNIX)) for _ in range(MAX_CONNECTIONS + 1)]
        for client in clients[:MAX_CONNECTIONS]:
            client.connect(str(sandbox / CONTROL_SOCKET))
        # from the last one in: the server accepted every other before it reads this one
        clients[MAX_CONNECTIONS - 1].sendall(encode_request(RestartControl("first")))
        wait_for(lambda: acted, 10, message="the first request in its handler")
        clients[-1].connect(str(sandbox / CONTROL_SOCKET))  # in the backlog with its request, while the loop waits
        clients[-1].sendall(encode_request(KillControl(grace_secs=None)))
        gate.set()
        clients[-1].settimeout(10)
        assert clients[-1].makefile("rb").readline() == (
            b'{"ok": false, "done": true, "message": "too many control connections (at most %d)"}\n'
            % MAX_CONNECTIONS)
        # the refused connection, ready as the server watched it, is read in the loop's next
        # round at the latest; a request sent once another one was acted on comes in a later one
        clients[1].sendall(encode_request(RestartControl("after")))
        wait_for(lambda: RestartControl("after") in acted, 10, message="a request after the refusal")
        clients[2].sendall(encode_request(RestartControl("later")))
        wait_for(lambda: RestartControl("later") in acted, 10, message="a request in a later round")
    assert KillControl(grace_secs=None) not in acted


def test_a_client_refused_before_it_sent_its_request_is_told_why() -> None:
    """A refusal that came before the client's request: its send failed (EPIPE, the server had
    shut the connection), and the client said "the supervisor went away" instead of the reason
    (too many connections; not the supervisor's user) waiting to be read."""
    with open_sandbox() as sandbox, _serving(sandbox, lambda request, reply: None), contextlib.ExitStack() as held:
        clients = [held.enter_context(socket.socket(socket.AF_UNIX)) for _ in range(MAX_CONNECTIONS + 1)]
        for client in clients:
            client.connect(str(sandbox / CONTROL_SOCKET))
        refused = select.poll()
        refused.register(clients[-1], select.POLLIN)
        # its refusal, then the server's shutdown: the end of the stream both ways (POLLHUP)
        wait_for(lambda: any(events & select.POLLHUP for _, events in refused.poll(100)), 10,
                 message="the refusal and the shutdown")
        replies = list(ask(clients[-1], KillControl(grace_secs=None)))
    assert [reply.message for reply in replies] == [f"too many control connections (at most {MAX_CONNECTIONS})"]


def test_a_client_that_half_closes_after_its_request_hears_every_answer() -> None:
    """A client that shuts its writing side once its request is sent (`socat`, `nc -N`, a
    script's `echo ... |`) and reads on: its EOF was taken for its going away, the connection
    closed, and the request acted on with every answer dropped (a kill whose operator heard
    nothing). Once the last answer is out, or the client closes, the connection is closed."""
    later: list[Replier] = []

    def on_request(request: ControlRequest, reply: Replier) -> None:
        reply(ControlReply(ok=True, done=False, message="under way"))
        later.append(reply)

    with open_sandbox() as sandbox, _serving(sandbox, on_request) as server, \
            socket.socket(socket.AF_UNIX) as client, socket.socket(socket.AF_UNIX) as gone:
        client.connect(str(sandbox / CONTROL_SOCKET))
        client.sendall(encode_request(KillControl(grace_secs=None)))
        client.shutdown(socket.SHUT_WR)
        wait_for(lambda: later, 10, message="the request in its handler")
        client.settimeout(10)
        stream = client.makefile("rb")
        assert stream.readline() == b'{"ok": true, "done": false, "message": "under way"}\n'
        later[0](ControlReply(ok=True, done=True, message="ended"))
        assert stream.readline() == b'{"ok": true, "done": true, "message": "ended"}\n'
        assert stream.readline() == b""
        wait_for(lambda: not server._conns, 10, message="the answered connection closed")
        gone.connect(str(sandbox / CONTROL_SOCKET))  # sends its request and goes away at once
        gone.sendall(encode_request(RestartControl("web")))
        gone.close()
        wait_for(lambda: len(later) == 2 and not server._conns, 10, message="the closed client's connection closed")


def test_a_request_the_end_of_its_stream_ends_is_answered() -> None:
    """A client that sends its request with no newline and shuts its writing side (`printf
    '%s' "$json" | socat - UNIX-CONNECT:...`): its request was dropped unread and the
    connection closed, the client told nothing. The end of the stream ends it; one cut short
    (its JSON does not parse) is refused saying so, and not acted on."""
    acted: list[ControlRequest] = []

    def on_request(request: ControlRequest, reply: Replier) -> None:
        acted.append(request)
        reply(ControlReply(ok=True, done=True, message="restarted"))

    with open_sandbox() as sandbox, _serving(sandbox, on_request) as server:
        for sent, heard in ((encode_request(RestartControl("web")).rstrip(b"\n"),
                             b'{"ok": true, "done": true, "message": "restarted"}\n'),
                            (b'{"op": "restart", "process": "we', b'{"ok": false, "done": true, "message": ')):
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(sandbox / CONTROL_SOCKET))
                client.sendall(sent)
                client.shutdown(socket.SHUT_WR)
                client.settimeout(10)
                answer = client.makefile("rb").read()
                assert answer.startswith(heard) and answer.endswith(b"\n") and answer.count(b"\n") == 1, answer
        assert acted == [RestartControl("web")]
        wait_for(lambda: not server._conns, 10, message="both connections closed")


def test_clients_that_never_send_a_request_leave_room_for_one_that_does(monkeypatch) -> None:
    """MAX_CONNECTIONS clients that connect and send nothing (a stuck script, a liveness probe
    that never closes) held every connection for good: each `stoker kill` after them was
    refused ("too many control connections") for as long as they stayed. A client that sent
    no request within REQUEST_WAIT_SECS is told so and dropped; one that did waits on."""
    monkeypatch.setattr(control, "REQUEST_WAIT_SECS", 0.3)
    waiting: list[Replier] = []

    def on_request(request: ControlRequest, reply: Replier) -> None:
        reply(ControlReply(ok=True, done=False, message="under way"))
        waiting.append(reply)

    with open_sandbox() as sandbox, _serving(sandbox, on_request), contextlib.ExitStack() as held:
        asking = held.enter_context(socket.socket(socket.AF_UNIX))
        asking.connect(str(sandbox / CONTROL_SOCKET))
        asking.sendall(encode_request(KillControl(grace_secs=None)))
        silent = [held.enter_context(socket.socket(socket.AF_UNIX)) for _ in range(MAX_CONNECTIONS - 1)]  # every slot
        for client in silent:
            client.connect(str(sandbox / CONTROL_SOCKET))
            client.settimeout(10)
        for client in silent:
            assert client.makefile("rb").readline() == (
                b'{"ok": false, "done": true, "message": "no request within 0.3 s"}\n')
        late = held.enter_context(socket.socket(socket.AF_UNIX))
        late.connect(str(sandbox / CONTROL_SOCKET))
        late.settimeout(10)
        late.sendall(encode_request(RestartControl("web")))
        assert late.makefile("rb").readline() == b'{"ok": true, "done": false, "message": "under way"}\n'
        waiting[0](ControlReply(ok=True, done=True, message="ended"))  # the first, asked in time: still there
        asking.settimeout(10)
        assert asking.makefile("rb").read() == (b'{"ok": true, "done": false, "message": "under way"}\n'
                                                b'{"ok": true, "done": true, "message": "ended"}\n')


# A control server in its own process (argv: its directory, REQUEST_WAIT_SECS), to be stopped.
_STOPPABLE = """
import os, sys
from executor.events import ControlReply
from executor.host import control
control.REQUEST_WAIT_SECS = float(sys.argv[2])
server = control.ControlServer(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY),
                               lambda request, reply: reply(ControlReply(ok=True, done=True, message="heard")))
server.start()
print("serving", flush=True)
sys.stdin.read()
server.close()
"""


def test_a_request_sent_while_the_supervisor_was_stopped_is_not_taken_for_silence() -> None:
    """A client accepted just before its supervisor was stopped (SIGSTOP, a debugger) sends
    its request at once. Continued after the client's deadline, the loop's wait ends in
    EINTR, epoll's `poll` returns nothing, and the request waiting unread was refused as
    silence ("no request within ..."): it is read first, and answered."""
    with open_sandbox() as sandbox:
        serving = subprocess.Popen([sys.executable, "-c", _STOPPABLE, str(sandbox), "0.3"], cwd=REPO,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)))
        try:
            assert serving.stdout is not None and serving.stdout.readline() == b"serving\n"
            before = _sockets(serving.pid)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(sandbox / CONTROL_SOCKET))
                client.settimeout(10)
                wait_for(lambda: _sockets(serving.pid) > before, 10, message="the connection accepted")
                os.kill(serving.pid, signal.SIGSTOP)
                try:
                    wait_for(lambda: _state(serving.pid) == "T", 10, message="the server stopped")
                    client.sendall(encode_request(RestartControl("web")))
                    time.sleep(0.9)  # stopped well past the client's deadline (0.3 s after its accept)
                finally:
                    os.kill(serving.pid, signal.SIGCONT)
                assert client.makefile("rb").readline() == b'{"ok": true, "done": true, "message": "heard"}\n'
        finally:
            if serving.stdin is not None:
                serving.stdin.close()
            try:
                serving.wait(10)
            except subprocess.TimeoutExpired:
                serving.kill()
                serving.wait()


def _sockets(pid: int) -> int:
    """How many sockets the process `pid` has open (the server's accepted ones among them)."""
    fds = f"/proc/{pid}/fd"
    count = 0
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            count += os.readlink(f"{fds}/{fd}").startswith("socket:")
    return count


def _state(pid: int) -> str:
    """The process's state letter in /proc/PID/stat (`T`: stopped)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


@contextlib.contextmanager
def _serving(directory: Path, on_request: Callable[[ControlRequest, Replier], None]) -> Iterator[ControlServer]:
    """A control server in `directory`, serving."""
    stoker_dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    server = ControlServer(stoker_dir, on_request)
    try:
        server.start()
        yield server
    finally:
        server.close()
        os.close(stoker_dir)
