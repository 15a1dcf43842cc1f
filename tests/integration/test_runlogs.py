"""A supervisor's run logs (`executor/procs/runlogs.RunLogs`), in this process, on real
directories: the runs of a first step readied ahead (a plain logger's two files, the stdout
marked until its spawn takes it; none where a file is there already, past a name that cannot
be made, nor once the descriptors reach their ceiling), taken by their spawns or given up
with what is empty above them (through an operator's symlinked sandbox path, never past what
the task put there); a restarted process's next run staged and its old runs bounded, when
idle, and said when that bookkeeping cannot load; a pump that cannot start failing its run."""
from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.spec import LoggerSpec, LogMode, ProcessSpec
from executor.procs import fdlimit, logpump, runprune, sandboxfs
from executor.procs.exitby import ExitBy
from executor.procs.runlogs import RunLogs
from executor.procs.spawn import SpawnError

PLAIN = LoggerSpec()
ROTATE = LoggerSpec(mode=LogMode.ROTATE, log_size_bytes=1 << 20, backups=1)


def process(name: str, logger: LoggerSpec = PLAIN) -> ProcessSpec:
    return ProcessSpec(name, "true", logger=logger)


@pytest.fixture
def sandbox(tmp_path) -> Path:
    (tmp_path / "sb").mkdir()
    return tmp_path / "sb"


@pytest.fixture
def logs(sandbox) -> Iterator[RunLogs]:
    got = RunLogs(sandbox, "web.0")
    yield got
    got.stop_pump(ExitBy(), 1.0)
    got.close()


@pytest.fixture
def devnull() -> Iterator[int]:
    fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def readied(sandbox: Path, name: str, run: int = 0) -> bool:
    return (sandbox / ".logs" / name / str(run) / "stdout").exists()


def staged(sandbox: Path, name: str, run: int) -> bool:
    """`.logs/NAME/.next-RUN`, made ahead for a restarted process's next run."""
    return (sandbox / ".logs" / name / f".next-{run}" / "stdout").exists()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_plain_logger_s_runs_are_readied_marked_and_others_skipped(logs, sandbox):
    old = os.umask(0o022)
    try:
        logs.ready_ahead([(process("a"), 0), (process("b", ROTATE), 0), (process("c"), 0)], 1 << 20)
    finally:
        os.umask(old)
    assert readied(sandbox, "a") and readied(sandbox, "c") and not (sandbox / ".logs/b").exists()
    run = sandbox / ".logs/a/0"
    assert (mode(run / "stdout"), mode(run / "stderr")) == (0o644 | sandboxfs.READIED, 0o644)


def test_a_run_readied_already_is_not_readied_again_and_the_next_is(logs, sandbox):
    logs.ready_ahead([(process("a"), 0)], 1 << 20)
    first = (sandbox / ".logs/a/0/stdout").stat().st_ino
    logs.ready_ahead([(process("a"), 0), (process("c"), 0)], 1 << 20)
    assert (sandbox / ".logs/a/0/stdout").stat().st_ino == first and readied(sandbox, "c")


def test_a_name_whose_directory_cannot_be_made_is_left_to_its_spawn(logs, sandbox):
    (sandbox / ".logs").mkdir()
    (sandbox / ".logs/x").write_text("the task's file")
    logs.ready_ahead([(process("x"), 0), (process("y"), 0)], 1 << 20)
    assert (sandbox / ".logs/x").read_text() == "the task's file" and readied(sandbox, "y")


def test_a_run_with_a_file_there_already_is_not_readied_and_leaves_nothing(logs, sandbox):
    (sandbox / ".logs/a/0").mkdir(parents=True)
    (sandbox / ".logs/a/0/stderr").write_text("an earlier attempt's")
    logs.ready_ahead([(process("a"), 0), (process("c"), 0)], 1 << 20)
    assert sorted(os.listdir(sandbox / ".logs/a/0")) == ["stderr"] and readied(sandbox, "c")
    assert (sandbox / ".logs/a/0/stderr").read_text() == "an earlier attempt's"


def test_readying_stops_once_the_next_would_reach_the_descriptor_ceiling(logs, sandbox):
    logs.ready_ahead([(process("a"), 0)], 1 << 20)
    directory, stdio = logs._ahead[("a", 0)]
    ceiling = max(directory.fd, *stdio.close_after_fork) + 3 + fdlimit.PLAIN_START  # c's three next: reached
    logs.ready_ahead([(process("c"), 0), (process("d"), 0)], ceiling)
    assert readied(sandbox, "c")
    directory, stdio = logs._ahead[("c", 0)]
    reached = max(directory.fd, *stdio.close_after_fork) + fdlimit.PLAIN_START
    assert readied(sandbox, "d") == (reached < ceiling), (reached, ceiling)  # (as foreseen: not readied)
    logs.ready_ahead([(process("e"), 0), (process("f"), 0)], 0)  # at the ceiling already: one, then none
    assert readied(sandbox, "e") and not readied(sandbox, "f")


