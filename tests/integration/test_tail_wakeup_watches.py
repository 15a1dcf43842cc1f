"""`logwatch.Wakeups`' watches (`executor/cli/logwatch.py`), against the kernel's inotify in
this process: a directory watched again under its kind, or under two kinds, keeps its one
watch until no kind names it; a wait drains every event, however many; what arrives on the
output's descriptor is no hang-up; with no inotify to be had (the descriptor limit reached)
a wait is a sleep; a closed instance is one again."""
from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from executor.cli import logwatch

pytestmark = pytest.mark.timeout(30)


@contextmanager
def _watching(*directories: Path) -> Iterator[tuple[logwatch.Wakeups, list[int]]]:
    wakeups = logwatch.Wakeups()
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY) for d in directories]
    try:
        yield wakeups, fds
    finally:
        wakeups.close()
        for fd in fds:
            os.close(fd)


def _slept(wakeups: logwatch.Wakeups, secs: float, out_fd: int | None = None) -> bool:
    """Whether a wait of `secs` ran to its end (nothing woke it), and said no reader went."""
    started = time.monotonic()
    assert wakeups.wait(out_fd, secs) is False
    return time.monotonic() - started >= secs * 0.9


def test_a_directory_watched_again_under_its_kind_or_under_two_keeps_its_watch(tmp_path):
    with _watching(tmp_path) as (wakeups, (fd,)):
        wakeups.watch("run", fd, logwatch.RUN_DIR_EVENTS)
        wakeups.watch("run", fd, logwatch.RUN_DIR_EVENTS)  # the same directory: the kernel's same watch
        (tmp_path / "a").write_bytes(b"x")
        assert not _slept(wakeups, 5.0)
        wakeups.watch("awaited", fd, logwatch.PROCESS_DIR_EVENTS)
        wakeups.forget("awaited")  # "run" still names it
        assert _slept(wakeups, 0.05)
        (tmp_path / "b").write_bytes(b"x")
        assert not _slept(wakeups, 5.0)
        wakeups.forget("run")  # no kind names it: no more wake-ups
        assert not _slept(wakeups, 5.0)  # the kernel's word that the watch went (IN_IGNORED), read
        (tmp_path / "c").write_bytes(b"x")
        assert _slept(wakeups, 0.1)


def test_a_wait_drains_every_event_however_many(tmp_path):
    with _watching(tmp_path) as (wakeups, (fd,)):
        wakeups.watch("run", fd, logwatch.RUN_DIR_EVENTS)
        for i in range(3000):  # a create, a write, a close: over 64 KiB of events to read
            (tmp_path / f"{i:04d}").write_bytes(b"x")
        assert not _slept(wakeups, 5.0)
        assert _slept(wakeups, 0.1)


def test_what_arrives_on_the_output_is_no_hang_up(tmp_path):
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(b"typed")  # readable now: no reader gone
        with _watching(tmp_path) as (wakeups, _):
            assert _slept(wakeups, 0.05, ours.fileno())
            theirs.close()
            assert wakeups.wait(ours.fileno(), 5.0) is True
    finally:
        ours.close()
        theirs.close()


def test_with_no_inotify_to_be_had_a_wait_is_a_sleep_and_a_watch_nothing(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open("/dev/null", os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no descriptor more
    try:
        wakeups = logwatch.Wakeups()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert wakeups.fd is None
    with _watching(tmp_path) as (_, (fd,)):
        wakeups.watch("run", fd, logwatch.RUN_DIR_EVENTS)
        (tmp_path / "a").write_bytes(b"x")
        assert _slept(wakeups, 0.05)


def test_a_closed_instance_waits_as_a_sleep_and_closes_once(tmp_path):
    with _watching(tmp_path) as (wakeups, (fd,)):
        wakeups.watch("run", fd, logwatch.RUN_DIR_EVENTS)
        wakeups.close()
        assert wakeups.fd is None
        (tmp_path / "a").write_bytes(b"x")
        assert _slept(wakeups, 0.05)
