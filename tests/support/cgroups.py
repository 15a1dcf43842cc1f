"""The task cgroups a test made: finding them, and removing them whatever happened.

Owns: whether this host lets Stoker make a task cgroup (`unavailable()` says why not, or
None), one made as the supervisor makes it (`task_cgroup_life`), the `stoker-*` cgroups a process is in (`stoker_cgroups_of(pid)`, read while it lives),
and `remove(directory)`, which SIGKILLs every member (through `cgroup.kill`, or the v1
freezer) and removes the directory, never raising. Tests register every cgroup they learn of
with a `CgroupTracker` and remove them at teardown, so a failing test leaves none behind. It
only ever touches directories named `stoker-*` that a test handed it.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from executor.procs import cgrouplife, cgroups, cgroupwalk
from executor.procs.cgroup_paths import CgroupKind, own_places


def _own_freezer() -> str:
    """The v1 freezer cgroup this process is in: where a test gives STOKER_CGROUPS=DIR for
    the v1 freezer, below the test run's own (tests/support/sessioncgroup.py), whose end
    finds what is left there; the hierarchy's usual mount where none shows it."""
    try:
        places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    except OSError:
        places = []
    return next((p.directory for p in places if p.kind is CgroupKind.V1_FREEZER), "/sys/fs/cgroup/freezer")


def __getattr__(name: str) -> str:
    """`FREEZER`, read as it is imported: by a test module, once the run moved into its own
    (sessioncgroup imports this module before it does)."""
    if name == "FREEZER":
        return _own_freezer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def unavailable(setting: str = "auto") -> str | None:
    """None when a task cgroup can be made here (one is made and removed), else why not."""
    made = cgroups.create(f"stoker-probe-{uuid.uuid4().hex[:8]}", setting)
    if isinstance(made, cgroups.NoCgroup):
        return made.reason
    cgroups.discard(made)
    return None


def task_cgroup_life(label: str, setting: str) -> tuple[cgrouplife.TaskCgroupLife, cgroups.TaskCgroup]:
    """A task cgroup's life as the supervisor keeps it (no reaper, nothing announced) and its
    cgroup, made (an AssertionError saying why not); the test's to close, remove and release."""
    life = cgrouplife.TaskCgroupLife(reaper=None, label=label, setting=setting)  # type: ignore[arg-type]
    life.make(f"stoker-test-{os.urandom(4).hex()}", lambda directory, how: None)
    assert life.cgroup is not None, life.no_cgroup
    return life, life.cgroup


def stoker_cgroups_of(pid: int) -> list[str]:
    """The directories of the `stoker-*` cgroups `pid` is in ([] when it is gone)."""
    try:
        proc_cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    return [p.directory for p in own_places(proc_cgroup, mountinfo)
            if os.path.basename(p.directory).startswith("stoker-")]


def members(directory: str) -> list[int]:
    try:
        return [int(x) for x in Path(directory, "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def subtree(directory: str) -> list[str]:
    """`directory` and the cgroups below it, each before those below it, by path (the test
    run's guard, `sessioncgroup.py`; the product walks by descriptors: `cgroupwalk.py`); one
    gone or not ours to read meanwhile is left out. A loop, not os.walk: Python 3.11's
    recurses once per level, and a run may nest 1,000 cgroups (RecursionError)."""
    found, i = [directory], 0
    while i < len(found):
        with contextlib.suppress(OSError), os.scandir(found[i]) as entries:
            found.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        i += 1
    return found


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass


def remove(directory: str, timeout_secs: float = 5.0) -> None:
    """SIGKILL every member of a `stoker-*` cgroup (and of the cgroups below it) and remove
    them; never raises. A cgroup this (test) process is in is left alone: its Supervisor's
    close moves it out."""
    d = Path(directory)
    if not d.name.startswith("stoker-"):
        raise ValueError(f"{directory} is not a task cgroup")
    if os.getpid() in members(directory):
        return
    deadline = time.monotonic() + timeout_secs
    while d.exists() and time.monotonic() < deadline:
        if (d / "cgroup.kill").exists():
            _write(d / "cgroup.kill", "1")
        else:
            frozen = (d / "freezer.state").exists()
            if frozen:
                _write(d / "freezer.state", "FROZEN")
            for pid in cgroupwalk.pids(directory):  # and those below (by descriptors: any depth)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if frozen:
                cgroupwalk.thaw(directory)
        cgroupwalk.remove_below(directory)  # those a run made below first
        try:
            os.rmdir(directory)
        except OSError:
            time.sleep(0.01)


def nest(directory: str, depth: int, pid: int, name: str = "i") -> None:
    """Make `depth` cgroups named `name`, each below the one before, below `directory`, and
    move `pid` into the innermost: by directory descriptors, so past PATH_MAX (4,096 bytes)
    too."""
    inner = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=inner)
            inner, above = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=inner), inner
            os.close(above)
        with open(os.open("cgroup.procs", os.O_WRONLY, dir_fd=inner), "w") as procs:
            procs.write(str(pid))
    finally:
        os.close(inner)


