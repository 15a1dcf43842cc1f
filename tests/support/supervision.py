"""A Supervisor driven by a test: `Harness` (spawn, the next exit, a run's log path) and
`Tracker` (every pid a test saw, killed at teardown when still alive and still theirs);
the `tracker` and `harness` fixtures live in `tests/integration/conftest.py`; fake_task.py's
command line, and whether processes are still alive (zombies count as gone)."""
from __future__ import annotations

import contextlib
import os
import queue
import weakref
from pathlib import Path

from config.spec import ProcessSpec
from executor.events import ProcessExited
from executor.procs.cgroups import SETTING_AUTO
from executor.procs.supervisor import Supervisor
from tests.support import pidnames
from tests.support.shellwords import fake_sh
from tests.support.waiting import wait_for

SUPPORT = Path(__file__).resolve().parent
# Wall-clock bounds in the supervisor tests only guard against a hang (a process waited out:
# they sleep 30 s); a loaded machine can delay any of them by a second or more. bench/
# measures the speed.
HANG_GUARD_SECS = 10.0
MiB = 1024 * 1024


fake = fake_sh  # the command line running fake_task.py with ARGS, quoted


def alive(pid: int) -> bool:
    """Whether `pid` lives (not a zombie): a `pidnames.Named` (what `read_pids` and
    `Harness.spawn` give) only as the process it named."""
    return pidnames.is_live(pid)


def all_gone(pids) -> bool:  # type: ignore[no-untyped-def]
    return not any(alive(p) for p in pids)


def read_pids(path: Path, timeout_secs: float = 5) -> list[int]:
    """The pids in `path`, in its order, each named as its process started by the file's
    last write (`pidnames.as_of`)."""
    wait_for(path.exists, timeout_secs, message=f"{path} to appear")
    pids = [int(x) for x in path.read_text().split()]
    return sorted(pidnames.as_of(path, pids), key=pids.index)


class Tracker:
    """Pids seen by a test, killed at teardown when still alive and still theirs (each named
    as it was added: `pidnames`), and
    the supervisors made with it (`Harness`), closed first: a test that failed before its own
    close left its runs' descendants, the watchdog and the supervisor's threads running, and
    this process in the task's cgroup (every later supervisor in it had none). Held weakly:
    one open is held by its threads; one closed and dropped may be collected (a test checks)."""

    def __init__(self) -> None:
        self._known: list[int] = []
        self.supervisors: list[weakref.ref[Supervisor]] = []

    def add(self, *pids: int) -> None:
        self._known.extend(pidnames.named(pid) for pid in pids)  # one gone before it was seen is never killed

    def cleanup(self) -> None:
        errors: list[Exception] = []
        for held in self.supervisors:  # close is idempotent: those the test closed too
            try:
                if (sup := held()) is not None:
                    sup.close()
            except Exception as exc:  # the pids are killed all the same, then it is raised
                errors.append(exc)
        self._kill_known()
        if errors:
            raise errors[0]

    def _kill_known(self) -> None:
        for pid in self._known:
            pidnames.kill(pid)
        for pid in self._known:  # zombies re-parented to this (subreaper) process
            with contextlib.suppress(ChildProcessError):  # reaped already, or not ours
                os.waitpid(pid, os.WNOHANG)


class Harness:
    """A Supervisor in this process, started, its exits on a queue, every pid it spawns
    added to `tracker` (a Tracker, or a test's own set). `task_label` and `cgroups` as the
    Supervisor takes them."""

    def __init__(self, sandbox: Path, tracker: Tracker | set[int], create: bool = True, *,
                 task_label: str = "test.0", cgroups: str = SETTING_AUTO) -> None:
        if create:
            sandbox.mkdir(parents=True, exist_ok=True)
        self.sandbox = sandbox
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.tracker = tracker
        self.sup = Supervisor(sandbox=sandbox, task_label=task_label,
                              env={"PATH": os.environ["PATH"]}, post=self.events.put, cgroups=cgroups)
        if isinstance(tracker, Tracker):
            tracker.supervisors.append(weakref.ref(self.sup))
        self.sup.start()

    def spawn(self, name: str, cmdline: str, run: int = 0, **kw) -> int:  # type: ignore[no-untyped-def]
        pid = pidnames.named(self.sup.spawn(ProcessSpec(name, cmdline, **kw), run))
        self.tracker.add(pid)
        return pid

    def next_exit(self, timeout_secs: float = 5) -> ProcessExited:
        event = self.events.get(timeout=timeout_secs)
        assert isinstance(event, ProcessExited)
        return event

    def log(self, name: str, run: int = 0, stream: str = "stdout") -> Path:
        return self.sandbox / ".logs" / name / str(run) / stream


def fds_on(path: Path) -> int:
    """How many fds of this process name `path`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since the listing
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
    return count
