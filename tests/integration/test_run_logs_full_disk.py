"""A run's copied output (a rotating logger, or one to the file and the console: the log pump) on a sandbox whose disk fills while
the run writes: the run never blocks on a full pipe (the pump drains and drops what it cannot
write, and says so once), and once space frees, its output lands again."""
from __future__ import annotations

import logging
import os
import time

import pytest

from config.spec import LogDestination, LoggerSpec, LogMode
from tests.support import limits
from tests.support.supervision import Harness, MiB
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

WRITTEN = 4_000_000  # bytes the run writes on the full disk: 4 pipes' worth, twice the disk; 0.1 s to write


@pytest.fixture
def full_disk_harness(tmp_path, tracker):
    with limits.tmpfs(tmp_path / "fs", size="2m") as fs:
        h = Harness(fs / "sandbox", tracker)
        try:
            yield h, fs
        finally:
            h.sup.close()


def _pump_lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


@pytest.mark.parametrize("logger", [LoggerSpec(mode=LogMode.ROTATE, log_size_bytes=MiB, backups=2),
                                    LoggerSpec(destination=LogDestination.BOTH)], ids=["rotate", "both"])
def test_a_copied_log_on_a_full_disk_drains_its_run_and_resumes(full_disk_harness, tmp_path, caplog, logger):
    caplog.set_level(logging.INFO, logger="executor.procs.logpump")
    h, fs = full_disk_harness
    go, wrote, again = (tmp_path / name for name in ("go", "wrote", "again"))
    script = (f"echo before; until [ -e {go} ]; do sleep 0.01; done; head -c {WRITTEN} /dev/zero; "
              f"touch {wrote}; until [ -e {again} ]; do sleep 0.01; done; echo after")
    h.spawn("w", script, logger=logger)
    wait_for(lambda: h.log("w").exists() and h.log("w").read_bytes() == b"before\n", 5)
    filler = limits.fill(fs)
    started = time.monotonic()
    go.touch()
    wait_for(wrote.exists, 10, message="the run blocked on its full pipe")
    blocked = time.monotonic() - started
    failed = wait_for(lambda: _pump_lines(caplog, "log_write_failed"), 5)  # (the pump's, a moment after)
    filler.unlink()
    again.touch()
    wait_for(lambda: h.log("w").read_bytes().endswith(b"after\n"), 5, message="the log never resumed")
    assert h.next_exit().status.exit_code == 0
    recovered = wait_for(lambda: _pump_lines(caplog, "log_write_recovered"), 5)  # said once the write landed
    assert blocked < 5, f"the run waited {blocked:.1f} s for its pipe"
    assert len(failed) == 1 and "No space left on device (ENOSPC)" in failed[0] and "process=w" in failed[0], failed
    assert "Errno" not in failed[0], failed  # the words every other line of a full disk has (was: OSError: [Errno 28] ...)
    assert len(recovered) == 1, recovered
    dropped = int(recovered[0].split("dropped_bytes=")[1].split()[0])
    assert 0 < dropped <= WRITTEN, recovered
    assert _kept(h.log("w")).startswith(b"before\n")


def _kept(log) -> bytes:
    """A run's output as its log files hold it, its backups (oldest first) then the file: what
    the pump drained after the disk freed may fill the rotating file past its log_size, and
    then its first line is in `stdout.1` (CI's pump, slow to drain on a loaded machine, wrote
    1.1 MB of zeros after the space came back)."""
    backups = sorted(log.parent.glob(log.name + ".*"), key=lambda path: -int(path.suffix[1:]))
    return b"".join(path.read_bytes() for path in [*backups, log])


def test_a_rotating_log_bigger_than_its_disk_gives_up_its_oldest_backup_to_keep_the_newest(tmp_path, tracker,
                                                                                           caplog):
    """1 MiB files and a backup on a 1.5 MiB disk: the file being written could never reach
    its log_size, so it was never rotated, no backup was ever dropped to make room, and
    every later line (`after`) was lost until the run ended. Now a write the full disk
    refuses rotates it early once, the oldest backup's room taken back."""
    caplog.set_level(logging.INFO, logger="executor.procs.logpump")
    with limits.tmpfs(tmp_path / "fs", size="1536k") as fs:
        h = Harness(fs / "sandbox", tracker)
        try:
            h.spawn("w", "head -c 3000000 /dev/zero; echo after",
                    logger=LoggerSpec(mode=LogMode.ROTATE, log_size_bytes=MiB, backups=1))
            assert h.next_exit().status.exit_code == 0
            wait_for(lambda: _ends_with(h.log("w"), b"after\n"), 5, message="the newest output was lost")
            assert h.log("w").with_name("stdout.1").exists()
            early = _pump_lines(caplog, "log_rotated_early")
            assert len(early) == 1 and "No space left on device (ENOSPC)" in early[0], early  # said once
            assert "task=test.0 process=w run=0 stream=stdout" in early[0], early  # whose file it is
        finally:
            h.sup.close()


def _ends_with(path, end: bytes) -> bool:
    """(A rotation renames the file before it makes the next one.)"""
    try:
        return path.read_bytes().endswith(end)
    except FileNotFoundError:
        return False


def test_a_write_the_full_disk_refuses_twice_rotates_again(tmp_path, refused_writes):
    """One write of the pump's (up to 256 KiB: a run's last bytes and its last line, read
    together) can meet the full disk again after an early rotation: it rotated once a write,
    then dropped the rest, the last line with it (CI, 1 run of the test above in about 40)."""
    from executor.procs import logpump

    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    log = logpump.LogFile(dir_fd, "stdout", tmp_path / "stdout", max_bytes=100, backups=1)
    try:
        log.write(b"a" * 100)
        log.write(b"b" * 10)  # rotated at its size: stdout.1 holds the a's
        refused_writes[0] = 2
        log.write(b"c" * 5)
    finally:
        log.close()
        os.close(dir_fd)
    assert (tmp_path / "stdout").read_bytes() == b"c" * 5 and not refused_writes[0]
