"""`stoker tail` of a sparse log (`truncate -s 20G` after some lines, then a line; a writer
without O_APPEND after a copytruncate): the reads step over the hole (SEEK_DATA / SEEK_HOLE)
instead of reading its zeros, the backward scan for the last lines and the forward count of
`-n +K` alike; to a terminal a run of NUL bytes is shown as one `\\x00*N`, the hole never
read; to a pipe the bytes are copied as they read, the hole's NULs too, as GNU tail does.
Before, the scan read the whole hole (20 GiB: over a minute), and a terminal was sent every
NUL written out (`\\x00`, four characters each: 80 GiB of text)."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from executor.cli.main import main
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)
TIB = 1 << 40
LINES = b"".join(b"line %d\n" % n for n in range(1, 21))


def sparse_log(sandbox: Path, hole: int) -> Path:
    """web's run 0 stdout: 20 lines, a hole of `hole` bytes, one line after it."""
    d = sandbox / ".logs" / "web" / "0"
    d.mkdir(parents=True)
    path = d / "stdout"
    path.write_bytes(LINES)
    os.truncate(path, len(LINES) + hole)
    with open(path, "ab") as f:
        f.write(b"after the hole\n")
    return path


def on_a_terminal(*args: str, secs: float = 20.0) -> bytes:
    """What `stoker tail ARGS` writes to a terminal (a pty in raw mode: no \\r added), within `secs`."""
    master, slave = os.openpty()
    tty.setraw(slave)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "executor", "tail", *args], stdout=slave,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    shown, deadline = b"", time.monotonic() + secs
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal is gone
                    break
                if not data:
                    break
                shown += data
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=max(0.1, deadline - time.monotonic())) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
        os.close(master)
    return shown


@pytest.mark.parametrize("lines", ["3", "+19"])
def test_a_tib_hole_in_the_last_lines_is_stepped_over_and_shown_as_one_run_of_nuls(tmp_path, lines):
    sparse_log(tmp_path, TIB)
    started = time.monotonic()
    shown = on_a_terminal(str(tmp_path), "web", "-n", lines)
    assert shown == b"line 19\nline 20\n\\x00*%d" % TIB + b"after the hole\n"
    assert time.monotonic() - started < 20  # (was: hours: every byte of the hole read)


def test_nuls_written_on_a_terminal_a_short_run_each_a_long_run_once(tmp_path):
    d = tmp_path / ".logs" / "web" / "0"
    d.mkdir(parents=True)
    (d / "stdout").write_bytes(b"a\0\0b\n" + b"c" + b"\0" * 100 + b"d\n" + b"\0" * 16 + b"\n")
    assert on_a_terminal(str(tmp_path), "web") == b"a\\x00\\x00b\nc\\x00*100d\n\\x00*16\n"


def test_to_a_pipe_the_hole_is_copied_as_it_reads(tmp_path, capfdbinary):
    sparse_log(tmp_path, 1 << 20)
    assert main(["tail", str(tmp_path), "web", "-n", "2"]) == 0
    out, err = capfdbinary.readouterr()
    assert (out, err) == (b"line 20\n" + b"\0" * (1 << 20) + b"after the hole\n", b"")
