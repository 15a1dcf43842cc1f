"""`stoker observe --show-tasks-to owner`: each loopback connection's user (the owner of its
socket, as /proc/net/tcp lists it) sees only the tasks whose sandbox is theirs, in the
list, a task's page, its logs and the API; root sees every task; a connection whose user
cannot be told sees none. Real connections from other uids (a forked child that switched
to them: root only); the lookup itself runs as any user."""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.observe.peers import peer_uid
from tests.support.observer_server import serving
from tests.support.users import STRANGER, as_user, needs_root

pytestmark = pytest.mark.timeout(60)

ALICE, BOB, CAROL = STRANGER, STRANGER + 1, STRANGER + 2  # no password entry needed


def test_a_peer_s_uid_is_its_socket_s_owner_and_a_closed_one_is_no_one(tmp_path):
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as server:
            server.bind((host, 0))
            server.listen()
            port = server.getsockname()[1]
            client = socket.create_connection((host, port))
            accepted, _ = server.accept()
            with accepted:
                there = client.getsockname()[1]
                assert peer_uid(host, there, port) == os.geteuid()
                assert peer_uid(host, there, port + 1 if port < 65535 else 1) is None  # not to this port
                client.close()  # what is left of it (FIN_WAIT, TIME_WAIT) is no process's
                assert peer_uid(host, there, port) is None
    assert peer_uid("not an address", 1, 2) is None


@pytest.mark.parametrize("listening", ["127.0.0.1", "::"])
def test_a_dual_stack_client_s_ipv4_connection_is_its_user_s(listening):
    """An IPv6 socket connected to `::ffff:127.0.0.1` (a dual-stack client, as Java's by
    default) is listed in tcp6 in that form: looked for in tcp only, its user was unknown
    and saw no task."""
    family = socket.AF_INET if listening == "127.0.0.1" else socket.AF_INET6
    with socket.socket(family) as server, socket.socket(socket.AF_INET6) as client:
        if family == socket.AF_INET6:
            server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind((listening, 0))
        server.listen()
        port = server.getsockname()[1]
        client.connect(("::ffff:127.0.0.1", port))
        accepted, peer = server.accept()
        with accepted:
            assert peer[0] in ("127.0.0.1", "::ffff:127.0.0.1")
            assert peer_uid(peer[0], peer[1], port) == os.geteuid()


def _registry(tmp_path: Path, chown: bool = True) -> RegistrySettings:
    """Three tasks, each in a sandbox of its own user's (ALICE, BOB, root; `chown` false:
    all this user's), each with a log that names it."""
    from executor.host.entry import FrontEnd, RegistryEntry
    from executor.host.identity import own_identity
    from executor.host.registry import Registry

    me, settings = own_identity(), RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=600)
    for n, (task_id, uid) in enumerate((("alice-task", ALICE), ("bob-task", BOB), ("root-task", 0))):
        sandbox = tmp_path / task_id
        (sandbox / ".logs/web/0").mkdir(parents=True)
        (sandbox / ".logs/web/0/stdout").write_text(f"{task_id} says hello\n")
        if chown:
            os.chown(sandbox, uid, uid)
        Registry(settings).write(RegistryEntry(
            sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + n,
            supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
            task_id=task_id), prune=False)
    return settings


@pytest.fixture
def observer(tmp_path) -> Iterator[int]:
    """The port of an observer shown to owners, over the three tasks."""
    from executor.observe.reader import Reader
    from executor.observe.server import Limits

    with serving(Reader(_registry(tmp_path)), Limits(idle_secs=2, loop_secs=1), show_to="owner") as server:
        yield server.socket.getsockname()[1]


def _ask(port: int, *paths: str) -> str:
    """The status and body of each path, as JSON text (for `as_user`, whose child answers text)."""
    answers = []
    for path in paths:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                answers.append([reply.status, reply.read().decode()])
        except urllib.error.HTTPError as err:
            answers.append([err.code, err.read().decode()])
    return json.dumps(answers)


PATHS = ("/api/tasks", "/api/tasks/alice-task", "/api/tasks/bob-task/processes/web/logs",
         "/tasks/bob-task/processes/web/logs", "/api/tasks/alice-task/processes/web/logs", "/")


def _seen(answers: str) -> tuple[set[str], list[int], str, str]:
    """(the task ids listed, the statuses of the others, alice's log, the list page)."""
    (s0, listed), *rest, (_, page) = json.loads(answers)
    assert s0 == 200, listed
    log = json.loads(rest[-1][1]).get("data", "") if rest[-1][0] == 200 else ""
    return {t["task_id"] for t in json.loads(listed)}, [s for s, _ in rest], log, page


