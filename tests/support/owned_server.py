"""The one process a test server object started (ZooKeeper's JVM, Prometheus): started with a
parent-death signal, so it dies with the test process even on `kill -9`; `stop()` ends it
(SIGTERM, then SIGKILL after STOP_TIMEOUT_SECS) and `close()` removes its working directory
too. Subclasses set `workdir` and `_proc` and build their own command."""
from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

STOP_TIMEOUT_SECS = 10.0


def dies_with_us(command: list[str]) -> list[str]:
    """`command` under `setpriv --pdeathsig KILL` where setpriv is installed."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *command] if setpriv else command


class OwnedServer:
    workdir: Path
    _proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_SECS; only the process this object started."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_SECS)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
