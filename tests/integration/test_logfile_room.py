"""A rotating log file on a full disk and among what the task put in its place
(`executor/procs/logpump.LogFile`): rotated early, below its log_size, only when its oldest
backup is a file that holds something (its room is then the newest output's), said once;
a backup the task replaced with a directory or a symlink left as the task's, said once, and
the rotation goes on. Real files in a directory the process is not in (every rename and
open is by the directory's descriptor); the full disk is the write's ENOSPC."""
from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.procs import logpump

LABEL = "task=web.0 process=web run=3 stream=stdout"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    directory = tmp_path / "run"
    directory.mkdir()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    yield directory, fd
    os.close(fd)


@pytest.fixture
def full(refused_writes) -> list[int]:
    """The disk refuses the next N writes (N: the list's one number, 0 at first)."""
    return refused_writes


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().split(" ", 1)[0] == event]


def log_file(directory: Path, fd: int, backups: int = 2, max_bytes: int | None = 100) -> logpump.LogFile:
    return logpump.LogFile(fd, "stdout", directory / "stdout", max_bytes=max_bytes, backups=backups, label=LABEL)


def test_a_full_disk_rotates_early_when_the_oldest_backup_holds_something_and_says_so_once(run, full, caplog):
    directory, fd = run
    caplog.set_level(logging.INFO, logger="executor.procs.logpump")
    log = log_file(directory, fd)
    try:
        for letter in b"abc":
            log.write(bytes([letter]) * 100)
        log.write(b"d" * 40)  # rotated: stdout.2 b's, stdout.1 c's, stdout d's
        full[0] = 1
        log.write(b"e" * 10)  # refused at 40 bytes: the b's dropped for it
        full[0] = 1
        log.write(b"f" * 10)  # again: the c's dropped
    finally:
        log.close()
    assert [(directory / n).read_bytes() for n in ("stdout.2", "stdout.1", "stdout")] == \
        [b"d" * 40, b"e" * 10, b"f" * 10]
    said = lines(caplog, "log_rotated_early")
    assert said == [f"log_rotated_early {LABEL} file={directory / 'stdout'} "
                    "bytes=40 log_size=100 error=\"No space left on device (ENOSPC)\" "
                    "reason=\"the disk is full: rotated below its log_size, its oldest backup dropped for the "
                    "newest output (said once)\""], caplog.text


@pytest.mark.parametrize("oldest", ["missing", "empty", "a directory", "a symlink to a file", "a FIFO"])
def test_a_full_disk_is_the_write_s_error_when_rotating_would_free_nothing(run, full, caplog, oldest):
    directory, fd = run
    log = log_file(directory, fd)
    try:
        log.write(b"a" * 100)
        log.write(b"b" * 100)
        log.write(b"c" * 10)  # stdout.2 a's, stdout.1 b's, stdout c's
        target = directory / "stdout.2"
        target.unlink()
        if oldest == "empty":
            target.write_bytes(b"")
        elif oldest == "a directory":
            target.mkdir()
            (target / "kept").write_bytes(b"the task's")
        elif oldest == "a symlink to a file":
            (directory / "elsewhere").write_bytes(b"x" * 100)
            target.symlink_to("elsewhere")
        elif oldest == "a FIFO":
            os.mkfifo(target)
        full[0] = 1
        with pytest.raises(OSError) as refused:
            log.write(b"d" * 10)
        assert refused.value.errno == errno.ENOSPC
        log.write(b"e" * 10)  # the disk has room again: the same file goes on
    finally:
        log.close()
    assert (directory / "stdout").read_bytes() == b"c" * 10 + b"e" * 10
    assert (directory / "stdout.1").read_bytes() == b"b" * 100
    assert lines(caplog, "log_rotated_early") == []


def test_a_log_that_is_not_rotated_has_no_room_to_make(run, full):
    directory, fd = run
    (directory / "stdout.1").write_bytes(b"an earlier task's")
    log = log_file(directory, fd, max_bytes=None)
    try:
        log.write(b"a" * 10)
        full[0] = 1
        with pytest.raises(OSError):
            log.write(b"b" * 10)
    finally:
        log.close()
    assert (directory / "stdout").read_bytes() == b"a" * 10
    assert (directory / "stdout.1").read_bytes() == b"an earlier task's"


