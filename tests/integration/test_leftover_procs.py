"""A LOST task's leftover processes as `stoker status`, the observer and /metrics list them
(`executor/task/leftoverprocs.py`): real processes, some carrying the task's marker, found in
one /proc scan as `inspection.with_leftovers` finds them, each with the process and run its
run marker names and its command line, cut short (the run marker is the task's to set:
anything)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from executor.procs import proctree
from executor.procs.spawn import RUN_MARKER, TASK_MARKER
from executor.task.leftoverprocs import CMDLINE_SHOWN, Leftover, carrying, command_of
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def _sleeping(envs: list[Mapping[bytes, bytes]], argv: list | None = None,
              executable: str | None = None) -> Iterator[list[int]]:
    """One `sleep 600` (or `argv`, run as `executable`) a given environment (its only
    variables), its pid each; killed and reaped after, whatever the test did."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for env in envs:
            procs.append(subprocess.Popen(argv or ["sleep", "600"], executable=executable,
                                          env={b"PATH": os.environb[b"PATH"], **env}, stdin=subprocess.DEVNULL))
        yield [_execed(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def _execed(pid: int) -> int:
    """`pid` once its command line is there: Popen returns as the exec closes its pipe, a
    moment before the kernel has set the new program's arguments (an empty cmdline until then)."""
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes(), 10, message=f"/proc/{pid}/cmdline")
    return pid


def test_each_process_carrying_the_marker_by_pid_with_the_process_and_run_its_run_marker_names(tmp_path):
    m = f"ab{os.getpid()}{tmp_path.name}".encode()
    task, run = f"{TASK_MARKER}=".encode(), f"{RUN_MARKER}=".encode()
    carried = [  # (its environment beyond the task marker, the process and run listed)
        ({run[:-1]: m + b"/web/3"}, "web", 3),
        ({run[:-1]: m + b"/a/b/12"}, "a/b", 12),  # a process name with a slash: the run is after the last
        ({run[:-1]: m + b"/web/007"}, "web", None),  # not a run number the supervisor writes
        ({run[:-1]: m + b"/w\xffb/1"}, "w\ufffdb", 1),  # not UTF-8: read, not a crash
        ({}, "", None),  # no run marker
        ({run[:-1]: b"other/web/1"}, "", None),  # another task's run marker
        ({run[:-1]: m + b"x/web/1"}, "", None),  # a task whose marker starts with this one's
    ]
    not_carried = [{task[:-1]: b"other"}, {task[:-1]: m + b"x"}, {b"X": task + m}]
    envs = [{task[:-1]: m, **more} for more, _, _ in carried] + not_carried
    with _sleeping(envs) as pids:
        found = carrying(reversed(list(proctree.scan().values())), m.decode())
        assert found == sorted((Leftover(pid, process, number, "sleep 600")
                                for pid, (_, process, number) in zip(pids, carried)), key=lambda p: p.pid)


@pytest.mark.parametrize("chars, shown", [(CMDLINE_SHOWN, "whole"), (CMDLINE_SHOWN + 1, "cut")])
def test_a_command_line_is_shown_whole_up_to_its_limit_and_cut_with_dots_past_it(chars, shown):
    number = "600".rjust(chars - len("sleep "), "0")  # GNU sleep reads 000...600 as 600
    with _sleeping([{}], ["sleep", number]) as (pid,):
        command = command_of(pid)
    line = f"sleep {number}"
    assert len(line) == chars
    assert command == (line if shown == "whole" else line[:CMDLINE_SHOWN - 3] + "...")


def test_a_command_line_that_is_not_utf8_is_read_with_its_bad_bytes_replaced():
    with _sleeping([{}], [b"sl\xffeep", "600"], executable="sleep") as (pid,):
        assert command_of(pid) == "sl\ufffdeep 600"


def test_a_command_line_loses_its_final_nuls_and_nothing_else():
    """Each argument ends in a NUL: those at the end go (an empty last argument's too), the
    others are spaces, and nothing else at the end of the last argument is cut."""
    with _sleeping([{}], ["python3", "-c", "import time; time.sleep(600)", "X", ""], executable=sys.executable) as (pid,):
        assert command_of(pid) == "python3 -c import time; time.sleep(600) X"


def test_a_process_gone_has_no_command_line():
    with _sleeping([{}]) as (pid,):
        assert command_of(pid) == "sleep 600"
    assert command_of(pid) == ""  # killed and reaped: no /proc/PID
