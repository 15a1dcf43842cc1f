"""A real ZooKeeper server for tests: Debian's `zookeeper` package, standalone, on loopback.

Owns `ZooKeeperServer` (one server: its own config file and data directory under a temp
directory, a free 127.0.0.1 port, a small JVM heap, no admin server, only the `srvr` and
`ruok` four-letter words) and `zookeeper_missing()` (why none can be started here, or None).
A server can be stopped and started again on the same port and data directory, as a real
ZooKeeper restart. The JVM is started with a parent-death signal, so it dies with the test
process even on `kill -9`; `stop()` ends it (SIGTERM, then SIGKILL) and fixtures call it in a
finally. `.ci/run` installs the package when it is missing; `make test` then runs these tests.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.owned_server import OwnedServer, dies_with_us
from tests.support.ports import free_ports

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # Debian's libzookeeper-java
TICK_MS = 200  # session timeouts are 2..20 ticks: 0.4 s .. 4 s
START_TIMEOUT_SECS = 30.0


def zookeeper_missing() -> str | None:
    """Why no ZooKeeper server can be started here, or None when one can."""
    if not ZOOKEEPER_JAR.exists():
        return (f"ZooKeeper is not installed ({ZOOKEEPER_JAR} is missing): "
                "`apt-get install zookeeper` (.ci/run does it in CI)")
    if shutil.which("java") is None:
        return "no `java` on PATH for the ZooKeeper server (Debian's zookeeper package needs a JRE)"
    return None


class ZooKeeperServer(OwnedServer):
    """One standalone ZooKeeper on 127.0.0.1; `start()`, `stop()`, `start()` again, `close()`."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_ports(1)[0]
        self.data_dir = workdir / "data"
        self.config_path = workdir / "zoo.cfg"
        self.log_path = workdir / "server.log"
        self.start_secs: list[float] = []  # how long each start took, until it served
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f"tickTime={TICK_MS}\n"
            f"dataDir={self.data_dir}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            "maxClientCnxns=0\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr\n"
            "snapCount=100000\n"
            # no 64 MB log preallocation, no fsync: a test server starts and commits fast
            "preAllocSize=1024\n"
            "forceSync=no\n"
            "autopurge.purgeInterval=0\n")

    @property
    def ensemble(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_secs: float = START_TIMEOUT_SECS) -> float:
        """Starts the server and waits until it serves; returns the seconds it took."""
        if self.running:
            return 0.0
        started = time.monotonic()
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.workdir,
                                          start_new_session=True)
        finally:
            log.close()
        deadline = started + timeout_secs
        while not self._serving():
            if self._proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited with status {self._proc.returncode} while "
                                   f"starting; its output: {self._tail()}")
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"ZooKeeper did not answer on {self.ensemble} within "
                                   f"{timeout_secs} s; its output: {self._tail()}")
            time.sleep(0.02)
        self.start_secs.append(time.monotonic() - started)
        return self.start_secs[-1]

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """The server stopped (SIGSTOP) for the `with`: connections stay open, nothing is
        answered, sessions are not expired meanwhile (its clock runs on: once it runs again
        (SIGCONT, even on failure), it expires those whose timeout passed). Entered once every
        thread of the server has stopped: kill() returns before they do, and a request sent
        in between was answered (once in CI, under load: a stalled leave's delete, so the
        leave said the member was gone)."""
        assert self._proc is not None and self.running, "the server is not running"
        os.kill(self._proc.pid, signal.SIGSTOP)
        try:
            self._wait_stopped()
            yield
        finally:
            os.kill(self._proc.pid, signal.SIGCONT)

    def _wait_stopped(self) -> None:
        """Wait until the kernel tells this process, the server's parent, that the server
        stopped: it does so once the last of its threads stopped. WNOWAIT takes nothing:
        an exit is still the Popen's to collect."""
        assert self._proc is not None
        info = os.waitid(os.P_PID, self._proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        if info is None or info.si_code != os.CLD_STOPPED:
            raise RuntimeError(f"ZooKeeper ended instead of stopping; its output: {self._tail()}")

    def _command(self) -> list[str]:
        java = [shutil.which("java") or "java", "-Xms16m", "-Xmx64m", "-Xss512k",
                "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.jmx.log4j.disable=true",
                "-cp", str(ZOOKEEPER_JAR), "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(self.config_path)]
        return dies_with_us(java)

    def _serving(self) -> bool:
        """`srvr` answers "Mode: standalone" once sessions are accepted (`ruok` answers
        earlier, while the server still drops new connections)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"srvr")
                sock.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
                return b"Mode: standalone" in answer
        except OSError:
            return False

    def _tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-2000:].decode("utf-8", "replace") or "(none)"
        except OSError:
            return "(none)"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(what: str, reason: str | None) -> None:
    """Skip the calling test when `reason` says why `what` cannot run here; in CI, fail it."""
    import pytest

    if reason is not None:
        if in_ci():
            pytest.fail(f"CI must run the {what} tests: {reason}")
        pytest.skip(reason)


def require_zookeeper() -> None:
    """Skip the calling test when no ZooKeeper server can be started here; in CI, fail it."""
    require("ZooKeeper", zookeeper_missing())
