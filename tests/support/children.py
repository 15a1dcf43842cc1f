"""A plain child process for tests that need one alive (a supervisor, a leftover): started
with no stdin, killed and reaped after, whatever the test did."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator


def sleeping_child() -> Iterator[int]:
    """A fixture's body (`yield from sleeping_child()`): a `sleep 600`'s pid."""
    proc = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)
