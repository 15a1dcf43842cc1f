"""The watchdog's keeper under test in the test's process (`executor/procs/watchdog.py`):
`Kept`, a keeper with its `keep` answer and the pids its restarts reported; the integration
tests' `kept` and `refused_spawns` fixtures (their conftest) make them and refuse spawns."""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.procs.exitby import ExitBy
from executor.procs.reaper import Reaper
from executor.procs.watchdog import WatchdogKeeper
from tests.support.waiting import wait_for


class Kept:
    """A keeper under test, its `keep` answer and the pids its restarts reported."""

    def __init__(self, reaper: Reaper, exit_by: ExitBy | None = None) -> None:
        self.reaper = reaper
        self.keep = True
        self.restarts: list[int] = []
        self.cgroup = ("", "", "")
        self.keeper = WatchdogKeeper(reaper=reaper, marker=os.urandom(16).hex(), label="kept.0",
                                     cgroup=lambda: self.cgroup, keep=lambda: self.keep,
                                     restarted=self.restarts.append, exit_by=exit_by)

    def close(self) -> None:
        """Let go and reaped, whatever its exit time; a cgroup a test named it to kill taken
        back first (one that does not exist: it would look for its members 10 s)."""
        self.keep = False
        if self.keeper._announced[1]:
            self.keeper.announce("", "")
        self.keeper.let_go()
        wait_for(lambda: self.keeper.running() is None, 10, message="the watchdog let go gone")

    @contextlib.contextmanager
    def held_unheard(self, signum: int, state: str) -> Iterator[int]:
        """Its watchdog started and sent `signum` while the reaper is held (its lock taken
        here), so that the keeper hears of it only after the `with`: the pid, once in
        `state` (`Z` dead, `T` stopped)."""
        self.keeper.start()
        pid = self.keeper.pid
        assert pid is not None
        with self.reaper.lock:
            os.kill(pid, signum)
            assert reaches(pid, state), f"the watchdog {pid} not in state {state}"
            yield pid


def events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, object]]]:
    """The keeper's lines caught: level, event and fields."""
    return [(r.levelname, r.stoker_event, r.stoker_fields) for r in caplog.records
            if getattr(r, "stoker_event", "").startswith("watchdog_")]


def state_of(pid: int) -> str:
    """Its state letter in /proc/PID/stat (`S`, `T` stopped, `Z` dead and not reaped)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def reaches(pid: int, state: str, within_secs: float = 10) -> bool:
    """Whether process `pid` is in `state` within `within_secs`."""
    deadline = time.monotonic() + within_secs
    while state_of(pid) != state and time.monotonic() < deadline:
        time.sleep(0.005)
    return state_of(pid) == state


def argv_of(pid: int) -> list[bytes]:
    """A watchdog's arguments once its exec has set them: `posix_spawn` returns as the
    kernel swaps in the new program, before it records where its arguments are, and
    `/proc/PID/cmdline` reads empty in between."""
    path = Path(f"/proc/{pid}/cmdline")
    wait_for(lambda: path.read_bytes().startswith(b"/bin/sh\0"), 10, message=f"{pid}'s arguments")
    return path.read_bytes().split(b"\0")[:-1]
