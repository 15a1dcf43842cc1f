"""Real cgroup-v1 memory cgroups for the OOM tests: made with a small limit, emptied (every
member SIGKILLed) and removed afterwards, even when the test failed. Skips when not root or
when this host has no writable v1 memory hierarchy (a v2-only host's memory controller is
left to its own test, should one be had)."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

V1_MEMORY = Path("/sys/fs/cgroup/memory")


@contextlib.contextmanager
def memory_cgroup(name: str, limit_bytes: int) -> Iterator[Path]:
    """A fresh v1 memory cgroup below the root of the hierarchy, `limit_bytes` its limit."""
    if os.geteuid() != 0:
        pytest.skip("making a memory cgroup needs root")
    if not (V1_MEMORY / "memory.oom_control").exists():
        pytest.skip("no cgroup-v1 memory hierarchy at /sys/fs/cgroup/memory")
    directory = V1_MEMORY / f"{name}-{os.getpid()}"
    try:
        directory.mkdir()
        (directory / "memory.limit_in_bytes").write_text(str(limit_bytes))
    except OSError as e:
        with contextlib.suppress(OSError):
            directory.rmdir()
        pytest.skip(f"cannot make a memory cgroup: {e}")
    if "oom_kill " not in (directory / "memory.oom_control").read_text():
        directory.rmdir()
        pytest.skip("this kernel does not count OOM kills per memory cgroup (Linux < 4.13)")
    try:
        yield directory
    finally:
        remove(directory)


def remove(directory: Path) -> None:
    """SIGKILL every member, then remove the cgroup (within 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            directory.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