def test_a_dangling_symlink_the_task_left_among_the_backups_is_its_own_and_rotation_goes_on(run, caplog):
    """A rename that fails (a link's over a directory: EISDIR) asks what the source is, the
    link itself, never what it points at (nothing, here: that would raise)."""
    directory, fd = run
    log = log_file(directory, fd, backups=3)
    try:
        for letter in b"abcd":
            log.write(bytes([letter]) * 100)  # stdout.3 a's, .2 b's, .1 c's, stdout d's
        (directory / "stdout.2").unlink()
        (directory / "stdout.2").symlink_to("nowhere")
        (directory / "stdout.3").unlink()
        (directory / "stdout.3").mkdir()
        with caplog.at_level(logging.WARNING, logger="executor.procs.logpump"):
            log.write(b"e" * 100)  # the link left; the c's renamed over it
            log.write(b"f" * 10)  # the c's, a log file, dropped for the d's
    finally:
        log.close()
    assert [(directory / n).read_bytes() for n in ("stdout.2", "stdout.1", "stdout")] == \
        [b"d" * 100, b"e" * 100, b"f" * 10]
    assert (directory / "stdout.3").is_dir()
    said = lines(caplog, "log_backup_blocked")
    assert said == [f"log_backup_blocked {LABEL} file={directory / 'stdout'} backup=stdout.3 "
                    "error=\"IsADirectoryError: Is a directory\" reason=\"the task put what a log file cannot be "
                    "renamed over or out of at stdout.2 or stdout.3: it is left, a log file that cannot take its "
                    "place dropped, and rotation goes on\""], caplog.text


@pytest.fixture
def limit(monkeypatch) -> list[int]:
    """RLIMIT_FSIZE as this process reads it (its one number; RLIM_INFINITY at first), and
    the kernel's EFBIG for a write past it (SIGXFSZ ignored, as Stoker runs)."""
    import resource

    size = [resource.RLIM_INFINITY]
    monkeypatch.setattr(resource, "getrlimit",  # the soft limit is the one a write meets
                        lambda which: (size[0], resource.RLIM_INFINITY) if which == resource.RLIMIT_FSIZE else (0, 0))
    real = logpump.write_all

    def write_all(fd: int, data) -> None:
        room = size[0] - os.fstat(fd).st_size if size[0] != resource.RLIM_INFINITY else len(data)
        real(fd, data[:max(room, 0)])
        if room < len(data):
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(logpump, "write_all", write_all)
    return size


def test_a_rotating_log_at_the_file_size_limit_is_rotated_there_and_at_that_size_since(run, limit, caplog):
    directory, fd = run
    caplog.set_level(logging.INFO, logger="executor.procs.logpump")
    limit[0] = 5000
    log = log_file(directory, fd, max_bytes=100_000)
    try:
        log.write(b"a" * 6000)  # 5000 fit; rotated there, the rest in the next file
        log.write(b"b" * 5000)  # rotated again at 5000, said once
    finally:
        log.close()
    assert [(directory / n).stat().st_size for n in ("stdout.2", "stdout.1", "stdout")] == [5000, 5000, 1000]
    assert (directory / "stdout").read_bytes() == b"b" * 1000 and log.max_bytes == 5000
    said = lines(caplog, "log_rotated_at_size_limit")
    assert said == [f"log_rotated_at_size_limit {LABEL} file={directory / 'stdout'} bytes=5000 log_size=100000 "
                    "reason=\"the file size limit Stoker runs under (RLIMIT_FSIZE, `ulimit -f`) is below the "
                    "logger's log_size: its files are rotated at that limit\""], caplog.text


def test_a_log_already_past_the_limit_is_rotated_at_the_limit_not_at_its_size(run, limit):
    directory, fd = run
    (directory / "stdout").write_bytes(b"o" * 9000)  # an earlier run's, under no limit
    limit[0] = 5000
    log = log_file(directory, fd, max_bytes=100_000)
    try:
        log.write(b"x" * 100)
        log.write(b"y" * 5000)
    finally:
        log.close()
    assert log.max_bytes == 5000
    assert [(directory / n).read_bytes() for n in ("stdout.2", "stdout.1", "stdout")] == \
        [b"o" * 9000, b"x" * 100 + b"y" * 4900, b"y" * 100]


@pytest.mark.parametrize("size", [4095, 100])
def test_a_limit_below_a_page_is_no_size_to_rotate_at(run, limit, size):
    directory, fd = run
    limit[0] = size
    log = log_file(directory, fd, max_bytes=100_000)
    try:
        with pytest.raises(OSError) as refused:
            log.write(b"a" * 5000)
        assert refused.value.errno == errno.EFBIG
    finally:
        log.close()
    assert sorted(p.name for p in directory.iterdir()) == ["stdout"] and log.max_bytes == 100_000


def test_at_a_limit_of_a_page_a_log_is_rotated(run, limit):
    directory, fd = run
    limit[0] = logpump.MIN_LIMIT_ROTATE_BYTES
    log = log_file(directory, fd, max_bytes=100_000)
    try:
        log.write(b"a" * 5000)
    finally:
        log.close()
    assert (directory / "stdout.1").stat().st_size == 4096 and log.max_bytes == 4096


def test_a_file_that_is_not_rotated_stops_at_the_limit(run, limit):
    directory, fd = run
    limit[0] = 5000
    log = log_file(directory, fd, max_bytes=None)
    try:
        with pytest.raises(OSError):
            log.write(b"a" * 6000)
    finally:
        log.close()
    assert sorted(p.name for p in directory.iterdir()) == ["stdout"]
