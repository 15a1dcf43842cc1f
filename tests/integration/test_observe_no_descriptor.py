"""The observer's server with no descriptor left for a new connection (EMFILE: its `ulimit
-n` reached, by connections or by the files it reads). Was: waitress' listener stayed
readable, so its loop tried the accept again at once, every time: one WARNING line with a
traceback per try (10,235 in the 2 s that 40 connections waited on a `prlimit --nofile=24`
observer: 61,412 lines of log) and 40 % of a CPU. Now each such connection is taken on a
descriptor kept for it and answered 503 at once, one WARNING line says so until an accept
works again, and the next connection with a descriptor free is served as ever.

A real server in a child process (its descriptor limit is the child's alone), real clients
from this one."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.limits import KEEP_LOG_RECORDS
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# The observer served in the child: its port on a line; then, once told (a line on stdin),
# no descriptor left (`limits.no_descriptor_left`) for PAUSED_SECS while this process connects; then the limit back. What it logged and the
# CPU it used while short, as a JSON line.
CHILD = r"""
import json, logging, sys, time
sys.path.insert(0, sys.argv[1])
from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import Limits
from tests.support.limits import no_descriptor_left
from tests.support.observer_server import serving
KEEP
reader = Reader(RegistrySettings(registry_root=sys.argv[2], registry_retention_secs=60))
with serving(reader, Limits()) as server:
    print(server.socket.getsockname()[1], flush=True)
    sys.stdin.readline()
    with no_descriptor_left():
        print("short", flush=True)
        cpu = time.process_time()
        time.sleep(float(sys.argv[3]))
        cpu = time.process_time() - cpu
    print(json.dumps({"cpu": cpu, "log": [line for line in lines if line[0] != "INFO"]}), flush=True)
    sys.stdin.readline()  # served until this process has its answers
""".replace("KEEP", KEEP_LOG_RECORDS)

PAUSED_SECS = 1.5
WAITING = 5  # connections that come while no descriptor is left
ASK = b"GET /api/tasks HTTP/1.0\r\nHost: localhost\r\n\r\n"


def test_connections_with_no_descriptor_left_are_answered_503_with_one_line_said(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(REPO), str(tmp_path / "root"), str(PAUSED_SECS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        assert child.stdin is not None and child.stdout is not None
        port = int(child.stdout.readline())
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "short\n"
        for _ in range(WAITING):
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(ASK)
            clients.append(client)
        refused = [_answer(client) for client in clients]
        out = json.loads(child.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:  # room again
            client.sendall(ASK)
            served = _answer(client)
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(10) == 0
    finally:
        for client in clients:
            client.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert refused == ["HTTP/1.0 503 Service Unavailable"] * WAITING and served == "HTTP/1.0 200 OK"
    assert [(level, message.split(" ")[0], traced) for level, message, traced in out["log"]] == [
        ("WARNING", "observer_connection_refused", False)], out["log"][:3]
    assert "Too many open files (EMFILE)" in out["log"][0][1]
    assert out["cpu"] < 0.2 * PAUSED_SECS, f"the loop spun: {out['cpu']:.2f} s of CPU in {PAUSED_SECS} s"


def _answer(client: socket.socket) -> str:
    """The status line the server answered on `client`, whose whole answer (it closes the
    connection after) carries the body its Content-Length says."""
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = client.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    assert length == [len(body)], data[:300]
    if head.startswith(b"HTTP/1.0 503"):
        assert body == b"the observer has no file descriptor left (ulimit -n); try again\n"
    return head.split(b"\r\n", 1)[0].decode()
