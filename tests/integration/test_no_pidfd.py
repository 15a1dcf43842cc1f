"""Where there are no pidfds (a kernel before 5.3; a container whose seccomp profile denies
`pidfd_open`, as older Docker and Podman profiles do, EPERM), emulated by making
`os.pidfd_open` fail so for the test: the leftover kill still waits until the processes it
killed are dead (`pidsignal.wait_exited` looks at /proc instead), so their children have
re-parented to Stoker before it looks again. It returned at once, and a fork-hopper
outlived its failed run now and then (tests/integration/test_containment.py's hopper test,
run without pidfds, failed one time in three)."""
from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

from executor.procs import pidsignal


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(pid: int, flags: int = 0) -> int:
        raise PermissionError(errno.EPERM, "Operation not permitted")  # a seccomp filter's answer
    monkeypatch.setattr(os, "pidfd_open", denied)


def test_it_waits_for_a_process_to_exit_without_pidfds(no_pidfd: None) -> None:
    proc = subprocess.Popen(["sleep", "0.2"])
    try:
        started = time.monotonic()
        assert pidsignal.wait_exited({proc.pid: 0}, started + 30)
        assert pidsignal.read_stat(proc.pid) is None, "returned while the process still ran"
        assert time.monotonic() - started < 20  # at its exit, not at the deadline (a generous bound)
    finally:
        proc.kill()
        proc.wait()


def test_its_deadline_still_holds_without_pidfds(no_pidfd: None) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not pidsignal.wait_exited({proc.pid: 0}, time.monotonic() + 0.05)
        assert pidsignal.read_stat(proc.pid) is not None
    finally:
        proc.kill()
        proc.wait()
