"""Run the real `stoker` CLI on a pseudo-terminal, for tests where a terminal matters.

`PtyProcess` forks with `os.forkpty`: the child is a session leader whose controlling
terminal is the pty's slave side, exactly as under a terminal emulator or an SSH session.
The test reads what the child writes from the master side (`read_until`, `read_to_end`),
and `hang_up()` closes the master, which makes the kernel send SIGHUP to the child, as
when the terminal window or the SSH connection goes away. `close()` always kills the child's
process group and reaps it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time
from pathlib import Path

from tests.support.stoker_proc import REPO


class PtyProcess:
    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None,
                 argv: list[str] | None = None) -> None:
        """`stoker ARGS` on the terminal, or `argv` instead (a helper that starts stoker)."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
        full_env.update({"PYTHONPATH": str(REPO), "TERM": "xterm", "COLUMNS": "200"})
        full_env.update(env or {})
        argv = argv or [sys.executable, "-m", "executor", *args]
        pid, fd = os.forkpty()
        if pid == 0:  # the child: nothing but exec (no Python state of the test is used)
            try:
                os.chdir(workdir)
                for signum in (signal.SIGHUP, signal.SIGINT):  # under nohup, or a script's `&`, too
                    signal.signal(signum, signal.SIG_DFL)
                os.execve(sys.executable, argv, full_env)
            finally:
                os._exit(127)
        self.pid = pid
        self._fd: int | None = fd
        self.output = b""
        self.status: int | None = None

    def _read_some(self, timeout_secs: float) -> bool:
        """Read what is there within `timeout_secs`; False once the terminal has no writer."""
        if self._fd is None:
            return False
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout_secs))
        if not ready:
            return True
        try:
            data = os.read(self._fd, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:  # every slave side closed: the child is gone
                return False
            raise
        self.output += data
        return bool(data)

    def read_until(self, text: bytes, timeout_secs: float = 10) -> bytes:
        deadline = time.monotonic() + timeout_secs
        while text not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read_some(min(left, 0.1)):
                break
        assert text in self.output, f"{text!r} not in the terminal output:\n{self.output!r}"
        return self.output

    def read_to_end(self, timeout_secs: float = 10) -> bytes:
        """Everything until the child and its descendants closed the terminal."""
        deadline = time.monotonic() + timeout_secs
        while time.monotonic() < deadline and self._read_some(min(deadline - time.monotonic(), 0.1)):
            pass
        return self.output

    def type(self, keys: bytes) -> None:
        """Keys typed at the terminal (b"\\x03": Ctrl-C to the foreground job; b"\\x13":
        Ctrl-S, which stops its output until b"\\x11", Ctrl-Q)."""
        assert self._fd is not None
        os.write(self._fd, keys)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def resize(self, rows: int, columns: int) -> None:
        """The terminal's window made `rows` x `columns`: the kernel sends SIGWINCH to its
        foreground process group, as a terminal emulator's resize does."""
        assert self._fd is not None
        fcntl.ioctl(self._fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def hang_up(self) -> None:
        """Close the terminal (the master side): the kernel sends SIGHUP to the child."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def wait(self, timeout_secs: float = 20) -> int:
        """The exit status (128 + N for a signal N, as a shell shows it)."""
        deadline = time.monotonic() + timeout_secs
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                if self.status < 0:
                    self.status = 128 - self.status
                break
            assert time.monotonic() < deadline, f"stoker (pid {self.pid}) still runs after {timeout_secs} s"
            time.sleep(0.01)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(10)
        self.hang_up()


def typed_into_interactive_bash(line: str, workdir: Path) -> bytes:
    """What `printf %s LINE` writes when typed at an interactive bash on a terminal (history
    expansion on, as at an operator's prompt: `!b` in double quotes is an event there, and
    the line fails with `event not found`), where `bash -c` expands no history."""
    out = workdir / "typed-printf.out"
    bash = PtyProcess([], workdir, env={"HISTFILE": os.devnull, "PS1": "$ "}, argv=[
        sys.executable, "-c", "import os; os.execvp('bash', ['bash', '--norc', '--noprofile', '-i'])"])
    try:
        # `exit` on a line of its own: a line whose expansion failed is not run at all
        bash.type(f"set -o histexpand; printf %s {line} > {out.name}\nexit\n".encode())
        assert bash.wait(20) == 0, bash.read_to_end(1)
        return out.read_bytes() if out.exists() else b"(nothing written: " + bash.read_to_end(1) + b")"
    finally:
        bash.close()
        out.unlink(missing_ok=True)
