"""A plain child process for tests that need one alive (a supervisor, a leftover): started
with no stdin, killed and reaped after, whatever the test did."""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


def sleeping_popen() -> Iterator[subprocess.Popen[bytes]]:
    """A fixture's body (`yield from sleeping_popen()`): a `sleep 600` as its Popen (the
    test may kill and reap it itself), killed and reaped after."""
    proc = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait(10)


def sleeping_child() -> Iterator[int]:
    """A fixture's body (`yield from sleeping_child()`): a `sleep 600`'s pid."""
    proc = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def sleeping_as(directory: Path, name: str) -> Iterator[int]:
    """A `sleep 600` whose command name is `name` (a symlink to sleep in `directory`: a name
    with `) ` in it is how a task may try to mislead a reader of /proc/PID/stat); its pid,
    killed and reaped after."""
    link = directory / name
    os.symlink("/bin/sleep", link)
    proc = subprocess.Popen([str(link), "600"], stdin=subprocess.DEVNULL)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)
