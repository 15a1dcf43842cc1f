"""The test run's own cgroup: every task cgroup a test run leaves behind is found and named.

A `stoker run` or executor makes its task's cgroup (`stoker-<marker>`) below the cgroup it
is in, and its supervisor or watchdog removes it. One that neither removes (a test that
SIGKILLs both) stays, empty, for good; and this host is shared: other test runs and helpers
make and remove `stoker-*` cgroups beside ours at the same moments. So the run's first
process (pytest, or pytest-xdist's controller, before it starts its workers) moves into a
cgroup of its own, `testrun-<pid>-<start>-<namespaces>`, made below the cgroup2 one it is in: every process of
the run is born inside, and every task cgroup one of them makes is below it, whatever runs
beside it. At the end it moves back, waits until every process of the run has exited (its
workers, and any watchdog still removing a task's cgroup), and then what is left below is
this run's alone: cgroups left behind (a task's `stoker-*`, or one a test made there: the
run fails, naming them) and processes still alive (named), both killed and removed.

A run SIGKILLed (a CI job's timeout, `kill -9` of a hung pytest) does none of that: what it
left lives on in its cgroup (1,001 idle processes of `tests/support/background.py` stayed
57 minutes so). The next run, as it starts, sweeps the cgroups beside its own: each
`testrun-*` of this user named in its own pid and time namespaces whose first process is
gone, or whose pid is another process's now (the start time in the name, in clock ticks
after boot, is not that process's), has its processes killed, and is removed, named
(`SessionCgroup.swept`). A live run's is never touched: nor one named in other namespaces
(`testrun-<pid>-<start>-<pidns>.<timens>`: a run in a time namespace reads every start time
shifted, one in a pid namespace other pids), nor one named as an older checkout did
(`testrun-<pid>`, `testrun-<pid>-<start>`), removed only once its pid is gone and it is empty.

Where this process is in a cgroup-v1 freezer hierarchy too, it makes the same there and
moves in, so that a test's `STOKER_CGROUPS=DIR` for the v1 freezer (`cgroups.FREEZER`: the
freezer cgroup the test is in) is below it as well; what is left there at the end is named,
killed and removed the same way (a v1 freezer has no `cgroup.kill`: each member SIGKILLed).

Root only, on a host with a cgroup2 hierarchy; elsewhere the run goes on without it (`begin`
says why). Never raises.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import attrs

from executor.procs import cgrouplost, cgroupwalk, pidsignal
from executor.procs.cgroup_paths import CgroupKind, own_places
from tests.support.cgroups import members, subtree

PREFIX = "testrun-"
# for the run's processes to exit on their own once it is over (an upper bound; a test of the
# guard sets less: what its run leaves never exits, and the whole wait is spent)
EXIT_SECS = float(os.environ.get("STOKER_TEST_RUN_EXIT_SECS", "30"))
# for the processes SIGKILLed then to leave their cgroups (a bound: it ends as they are gone)
KILLED_SECS = float(os.environ.get("STOKER_TEST_RUN_KILLED_SECS", "30"))


@attrs.frozen
class SessionCgroup:
    directory: Path
    home: Path
    freezer: SessionCgroup | None = None  # the run's own in the v1 freezer hierarchy, if any
    swept: tuple[str, ...] = ()  # what the sweep found of ended runs (`_sweep`), in words


@attrs.frozen
class Leftovers:
    cgroups: list[str]  # the cgroups left right below the run's (a task's, or one a test made)
    processes: list[str]  # "PID COMMAND" of each process still alive, killed
    interrupted: bool = False  # a Ctrl-C ended the wait for them
    problem: str = ""  # why nothing was checked, killed or removed (the run could not leave)

    def lines(self, directory: Path) -> list[str]:
        """What the run left in `directory`, its cgroup, in words (one error line each)."""
        lines = [self.problem] if self.problem else []
        if self.cgroups:
            lines.append(f"this run left {len(self.cgroups)} cgroup(s) behind in {directory} "
                         f"(tests must remove every cgroup they make): {' '.join(self.cgroups)}")
        if self.processes:
            lines.append(f"this run left {len(self.processes)} process(es) running, killed now: "
                         + "; ".join(self.processes))
        return lines


def begin() -> SessionCgroup | str:
    """Make the run's cgroup and move this process into it; else why not, in words."""
    if os.geteuid() != 0:
        return "not root"
    try:
        places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    except OSError as e:
        return f"cannot read /proc/self/cgroup: {e}"
    home = next((Path(p.directory) for p in places if p.kind is CgroupKind.V2), None)
    if home is None:
        return "no cgroup2 hierarchy"
    made = _enter(home)
    freezer = next((Path(p.directory) for p in places if p.kind is CgroupKind.V1_FREEZER), None)
    if isinstance(made, SessionCgroup) and freezer is not None:
        inner = _enter(freezer)  # (none: the run goes on, its v1 freezer cgroups unguarded)
        return attrs.evolve(made, freezer=inner) if isinstance(inner, SessionCgroup) else made
    return made


