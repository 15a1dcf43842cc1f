"""A process named so that a later check finds it, never another process that got its pid.

pid_max is 32768 on the CI machine and one run of the suite starts far more processes, so
the kernel hands every pid on within minutes: a pid a test learned earlier names, at a later
check, the process that had it then or a stranger (a false "left an orphan"; a "still runs"
that holds for the wrong process; a cleanup's SIGKILL to another test's process). So each
pid a test judges later is a `Named` (an int, usable wherever a pid is), which carries its
process's start (clock ticks after boot, /proc/PID/stat's 22nd field: `pidsignal.read_stat`),
read when it was named; a later process of that pid has another start.

- `named(pid)`: while the test knows the process lives (its start read now);
- `named(pid, started_by=WALL)`: from a record written while its process lived (a
  checkpoint record's wall time, a pid file's mtime: `pid_file`): the process that has the
  pid when it is named is that one only if it had started by then (one started later took
  the pid since);
- one not alive as named (gone, a zombie, or a later process) is never alive again.

`is_live`/`live` judge a `Named` by its pid and start; a bare int by its pid alone, which
only the test's own unreaped child keeps (the kernel hands a pid on once it is reaped).
`kill` signals through a pidfd opened before the judgement, so the process judged is the
one signalled. `hand_on` gives a pid to a process of the test's (ns_last_pid), to prove it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from executor.procs import pidsignal

_TICKS = os.sysconf("SC_CLK_TCK")
# A start is read in whole ticks (cut down) and a file's mtime from the coarse clock (up to
# a jiffy early); the wall clock may be slewed between the record and the naming: a process
# started more than this after the record took the pid since (pids wrap in minutes, never
# within this).
STARTED_BY_SLACK_SECS = 0.25


class Named(int):
    """A pid with its process's start (clock ticks after boot) when it was named; `start`
    None: no process of it lived as named."""

    start: int | None

    def __new__(cls, pid: int, start: int | None) -> Named:
        self = super().__new__(cls, pid)
        self.start = start
        return self

    def __getnewargs__(self) -> tuple[int, int | None]:
        return int(self), self.start

    __str__ = int.__repr__  # a pid as ever in text (f-strings, str(), what a product writes)

    def __repr__(self) -> str:  # a failure's message says which ones were gone when named
        return f"{int(self)}" if self.start is not None else f"{int(self)} (gone when named)"


def start_wall(ticks: int) -> float:
    """The wall time of a start read as `ticks` after boot (to the tick)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) + ticks / _TICKS


def named(pid: int, started_by: float | None = None) -> Named:
    """`pid`'s process now, if it lives (and started by the wall time `started_by`); a
    `Named` already is kept as it was named."""
    if isinstance(pid, Named) and started_by is None:
        return pid
    stat = pidsignal.read_stat(pid)
    if stat is None or (started_by is not None and start_wall(stat[2]) > started_by + STARTED_BY_SLACK_SECS):
        return Named(pid, None)
    return Named(pid, stat[2])


def pid_file(path: Path | str) -> set[Named]:
    """The pids written (one or more, whitespace apart) in `path`, each named as its process
    started by the file's last write (its mtime); empty when it cannot be read."""
    try:
        return as_of(path, [int(word) for word in Path(path).read_text().split()])
    except (OSError, ValueError):
        return set()


def pid_in(path: Path | str) -> Named:
    """The one pid written in `path` (`pid_file`); ValueError when it holds no one pid."""
    (pid,) = pid_file(path)
    return pid


def as_of(path: Path | str, pids: Iterable[int]) -> set[Named]:
    """`pids`, which the file `path` named while their processes lived, each named as its
    process started by the file's last write (its mtime). OSError when it is gone."""
    wrote = os.stat(path).st_mtime
    return {named(pid, wrote) for pid in pids}


def is_live(pid: int) -> bool:
    """Whether `pid` lives (not a zombie); a `Named` only as the process it named."""
    if isinstance(pid, Named):
        return pid.start is not None and pidsignal.alive_as(pid, pid.start)
    return pidsignal.read_stat(pid) is not None


def live(pids: Iterable[int]) -> set[int]:
    return {pid for pid in pids if is_live(pid)}


def state(pid: int) -> str:
    """The state letter of `pid`'s process in /proc/PID/stat ('Z': a zombie, unreaped);
    'gone' when it has none, or (a `Named`) when the process that has it is another."""
    data = pidsignal.read_small(f"/proc/{pid}/stat", 4096)
    fields = data[data.rfind(b")") + 2:].split()
    if len(fields) < 20 or (isinstance(pid, Named) and fields[19] != str(pid.start).encode()):
        return "gone"
    return fields[0].decode()


def kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    """`sig` to `pid` if it lives (`is_live`), through a pidfd opened before that judgement
    (a pid handed on after it is not hit); whether it was sent."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not is_live(pid):
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)


def hand_on(pid: int, argv: list[str], within_secs: float = 5.0, new_session: bool = False) -> subprocess.Popen[bytes]:
    """A process of the test's running `argv` whose pid is `pid` (free: its process was
    reaped), by /proc/sys/kernel/ns_last_pid (root); with `new_session`, the leader of a
    session (and process group) of its own, whose id is `pid` too. The write sets the whole host's next pid,
    so a process forked elsewhere meanwhile may take it: tried again once that one is gone,
    for `within_secs`; then the test fails naming what holds it (it was a skip, after 200
    tries in a moment: one that took it and lived on).

    The next forks anywhere on the host go on from `pid`, taking the pids freed since it was
    first given out (within milliseconds: another test's pid files and records then name
    strangers that started in the instant their processes ended), so a test that calls this
    is marked `serial` and runs alone; beside other workers it fails, saying so."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        pytest.fail("handing a pid on rewinds the host's next pid under the other workers' tests: "
                    "mark the test `serial` (make test runs those alone)")
    deadline, holder = time.monotonic() + within_secs, None
    while time.monotonic() < deadline:
        if (holder := command_of(pid)) is not None:  # another's, maybe for a moment
            time.sleep(0.01)
            continue
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        taker = subprocess.Popen(argv, start_new_session=new_session)
        if taker.pid == pid:
            return taker
        taker.kill()
        taker.wait()
    pytest.fail(
        f"pid {pid} is another process's ({holder}) {within_secs} s on: a process forked "
        "elsewhere took it, between the test's ns_last_pid and its fork, and lives on"
        if holder is not None else
        f"pid {pid} was taken by processes forked elsewhere at each try for {within_secs} s")


def command_of(pid: int) -> str | None:
    """The command line of the process `pid` (a zombie's: '(zombie)'), None when it is free."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode() or "(zombie)"
    except OSError:
        return None