@needs_root
def test_each_user_sees_only_the_tasks_whose_sandbox_is_theirs_and_root_sees_all(observer):
    owner = observer
    ids, statuses, log, page = _seen(as_user(ALICE, ALICE, lambda: _ask(owner, *PATHS)))
    assert ids == {"alice-task"} and statuses == [200, 404, 404, 200] and log == "alice-task says hello\n"
    assert f"only their own tasks (--show-tasks-to owner): those whose sandbox is uid {ALICE}" in page
    assert "bob-task" not in page and "root-task" not in page
    ids, statuses, log, _ = _seen(as_user(BOB, BOB, lambda: _ask(owner, *PATHS)))
    assert ids == {"bob-task"} and statuses == [404, 200, 200, 404] and log == ""
    ids, statuses, _, _ = _seen(as_user(CAROL, CAROL, lambda: _ask(owner, *PATHS)))
    assert ids == set() and statuses == [404, 404, 404, 404]
    ids, statuses, _, page = _seen(_ask(owner, *PATHS))  # root
    assert ids == {"alice-task", "bob-task", "root-task"} and statuses == [200] * 4
    assert "--show-tasks-to owner" not in page


def test_a_connection_whose_user_cannot_be_told_sees_no_task(tmp_path):
    """No socket of the peer's address and port is listed (it closed the connection): no
    task, not even one of the observer's own user, and the list says why."""
    from executor.observe.reader import Reader
    from executor.observe.server import ObserverApp

    app = ObserverApp(Reader(_registry(tmp_path, chown=False)), loopback=True, show_to="owner")
    got: list[str] = []

    def answer(path: str) -> tuple[str, str]:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "HTTP_HOST": "127.0.0.1", "QUERY_STRING": "",
                   "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "1", "SERVER_PORT": "9"}  # no such socket
        body = b"".join(app(environ, lambda status, headers: got.append(status)))
        return got[-1], body.decode()
    assert answer("/api/tasks") == ("200 OK", "[]")
    assert answer("/api/tasks/root-task")[0] == "404 Not Found"
    assert "could not be told: no task is shown" in answer("/")[1]
    shown = ObserverApp(Reader(_registry(tmp_path / "all", chown=False)), loopback=True)  # the default
    assert len(json.loads(b"".join(shown({**{"REQUEST_METHOD": "GET", "PATH_INFO": "/api/tasks",
                                            "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1",
                                            "REMOTE_PORT": "1", "SERVER_PORT": "9"}},
                                         lambda status, headers: None)))) == 3


def _made_by(uid: int, make: Callable[[], socket.socket]) -> socket.socket:
    """The socket `make()` returns when run as `uid` in a forked child, handed back over a
    Unix socket: the kernel still lists it as `uid`'s, its maker's."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            parent.close()
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            made = make()
            socket.send_fds(child, [b"s"], [made.fileno()])
        finally:
            os._exit(0)
    child.close()  # the child's end: its exit ends the reading, also when it failed
    with parent:
        _, fds, _, _ = socket.recv_fds(parent, 1, 1)
    os.waitpid(pid, 0)
    assert len(fds) == 1, "the child made no socket"
    return socket.socket(fileno=fds[0])


@needs_root
def test_a_socket_of_another_user_at_the_peer_s_address_connected_elsewhere_is_not_the_peer(observer):
    """connect() gives one local address and port to sockets of different users bound for
    different places (here SO_REUSEADDR binds it): BOB's 127.0.0.1:X → 127.0.0.2:PORT and
    ALICE's ::ffff:127.0.0.1:X → the observer. Matched by the observer's port alone, ALICE's
    request was BOB's (looked for in tcp only) or no one's (in both): it is ALICE's."""
    port = observer
    with socket.socket() as elsewhere:
        elsewhere.bind(("127.0.0.2", port))
        elsewhere.listen()

        def bob_s() -> socket.socket:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.connect(("127.0.0.2", port))
            return sock
        with _made_by(BOB, bob_s) as bob, elsewhere.accept()[0]:
            shared = bob.getsockname()[1]

            def alice_asks() -> str:
                with socket.socket(socket.AF_INET6) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("::ffff:127.0.0.1", shared))
                    sock.connect(("::ffff:127.0.0.1", port))
                    sock.sendall(b"GET /api/tasks HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    return b"".join(iter(lambda: sock.recv(65536), b"")).decode()
            answer = as_user(ALICE, ALICE, alice_asks)
    assert answer.startswith("HTTP/1.0 200")
    assert {t["task_id"] for t in json.loads(answer.split("\r\n\r\n", 1)[1])} == {"alice-task"}