def name_of(pid: int) -> str | None:
    """The name of the cgroup the run whose first process is `pid` makes (None: gone):
    its pid, start time and the namespaces both were read in (`namespaces`)."""
    stat = pidsignal.read_stat(pid)
    return None if stat is None else f"{PREFIX}{pid}-{stat[2]}-{namespaces()}"


def made_by(home: Path, pid: int) -> list[Path]:
    """The cgroups below `home` named for a run whose first process was `pid`."""
    return sorted(home.glob(f"{PREFIX}{pid}-*"))


def _enter(home: Path) -> SessionCgroup | str:
    """The run's cgroup made below `home`, this process moved in; else why not, in words."""
    swept = _sweep(home)
    directory = home / str(name_of(os.getpid()))
    try:
        directory.mkdir()
        (directory / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as e:
        with contextlib.suppress(OSError):
            directory.rmdir()
        return f"cannot make or enter {directory}: {e}"
    return SessionCgroup(directory, home, swept=tuple(swept))


def end(cgroup: SessionCgroup) -> Leftovers:
    """Move back home, wait for the run's processes to exit, then kill and remove what is
    left below the run's cgroup; what was left. A Ctrl-C while it waits ends the wait: what
    is left is killed and removed all the same (`interrupted`)."""
    try:
        for run in (cgroup.freezer, cgroup) if cgroup.freezer is not None else (cgroup,):  # v2's last:
            (run.home / "cgroup.procs").write_text(str(os.getpid()))  # (the wait right after it)
    except OSError as e:  # (was: "left 1 process(es) running, killed now: cannot leave ...")
        return Leftovers([], [], problem=f"this run cannot leave its cgroup {run.directory} for "
                         f"{run.home} ({e}): what it left there is neither checked, killed nor removed")
    try:
        _wait_emptied(cgroup.directory, EXIT_SECS)
    except KeyboardInterrupt:  # (was: it ended there, the processes alive, in the cgroup, for good)
        return attrs.evolve(_kill_and_remove(cgroup), interrupted=True)
    return _kill_and_remove(cgroup)


def _kill_and_remove(cgroup: SessionCgroup) -> Leftovers:
    """What is left below the run's cgroup(s), killed and removed; its v1 freezer one's
    cgroups named by their path. Those are thawed first: a frozen member dies only once
    thawed, and one in both stayed in the cgroup2 one (its rmdir failed, and it stayed)."""
    if cgroup.freezer is not None:
        cgroupwalk.thaw(str(cgroup.freezer.directory))
    pids = _members(cgroup.directory)
    processes = [_describe(pid) for pid in pids]
    if processes:
        with contextlib.suppress(OSError):
            (cgroup.directory / "cgroup.kill").write_text("1")
        _wait_emptied(cgroup.directory, KILLED_SECS)
    below = _subtree(cgroup.directory)
    left = [d.name for d in below if d.parent == cgroup.directory]
    for d in reversed([cgroup.directory, *below]):
        with contextlib.suppress(OSError):
            d.rmdir()
    if cgroup.freezer is not None:
        inner = cgroup.freezer.directory
        for pid in (p for p in _members(inner) if p not in pids):
            processes.append(_describe(pid))
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        left += [str(d) for d in _subtree(inner) if d.parent == inner]
        cgrouplost.remove_emptied(str(inner), KILLED_SECS)  # those below first; (once the killed left)
    return Leftovers(left, processes)


def _sweep(home: Path) -> list[str]:
    """Kill and remove the cgroups below `home` of this user's runs that are over (see
    above); each, with how many processes it held, in words. One of an older name whose pid
    is gone is removed only if empty (its pid may be another namespace's)."""
    said = []
    with contextlib.suppress(OSError):
        for d in home.glob(f"{PREFIX}*"):
            verdict = _over(d)
            if verdict == "over":
                killed, why = _reclaim(d)
                said.append(f"an earlier run's cgroup {d} (its pytest gone: SIGKILLed?) held "
                            f"{killed} process(es): killed; {why or 'removed'}")
            elif verdict == "gone":
                for below in reversed([d, *_subtree(d)]):
                    with contextlib.suppress(OSError):
                        below.rmdir()
    return said


def _over(d: Path) -> str | None:
    """"over": `d` is the cgroup of a run of this user, named in this process's pid and time
    namespaces, that is over: its first process is gone, or another started since under its
    pid (the start time its name holds is not the pid's now). "gone": one named without its
    namespaces (an older checkout's) whose pid is gone here. None: leave it alone (a live
    run's, another user's, one named in other namespaces: its pid and start time read
    otherwise here)."""
    pid, _, rest = d.name[len(PREFIX):].partition("-")
    start, _, spaces = rest.partition("-")
    if not pid.isdigit() or not (start.isdigit() or start == ""):
        return None
    try:
        if not d.is_dir() or d.is_symlink() or d.stat().st_uid != os.geteuid():
            return None
    except OSError:
        return None
    stat = pidsignal.read_stat(int(pid))  # None: gone, or a zombie (its run is over)
    if spaces == "":
        return "gone" if stat is None else None
    if spaces != namespaces():
        return None
    return "over" if stat is None or stat[2] != int(start) else None


def namespaces() -> str:
    """This process's pid and time namespaces (their inode numbers; 0: none), in which the
    pids and start times it reads are what they are."""
    def inode(kind: str) -> int:
        try:
            return os.stat(f"/proc/self/ns/{kind}").st_ino
        except OSError:
            return 0
    return f"{inode('pid')}.{inode('time')}"


def _reclaim(d: Path) -> tuple[int, str | None]:
    """Every process left in `d` and below SIGKILLed (v2: `cgroup.kill`; v1 freezer: each,
    thawed as `remove_emptied` removes them), then the cgroups removed; how many processes,
    and why the removal failed (None: removed)."""
    pids = cgroupwalk.pids(str(d))
    if pids and (d / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            (d / "cgroup.kill").write_text("1")
    else:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return len(pids), cgrouplost.remove_emptied(str(d), KILLED_SECS)


def _subtree(directory: Path) -> list[Path]:
    """The cgroups below `directory`, each before those below it."""
    return [Path(d) for d in subtree(str(directory))[1:]]


def _members(directory: Path) -> list[int]:
    return [pid for d in subtree(str(directory)) for pid in members(d)]


def _describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = "(gone)"
    return f"{pid} {command.strip()[:200]}"


def _wait_emptied(directory: Path, within_secs: float) -> None:
    """Until `populated 0` (woken by the kernel as cgroup.events changes), or the time."""
    cgroupwalk.wait_emptied(str(directory), time.monotonic() + within_secs)
