"""`stoker tail -f` woken by the kernel (`executor/cli/logwatch.py`): with a look only every
60 s here, a write, a rotation and a new run are each printed at once, since inotify says
the run's or the process's directory changed; without inotify (its per-user limit
reached) the follower looks at its interval, as before; the wake-up's own rules (a reader
gone, the watch moved with the run, no descriptor left behind)."""
from __future__ import annotations

import gc
import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from executor.cli import logwatch
from executor.cli.tail import Follower, ProcessLogs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)
IDLE_SECS = 60.0  # a look this far apart: only a wake-up prints within the test's waits


def log(sandbox: Path, run: int = 0, text: bytes = b"") -> Path:
    d = sandbox / ".logs" / "web" / str(run)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stdout").write_bytes(text)
    return d / "stdout"


@contextmanager
def following(sandbox: Path, run: int = 0, idle_secs: float = IDLE_SECS) -> Iterator[io.BytesIO]:
    """`-f` of web's stdout from its end, on a thread; stopped on the way out (a file made in
    the run's directory wakes it to see the stop)."""
    logs = ProcessLogs(sandbox, "web", "stdout")
    rdir, fd = logs.open(run)
    out, done = io.BytesIO(), threading.Event()
    follower = Follower(logs, run, rdir, fd, os.fstat(fd).st_size, pinned=False)
    thread = threading.Thread(target=follower.follow, args=(out, done.is_set, idle_secs))
    thread.start()
    try:
        yield out
    finally:
        done.set()
        stopping = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < stopping:
            (sandbox / ".logs/web" / str(follower.run) / "wake").write_bytes(b"")
            thread.join(0.05)
        assert not thread.is_alive(), "the follower did not stop"


def test_a_write_is_printed_as_it_comes_not_at_the_next_look(tmp_path):
    path = log(tmp_path, text=b"old\n")
    with following(tmp_path) as out:
        time.sleep(0.05)  # waiting now
        for line in (b"one\n", b"two\n"):
            with open(path, "ab") as f:
                f.write(line)
            assert wait_for(lambda line=line: out.getvalue().endswith(line), 5)  # the look: 60 s on
    assert out.getvalue() == b"one\ntwo\n"


def test_a_rotation_and_a_new_run_wake_it(tmp_path):
    path = log(tmp_path, text=b"old\n")
    with following(tmp_path) as out:
        time.sleep(0.05)
        os.replace(path, path.with_name("stdout.1"))
        path.write_bytes(b"after the rotation\n")
        assert wait_for(lambda: out.getvalue().endswith(b"after the rotation\n"), 5)
        log(tmp_path, run=1, text=b"run one\n")
        assert wait_for(lambda: out.getvalue().endswith(b"run one\n"), 5), out.getvalue()
        with open(tmp_path / ".logs/web/1/stdout", "ab") as f:  # the watch moved with the run
            f.write(b"more of run one\n")
        assert wait_for(lambda: out.getvalue().endswith(b"more of run one\n"), 5), out.getvalue()
    assert out.getvalue() == b"after the rotation\n==> web run 1: stdout <==\nrun one\nmore of run one\n"


def test_without_inotify_it_looks_at_its_interval(tmp_path, monkeypatch):
    real = logwatch.Wakeups.__init__

    def refused(self: logwatch.Wakeups) -> None:  # as inotify_init1's EMFILE leaves it
        real(self)
        self.close()

    monkeypatch.setattr(logwatch.Wakeups, "__init__", refused)
    path = log(tmp_path, text=b"old\n")
    with following(tmp_path, idle_secs=0.05) as out:
        with open(path, "ab") as f:
            f.write(b"one\n")
        assert wait_for(lambda: out.getvalue() == b"one\n", 5)


def test_the_wait_ends_at_its_interval_or_a_reader_gone_and_leaves_no_descriptor(tmp_path):
    gc.collect()  # an earlier test's garbage closes its descriptors now, not during this one
    before = set(os.listdir("/proc/self/fd"))
    wakeups = logwatch.Wakeups()
    assert wakeups.fd is not None
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    read_end, write_end = os.pipe()
    try:
        wakeups.watch("run", dir_fd, logwatch.RUN_DIR_EVENTS)
        started = time.monotonic()
        assert wakeups.wait(write_end, 0.05) is False
        assert time.monotonic() - started >= 0.04
        (tmp_path / "a").write_bytes(b"x")
        started = time.monotonic()
        assert wakeups.wait(write_end, IDLE_SECS) is False  # woken by the write, its events read
        assert time.monotonic() - started < 5
        started = time.monotonic()
        assert wakeups.wait(write_end, 0.05) is False  # nothing new: the events were drained
        assert time.monotonic() - started >= 0.04
        os.close(read_end)
        read_end = -1
        assert wakeups.wait(write_end, IDLE_SECS) is True  # its reader gone
    finally:
        wakeups.close()
        for fd in (dir_fd, read_end, write_end):
            if fd >= 0:
                os.close(fd)
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_watch_moved_to_another_directory_leaves_the_one_before(tmp_path):
    first, second = tmp_path / "0", tmp_path / "1"
    first.mkdir()
    second.mkdir()
    wakeups = logwatch.Wakeups()
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY) for d in (first, second)]
    try:
        wakeups.watch("run", fds[0], logwatch.RUN_DIR_EVENTS)
        wakeups.watch("run", fds[1], logwatch.RUN_DIR_EVENTS)
        wakeups.wait(None, 0.05)  # the watch removed says so once (IN_IGNORED): read
        (first / "late").write_bytes(b"x")  # the run before: no wake-up
        started = time.monotonic()
        assert wakeups.wait(None, 0.1) is False
        assert time.monotonic() - started >= 0.09
        (second / "now").write_bytes(b"x")
        started = time.monotonic()
        assert wakeups.wait(None, IDLE_SECS) is False
        assert time.monotonic() - started < 5
    finally:
        wakeups.close()
        for fd in fds:
            os.close(fd)
