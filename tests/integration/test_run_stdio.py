"""What a run gets as stdout and stderr for each logger (`spawn.open_stdio`), in a real log
directory: the plain logger's two files, the rotating and the console-copying loggers'
pipes to the log pump with their files (stdout's copy to the console's 1, stderr's to 2, a
size limit only when rotating), the console's own, /dev/null; and a file that cannot be
opened, which names it and leaves no descriptor open behind it."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from config.spec import LogDestination, LoggerSpec, LogMode
from executor.procs.spawn import LogDir, SpawnError, log_dir, open_stdio
from tests.support.limits import descriptors, opened_since

ROTATE = LoggerSpec(LogDestination.FILE, LogMode.ROTATE, log_size_bytes=4096, backups=3)
BOTH = LoggerSpec(LogDestination.BOTH, LogMode.STANDARD, log_size_bytes=4096, backups=3)


@pytest.fixture
def run_dir(tmp_path):
    directory = log_dir(tmp_path, "web", 0)
    yield directory
    directory.close()


def test_the_plain_logger_gives_the_run_its_two_files_and_closes_them_after_the_fork(run_dir: LogDir):
    stdio = open_stdio(run_dir, LoggerSpec(), -1, "web[0]")
    try:
        assert stdio.pumped == [] and stdio.close_after_fork == [stdio.stdout, stdio.stderr]
        assert os.readlink(f"/proc/self/fd/{stdio.stdout}") == str(run_dir.path / "stdout")
        assert os.readlink(f"/proc/self/fd/{stdio.stderr}") == str(run_dir.path / "stderr")
    finally:
        stdio.discard()


@pytest.mark.parametrize("logger, size, copies", [(ROTATE, 4096, (None, None)), (BOTH, None, (1, 2))])
def test_a_pumped_logger_gives_the_run_pipes_whose_other_ends_the_pump_reads_into_its_files(
        run_dir: LogDir, logger, size, copies):
    stdio = open_stdio(run_dir, logger, -1, "web[0]")
    try:
        assert stdio.close_after_fork == [stdio.stdout, stdio.stderr]
        for fd in (stdio.stdout, stdio.stderr):
            assert fd is not None and stat.S_ISFIFO(os.fstat(fd).st_mode)
        (out_fd, out_file, out_copy, out_label), (err_fd, err_file, err_copy, err_label) = stdio.pumped
        assert (out_copy, err_copy) == copies
        assert (out_label, err_label) == ("web[0] stream=stdout", "web[0] stream=stderr")
        assert os.fstat(out_fd).st_ino == os.fstat(stdio.stdout).st_ino  # one pipe's two ends
        assert os.fstat(err_fd).st_ino == os.fstat(stdio.stderr).st_ino
        assert (out_file.path, err_file.path) == (run_dir.path / "stdout", run_dir.path / "stderr")
        assert (out_file.max_bytes, err_file.max_bytes) == (size, size)
        os.write(stdio.stdout, b"to stdout\n")  # what the run writes reaches its file through the pump's copy
        assert os.read(out_fd, 100) == b"to stdout\n"
    finally:
        stdio.discard()


def test_the_console_logger_leaves_the_run_this_process_s_and_none_sends_it_to_devnull(run_dir: LogDir):
    console = open_stdio(run_dir, LoggerSpec(LogDestination.CONSOLE), 99, "web[0]")
    assert (console.stdout, console.stderr, console.pumped) == (None, None, [])
    nowhere = open_stdio(run_dir, LoggerSpec(LogDestination.NONE), 99, "web[0]")
    assert (nowhere.stdout, nowhere.stderr, nowhere.close_after_fork) == (99, 99, [])
    assert not (run_dir.path / "stdout").exists()


@pytest.mark.parametrize("logger", [LoggerSpec(), ROTATE, BOTH], ids=["plain", "rotate", "both"])
def test_a_stderr_that_cannot_be_opened_is_named_and_stdout_s_descriptors_are_closed(
        run_dir: LogDir, logger):
    (run_dir.path / "stderr").mkdir()  # the task left a directory where the file goes
    before = descriptors()
    with pytest.raises(SpawnError) as refused:
        open_stdio(run_dir, logger, -1, "web[0]")
    assert str(refused.value).startswith(f"cannot open the log file {run_dir.path / 'stderr'}: ")
    assert "directory" in str(refused.value).lower()
    assert opened_since(before) == {}


def test_a_failed_fork_s_discard_closes_the_pipes_both_ends_and_the_files(run_dir: LogDir):
    before = descriptors()
    stdio = open_stdio(run_dir, ROTATE, -1, "web[0]")
    assert len(opened_since(before)) >= 6  # two pipes' four ends, two files
    stdio.discard()
    assert opened_since(before) == {}
    assert stdio.pumped == [] and stdio.close_after_fork == []


def test_a_log_directory_is_made_by_the_full_walk_and_left_open_to_the_caller(tmp_path: Path):
    directory = log_dir(tmp_path, "web", 3)
    try:
        assert directory.path == tmp_path / ".logs" / "web" / "3"
        assert os.path.samestat(os.fstat(directory.fd), os.stat(directory.path))
    finally:
        directory.close()
