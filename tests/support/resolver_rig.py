"""Hosts whose name resolution is broken, in namespaces of their own, and real checks run on them.

`start_setups(setups, workdir)` starts `python -m tests.support.resolver_rig` under
`unshare -m -n` (a private mount and network namespace: nothing of the host's changes),
which runs each setup in turn, in the order given: its network (the loopback up, then IPv6
turned off by the netns's own sysctl, then a fresh netns whose loopback was never up: a later setup may take a step
further, never back), files of its own bind-mounted over /etc/hosts, /etc/resolv.conf and
/etc/nsswitch.conf, a DNS server on 127.0.0.53 that answers every name with one address or
drops every question, HTTP servers on the addresses it names, and listeners that never
accept (a full backlog: a connection there times out) on those it names as stalled; then one TCP check, one
HTTP check and one lifecycle POST against that port. `results_of` reads, for each setup,
what they said, what the servers received and which names the DNS server was asked, or
`unavailable`: why this host could not make the setup (no IPv6 in its kernel, a read-only
/proc/sys), for the test to skip.

glibc reads /etc/hosts on every lookup and reloads resolv.conf and nsswitch.conf when the
file under the path changes (another bind mount), so each setup is seen as a fresh host's.

`namespaces_unavailable()` is why it cannot run here (not root, no `unshare`, no `mount`,
namespaces refused), or "".
"""
from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.support.http_server import request_head
from tests.support.ports import stalled_listener

REPO = Path(__file__).resolve().parents[2]
PORT = 8080  # the netns is private: any port is free
# Every check's timeout. No setup waits it out (each failure here is at once), so it only
# bounds how long the rig's server thread may take to answer on a busy host: 0.5 s failed
# a run whose server was held 0.6 s (and a regression that waits it out must still end well
# within `results_of`'s 30 s).
CHECK_SECS = 2.0


def namespaces_unavailable() -> str:
    if os.geteuid() != 0:
        return "needs root (unshare -m -n)"
    for tool in ("unshare", "mount"):
        if shutil.which(tool) is None:
            return f"no {tool} here"
    for path in ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf"):
        if not os.path.isfile(path):
            return f"no {path} to bind a file over"
    done = subprocess.run(["unshare", "-m", "-n", "true"], capture_output=True, check=False)
    if done.returncode != 0:
        return f"unshare -m -n refused: {done.stderr.decode(errors='replace').strip()}"
    return ""


def start_setups(setups: dict[str, dict[str, Any]], workdir: Path) -> subprocess.Popen[str]:
    """The child running `setups` in order (see `_run`), started."""
    return subprocess.Popen(
        ["unshare", "-m", "-n", sys.executable, "-m", "tests.support.resolver_rig",
         json.dumps(setups), str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO))


def results_of(child: subprocess.Popen[str], timeout_secs: float = 30.0) -> dict[str, Any]:
    """{setup name: what its checks said}, once the child has run every setup."""
    try:
        out, err = child.communicate(timeout=timeout_secs)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0 or not out.strip():
        raise AssertionError(f"the namespace child failed ({child.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


# ---- the child ----


class _FakeDns:
    """UDP DNS on 127.0.0.53:53: every A (or AAAA) question answered with `answer` when it
    is of that family, else with no address; every question dropped when `answer` is None."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self._answer: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.53", 53))
        threading.Thread(target=self._serve, daemon=True).start()

    def answer(self, address: str | None) -> None:
        """From now on, answer with `address` (None: drop every question)."""
        self._answer = None if address is None else ipaddress.ip_address(address)
        self.asked = []

    def _serve(self) -> None:
        while True:
            data, peer = self._sock.recvfrom(4096)
            end, labels = 12, []
            while data[end]:
                labels.append(data[end + 1:end + 1 + data[end]].decode())
                end += 1 + data[end]
            qtype = struct.unpack(">H", data[end + 1:end + 3])[0]
            self.asked.append(".".join(labels))
            if self._answer is None:
                continue  # a resolver that never answers
            rdata = self._answer.packed if qtype == (1 if self._answer.version == 4 else 28) else b""
            answer = b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 60, len(rdata)) + rdata if rdata else b""
            header = data[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if rdata else 0, 0, 0)
            self._sock.sendto(header + data[12:end + 5] + answer, peer)


def _listen(address: str, seen: list[list[str]]) -> socket.socket:
    """An HTTP server on `address`:PORT answering `ok`, recording [method, path, Host, address]."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last setup's connections
    if family == socket.AF_INET6:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    server.bind((address, PORT))
    server.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # shut down: this setup is over
                return
            with conn:
                lines = request_head(conn).decode("latin-1").split("\r\n")
                if not lines[0]:
                    continue  # the TCP check: connected and closed
                host = next((line[5:].strip() for line in lines if line.lower().startswith("host:")), "")
                seen.append([*lines[0].split()[:2], host, address])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    return server


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sh", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _bind(target: str, text: str, workdir: Path, name: str) -> None:
    source = workdir / f"{name}.{Path(target).name}"
    source.write_text(text)
    subprocess.run(["mount", "--bind", str(source), target], check=True)


def _network(step: str) -> None:
    if step == "no_ipv6":
        for conf in ("all", "lo"):
            Path(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6").write_text("1")
    elif step == "fresh":  # a network namespace of its own, whose loopback was never up
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")


def _check() -> dict[str, Any]:
    from executor.task.lifecycle import post_endpoint
    from healthcheck.checkers import TcpChecker
    from healthcheck.http_check import HttpChecker

    tcp = TcpChecker(PORT, CHECK_SECS).check()
    http = HttpChecker(PORT, timeout_secs=CHECK_SECS).check()
    status, detail = post_endpoint(PORT, "/quitquitquit", CHECK_SECS)
    return {"tcp": [tcp.ok, tcp.reason], "http": [http.ok, http.reason], "post": [status, detail]}


def _run(setups: dict[str, dict[str, Any]], workdir: Path) -> dict[str, Any]:
    _loopback_up()
    dns = _FakeDns()
    results = {}
    for i, (name, setup) in enumerate(setups.items()):
        seen: list[list[str]] = []
        servers: list[socket.socket] = []
        stalled: list[socket.socket] = []
        try:  # a host that cannot make this setup (no IPv6 at all, a read-only /proc/sys)
            _network(setup.get("network", "up"))
            _bind("/etc/hosts", setup.get("hosts", "127.0.0.1 localhost\n"), workdir, str(i))
            _bind("/etc/resolv.conf", setup.get("resolv", "nameserver 127.0.0.53\n"), workdir, str(i))
            _bind("/etc/nsswitch.conf", f"hosts: {setup.get('nss', 'files dns')}\n", workdir, str(i))
            dns.answer(setup.get("dns_answer"))
            servers += [_listen(address, seen) for address in setup.get("listen", [])]
            stalled += [sock for address in setup.get("stalled", []) for sock in stalled_listener(address, PORT)]
        except (OSError, subprocess.CalledProcessError) as exc:
            results[name] = {"unavailable": f"this host cannot make it: {type(exc).__name__}: {exc}"}
        else:
            results[name] = {**_check(), "seen": seen, "dns_asked": dns.asked}
        for server in servers:
            server.shutdown(socket.SHUT_RDWR)
            server.close()
        for sock in stalled:
            sock.close()
    return results


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.argv[1]), Path(sys.argv[2]))), flush=True)