class CgroupTracker:
    """Every task cgroup a test learned of; `cleanup()` removes those still there."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def add(self, *directories: str | None) -> None:
        for d in directories:
            if d and d not in self.seen:
                self.seen.append(d)

    def add_of(self, pid: int) -> list[str]:
        found = stoker_cgroups_of(pid)
        self.add(*found)
        return found

    def left(self) -> list[str]:
        return [d for d in self.seen if os.path.exists(d)]

    def cleanup(self) -> None:
        for d in self.seen:
            remove(d)


@contextlib.contextmanager
def bound_beside(task: str) -> Iterator[tuple[str, subprocess.Popen[bytes], list[str]]]:
    """A cgroup `stoker-test-*` beside the task cgroup `task` (not below it), with an empty
    one `e` below it and a `sleep` in it, and the command (`unshare`, as root) that runs the
    command after it in a mount namespace of its own where that cgroup is bind-mounted on
    `task`/m: a cgroup outside the task's that a walk of the task's must never touch (the
    same hierarchy: the same st_dev). Both gone at the end."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        raise RuntimeError("needs root and unshare")
    outside = os.path.join(os.path.dirname(task), f"stoker-test-{uuid.uuid4().hex[:8]}")
    os.makedirs(os.path.join(outside, "e"))
    os.mkdir(os.path.join(task, "m"))
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        Path(outside, "cgroup.procs").write_text(str(sleeper.pid))
        yield outside, sleeper, ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 'mount --bind "$1" "$2" || exit 3; shift 2; exec "$@"', "sh",
                                 outside, os.path.join(task, "m")]
    finally:
        sleeper.kill()
        sleeper.wait()
        remove(outside)


@contextlib.contextmanager
def frozen_in_a_cgroup(pid: int) -> Iterator[str]:
    """Process `pid` moved into a task cgroup made for it (`cgroups.create`, as a supervisor
    makes its task's) and frozen there (v2 `cgroup.freeze`, else the v1 freezer): the cgroup's
    directory, once the kernel says it is frozen. Its members killed and the cgroup removed
    at the end (the process's own end, were it never moved in, is the caller's)."""
    from tests.support.waiting import wait_for

    made = cgroups.create(f"stoker-test-{os.urandom(4).hex()}", "auto")
    assert not isinstance(made, cgroups.NoCgroup), made.reason
    directory = made.directory
    try:
        v2 = os.path.exists(os.path.join(directory, "cgroup.freeze"))
        Path(directory, "cgroup.procs").write_text(str(pid))
        Path(directory, "cgroup.freeze" if v2 else "freezer.state").write_text("1" if v2 else "FROZEN")
        events = Path(directory, "cgroup.events" if v2 else "freezer.state")
        wait_for(lambda: ("frozen 1" in events.read_text().splitlines()) if v2 else
                 events.read_text().strip() == "FROZEN", 10, message="frozen")
        yield directory
    finally:
        remove(directory)
        cgroups.release(made)  # this process may make another (one task cgroup a process at a time)
