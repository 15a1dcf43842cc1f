"""What ends a loopback connect (`healthcheck.loopback`) and what moves it on to ::1, with the
real TCP check, HTTP check and lifecycle POST on real sockets.

Only "nothing listens here" (refused) and "this address is not there" (no route, no IPv6,
the loopback down) send a check on from 127.0.0.1 to ::1; `tests/integration/
test_loopback_names.py` runs those on hosts made for them. Everything else is the answer
of what is there, or this process's own trouble, and is said as it is: a task that
accepts and resets at once is not "refused", and a supervisor out of descriptors is not a
loopback that could not be reached.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from executor.task.lifecycle import post_endpoint
from healthcheck import loopback
from healthcheck.checkers import TcpChecker
from healthcheck.http_check import HttpChecker
from tests.support.limits import no_descriptor_left
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# One child, two rounds of each check once against a port nothing listens on: first with
# every descriptor taken (its soft limit lowered to what it holds, the rest filled with
# /dev/null), then, with them given back, under a seccomp filter that answers
# socket(AF_INET6, ...) with EPERM (a container profile that allows IPv4 alone).
CHILD = """
import contextlib, ctypes, http.client, json, os, platform, resource, struct, sys
from executor.task.lifecycle import post_endpoint
from healthcheck.checkers import TcpChecker
from healthcheck.http_check import HttpChecker
port = int(sys.argv[1])
def checks():
    return [TcpChecker(port, 0.5).check().reason, HttpChecker(port, timeout_secs=0.5).check().reason,
            post_endpoint(port, "/quitquitquit", 0.5)[1]]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
held = []
with contextlib.suppress(OSError):  # until every descriptor the limit allows is taken
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
no_fds = checks()
for fd in held:
    os.close(fd)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
arch, nr_socket = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}[platform.machine()]
def op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, RET = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
prog = b"".join([op(LD, 4), op(JEQ, arch, 0, 5), op(LD, 0), op(JEQ, nr_socket, 0, 3),
                 op(LD, 16), op(JEQ, 10, 0, 1),  # args[0] == AF_INET6
                 op(RET, 0x00050000 | 1),  # SECCOMP_RET_ERRNO | EPERM
                 op(RET, 0x7FFF0000)])  # SECCOMP_RET_ALLOW
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0, ctypes.get_errno()  # PR_SET_NO_NEW_PRIVS
fprog = Fprog(len(prog) // 8, prog)
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()  # PR_SET_SECCOMP
print(json.dumps({"no_fds": no_fds, "no_ipv6_socket": checks()}), flush=True)
"""


@pytest.fixture(scope="module")
def child_said() -> tuple[int, dict[str, list[str]]]:
    if os.uname().machine not in ("x86_64", "aarch64"):
        pytest.skip("the seccomp filter names x86_64's and aarch64's socket()")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run([sys.executable, "-c", CHILD, str(port)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return port, json.loads(done.stdout)


def _reasons(port: int, said: str) -> list[str]:
    return [f"TCP connect to localhost:{port}: {said}",
            f"HTTP GET http://localhost:{port}/health: {said}",
            f"POST http://localhost:{port}/quitquitquit failed: {said}"]


def test_a_socket_stoker_cannot_open_is_said_so_not_called_an_unreachable_loopback(child_said):
    # Without the distinction: "no loopback address could be reached (127.0.0.1:P: Too many
    # open files; [::1]:P: Too many open files)", the supervisor's limit blamed on the task.
    port, said = child_said
    assert said["no_fds"] == _reasons(
        port, "Stoker could not open a socket (Too many open files): no connection was tried")


def test_a_socket_denied_for_ipv6_alone_still_says_127_0_0_1_refused(child_said):
    # 127.0.0.1 was tried and refused; only ::1 could not be: the reason says both, not
    # "Stoker could not open a socket ...: no connection was tried".
    port, said = child_said
    assert said["no_ipv6_socket"] == _reasons(
        port, f"connection refused (nothing listens on 127.0.0.1:{port}; "
              f"[::1]:{port}: Operation not permitted)")


@pytest.fixture
def resetting_port():
    """A port on 127.0.0.1 whose listener accepts every connection and resets it at once
    (SO_LINGER 0): often before the checker's connect has returned, which then fails with
    ECONNRESET."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def test_a_task_that_accepts_and_resets_is_not_tried_on_ipv6_nor_called_refused(resetting_port):
    # A reset that reaches the connect itself (a race each try may or may not lose) used
    # to send the check on to ::1 and say "connection refused (nothing listens on
    # [::1]:P; 127.0.0.1:P: Connection reset by peer)". Many tries make that race happen;
    # a try that wins it sees the reset on its first read, or a TCP connect that passed.
    port = resetting_port
    said = set()
    for _ in range(150):
        said.add(TcpChecker(port, 1.0).check().reason)
        said.add(HttpChecker(port, timeout_secs=1.0).check().reason)
        said.add(post_endpoint(port, "/quitquitquit", 1.0)[1])
    wrong = sorted(reason for reason in said if "::1" in reason or "nothing listens" in reason)
    assert not wrong, wrong
    assert any("reset" in reason for reason in said), said  # the listener did reset them


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_in_this_process_a_socket_it_cannot_open_is_no_socket_with_its_error(listening_port):
    """The first test's descriptor limit in this process (mutmut sees this process's calls
    only): NoSocket carries the errno and the words, and says no connection was tried."""
    loopback.connect_within(listening_port, 5).close()  # the port answers while a socket can be had
    with no_descriptor_left(), pytest.raises(loopback.NoSocket) as caught:
        loopback.connect_within(listening_port, 5)
    assert (caught.value.errno, caught.value.strerror) == (errno.EMFILE, os.strerror(errno.EMFILE))
    assert caught.value.reason == "Stoker could not open a socket (Too many open files): no connection was tried"


def test_no_time_left_is_a_timeout_before_any_try(listening_port):
    with pytest.raises(TimeoutError) as caught:
        loopback.connect_within(listening_port, 0)  # a listener that would accept at once
    assert str(caught.value) == "no connection within 0 s"
    with loopback.connect_within(listening_port, 5) as sock:
        assert sock.gettimeout() is not None and 0 < sock.gettimeout() <= 5  # the try's bound, left set
