"""The close's kill at its bound's end (`Containment.kill_all`, `pidsignal.Exits.wait`):
what it names as "SIGKILLed and not yet gone" is what lives then.

- `Exits.wait` reached with its deadline past returned False at once: a process that had
  exited meanwhile (during the close's last walk, under load) stayed in `left()` and was
  named. Now the exits already come are taken first.
- Those taken, a close whose processes were all gone at its bound's end logged an ERROR
  naming "0 process". Now it names none.
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.procs import pidsignal
from executor.procs import supervisor as supervisor_module
from executor.procs.exitby import ExitBy
from executor.procs.supervisor import Supervisor
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    """A supervisor with no task cgroup (its kill is the walk's alone)."""
    sup = Supervisor(sandbox=tmp_path / "sandbox", task_label="closekill.0", env={"PATH": os.environ["PATH"]},
                     post=queue.SimpleQueue().put, cgroups="off", exit_by=ExitBy())
    (tmp_path / "sandbox").mkdir()
    try:
        sup.start()  # inside: a start that raises midway is closed too (its reaper released)
        yield sup
    finally:
        sup.close()


def _alive(pid: int) -> bool:
    """Whether `pid` is a process that is not dead (a zombie counts as dead)."""
    return pidsignal.read_stat(pid) is not None



def test_an_exit_seen_only_at_the_deadline_is_not_left():
    """`Exits.wait` reached with its deadline past (the close's walk, under load, took the
    rest of the bound) while a process it waits for has exited: that exit is taken first,
    so `left()` (what the close names "SIGKILLed and not yet gone") holds only what lives.
    Was: False at once, the exited process named as a survivor."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        with pidsignal.Exits() as exits:
            exits.add({proc.pid: pidsignal.read_stat(proc.pid)[2]})  # type: ignore[index]
            proc.kill()
            wait_for(lambda: not _alive(proc.pid), 10, message="the sleep exited")
            assert not exits.wait(time.monotonic() - 1)
            assert proc.pid not in exits.left(), "an exited process left as not gone"
    finally:
        proc.kill()
        proc.wait()


def test_a_close_whose_processes_all_exited_by_its_deadline_names_none(supervisor, monkeypatch, caplog):
    """The close's bound passes while its processes exit (a walk under load took it): they
    are all gone at the end, so no process is named, and no ERROR logged. Was: each named
    "SIGKILLed and not yet gone" (the exits not taken at the deadline), then, those taken,
    an ERROR naming "0 process"."""
    sup = supervisor
    monkeypatch.setattr(supervisor_module, "CLOSE_KILL_SECS", 0.2)
    sup.spawn(ProcessSpec("a", "exec sleep 600"), 0)
    real_add = pidsignal.Exits.add

    def slow(self, started):  # type: ignore[no-untyped-def]
        real_add(self, started)
        for pid in started:
            wait_for(lambda pid=pid: not _alive(pid), 10, message=f"pid {pid} exited")
        time.sleep(0.3)  # past the close's bound
    monkeypatch.setattr(pidsignal.Exits, "add", slow)
    with caplog.at_level(logging.INFO):
        sup.close()
    assert "close_incomplete" not in caplog.text, caplog.text