def test_a_spawn_takes_its_readied_files_and_clears_their_mark(logs, sandbox, devnull):
    logs.ready_ahead([(process("a"), 0)], 1 << 20)
    (sandbox / ".logs/a/0/stdout").write_bytes(b"x")  # (a file made again would be empty)
    stdio = logs.open(process("a"), 0, devnull)
    try:
        assert os.fstat(stdio.stdout).st_size == 1
        assert mode(sandbox / ".logs/a/0/stdout") == 0o644
    finally:
        stdio.discard()


def test_runs_no_spawn_took_are_given_up_with_what_is_empty_above_them(sandbox, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(sandbox)  # the operator's path to the sandbox: followed
    logs = RunLogs(link, "web.0")
    logs.ready_ahead([(process("a"), 0), (process("b"), 0)], 1 << 20)
    (sandbox / ".logs/a/0/note").write_text("the task's")
    logs.close()
    assert sorted(os.listdir(sandbox / ".logs")) == ["a"] and os.listdir(sandbox / ".logs/a/0") == ["note"]
    logs.close()  # again: nothing more
    (sandbox / ".logs/a/0/note").unlink()
    other = RunLogs(link, "web.0")
    other.ready_ahead([(process("b"), 0)], 1 << 20)
    other.close()
    assert sorted(os.listdir(sandbox / ".logs")) == ["a"]  # a's empty run is no run of b's to remove
    (sandbox / ".logs/a/0").rmdir()
    (sandbox / ".logs/a").rmdir()
    again = RunLogs(link, "web.0")
    again.ready_ahead([(process("b"), 0)], 1 << 20)
    again.close()
    assert not (sandbox / ".logs").exists()


def test_a_restarted_process_s_next_run_is_staged_when_idle_and_its_old_runs_bounded(logs, sandbox, devnull):
    a, b = process("a"), process("b", ROTATE)
    for spec, run in ((a, 0), (a, 1), (b, 0), (b, 1)):
        stdio = logs.open(spec, run, devnull)
        logs.forked(spec, run, stdio)
    logs.idle()
    assert staged(sandbox, "a", 2) and not staged(sandbox, "b", 2) and not staged(sandbox, "a", 3)
    stdio = logs.open(a, 2, devnull)  # the staged one
    assert readied(sandbox, "a", 2) and not staged(sandbox, "a", 2)
    logs.forked(a, 2, stdio)
    for run in range(3, runprune.KEEP_RUNS + 3):
        stdio = logs.open(a, run, devnull)
        logs.forked(a, run, stdio)
    logs.idle()
    kept = sorted(int(n) for n in os.listdir(sandbox / ".logs/a") if n.isdigit())
    assert kept == [0, *range(3, runprune.KEEP_RUNS + 3)], kept  # the first run's kept and the last KEEP_RUNS
    assert staged(sandbox, "a", runprune.KEEP_RUNS + 3)


def test_bookkeeping_that_cannot_load_is_said_and_tried_again(logs, sandbox, devnull, monkeypatch, caplog):
    a = process("a")
    for spec in (a, process("c")):
        for run in (0, 1):
            logs.forked(spec, run, logs.open(spec, run, devnull))
    monkeypatch.setitem(sys.modules, "executor.procs.runprune", None)  # an upgrade's file that does not load
    with caplog.at_level(logging.WARNING, logger="executor.procs.runlogs"):
        logs.idle()
    said = [r.getMessage() for r in caplog.records]
    assert said == ["run_logs_not_loaded reason=\"ModuleNotFoundError: import of executor.procs.runprune halted; None in "
                    "sys.modules\" runs=\"a[1], c[1]\""], said
    assert not staged(sandbox, "a", 2)
    monkeypatch.delitem(sys.modules, "executor.procs.runprune")
    logs.forked(a, 2, logs.open(a, 2, devnull))
    logs.idle()
    assert staged(sandbox, "a", 3)


@pytest.mark.parametrize(("error", "said"), [
    (RuntimeError("can't start new thread"), "can't start new thread"),
    (OSError(errno.EMFILE, "Too many open files"), "Too many open files (EMFILE)"),
])
def test_a_log_pump_that_cannot_start_fails_its_run_and_nothing_else(logs, sandbox, devnull, monkeypatch, error, said):
    def no_pump(label: str):
        raise error

    monkeypatch.setattr(logpump, "LogPump", no_pump)
    with pytest.raises(SpawnError) as failed:
        logs.open(process("b", ROTATE), 0, devnull)
    assert str(failed.value) == f"cannot start the log pump that copies the output of task=web.0 process=b run=0: {said}"
    stdio = logs.open(process("a"), 0, devnull)  # a plain logger's needs no pump
    stdio.discard()


def test_a_closed_run_logs_opens_and_readies_nothing(logs, sandbox, devnull):
    logs.close()
    assert logs.open(process("a"), 0, devnull) is None
    logs.ready_ahead([(process("a"), 0)], 1 << 20)
    logs.idle()
    assert not (sandbox / ".logs").exists()


def test_the_pump_s_thread_is_named_for_its_task(logs, devnull):
    b = process("b", ROTATE)
    logs.forked(b, 0, logs.open(b, 0, devnull))
    assert "stoker-logpump-web.0" in [t.name for t in threading.enumerate()]
