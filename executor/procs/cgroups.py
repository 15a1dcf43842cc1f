"""The task's own cgroup: made at start, entered by the Stoker process, killed and removed at
the end (or by the watchdog, after a crash).

Why the Stoker process itself goes in: a process joins a cgroup at fork, for free, when its
parent is in it; moving a process that already runs costs an RCU grace period (10–20 ms
measured, with `cgroup_threadgroup_rwsem`), which would make every restart that much slower.
So the supervising process moves in once, at start, and every run, shell command and
descendant is born inside, before it can run a single instruction: none can be outside it,
whatever it does to its session or environment, unless it may write another cgroup's
`cgroup.procs` (root). At the end the Stoker process moves back to the cgroup it came from
(`home`), and the task's cgroup is killed as a whole and removed.

Owns: choosing the place (`executor/procs/cgroup_paths.py` parses where we are), making
the `stoker-MARKER` cgroup (`task_name`: the task's whole marker; a lost attempt's, as a
re-run finds and removes it, is `cgrouplost.py`'s), the one-per-process rule (a process is in one
cgroup per hierarchy, so a second task supervised by the same process falls back),
and the kill: `cgroup.kill` (v2), or freeze, SIGKILL every member, thaw (v2 `cgroup.freeze`,
v1 `freezer`). `Kill.how` names the same three ways to the watchdog's script.

Under systemd (`auto`): a service's cgroup is systemd's own unless the unit says
`Delegate=yes` (systemd's rule: only a delegated subtree may be changed by its processes;
systemd 251 and later mark one with the `user.delegate`/`trusted.delegate` attribute). So
when Stoker is the process systemd started for a service (`SYSTEMD_EXEC_PID`, systemd 248
and later, is its pid: not an executor that inherited a Mesos agent unit's variables) and
the cgroup it is in is that service's (named `*.service`) and not delegated (not marked
so, nor owned by this process's user: systemd hands a delegated cgroup to the unit's `User=`,
marked before 251 by nothing else, and its `trusted.delegate` is not that user's to read), no
cgroup is made below it in the v2 hierarchy: the v1 freezer is used where there is one (systemd does not manage it), else
the task runs without a cgroup of its own, the reason naming the unit. Either way systemd
still holds every process in the unit's cgroup, and `systemctl stop` ends them all.

Never raises out of `create` (a cgroup that cannot be made or entered is a reason, and the
task runs without one); `TaskCgroup.enter` and `leave` raise OSError; `kill_and_remove`
returns a problem in words. No logging here: the supervisor logs what happened.
"""
from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable

import attrs

from executor.procs.cgroup_paths import CgroupKind, Place, own_places, parse_proc_cgroup, place_of
from executor.procs.sandboxfs import describe_os_error

SETTING_AUTO = "auto"
SETTING_OFF = "off"
POLL_SECS = 0.002  # between looks at a cgroup that is being frozen or emptied
RETRY_SECS = 0.1  # between a kill that failed and the next, while the members stay
STALE_SECS = 60.0  # an empty task cgroup this old was left by a crash
# Out of descriptors or memory: a cgroup's file or the cgroups below it not read is no
# empty list (a member never killed), but an error (`cgroupwalk.WalkCut`)
SCARCE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})

_holder_lock = threading.Lock()
_holder: str | None = None  # the task cgroup this process is in, if any


@attrs.frozen
class NoCgroup:
    """Why the task has no cgroup of its own (in words)."""

    reason: str


@attrs.define(eq=False)
class TaskCgroup:
    place: Place  # the task's cgroup
    home: Place  # where the Stoker process was, and returns to
    how: str  # "kill" (cgroup.kill), "freeze" (cgroup.freeze), "freezer" (v1 freezer.state)
    entered: bool = False
    left_frozen: str | None = None  # why the v1 kill's last thaw failed (EMFILE): FROZEN still
    stuck_left: bool = False  # `kill_and_remove` stopped waiting: only its `stuck` were in it
    passed_over: str = ""  # why none was made where `create` tried first (a v2 unit's, undelegated)

    @property
    def directory(self) -> str:
        return self.place.directory

    def describe(self) -> str:
        way = {"kill": "cgroup.kill", "freeze": "cgroup.freeze, then SIGKILL",
               "freezer": "freezer FROZEN, then SIGKILL"}[self.how]
        tried = f"; tried first: {self.passed_over}" if self.passed_over else ""
        return f"{self.place.kind.value} cgroup {self.place.directory} ({way}{tried})"

    def enter(self) -> None:
        """Move this process in; its children are born inside from now on."""
        _write(self.place.directory, "cgroup.procs", str(os.getpid()))
        self.entered = True

    def take_in(self, pid: int, parent: int | None = None, procs_fd: int = -1) -> bool | None:
        """Move a process that runs already in (one forked before this process entered: an
        early start's run); False when it is gone. `parent`: the process it was listed as a
        child of; not moved once it is no longer that one's child (None): its pid, reaped
        since, may have been handed to another process, which the task's kill would then
        kill; or its parent exited (moved once listed under the new one). `procs_fd`: this
        cgroup's `cgroup.procs`, open for a batch of moves (`open_procs`)."""
        if parent is not None:
            now = _parent_of(pid)
            if now != parent:
                return None if now is not None else False
        try:
            if procs_fd >= 0:
                os.write(procs_fd, str(pid).encode())
            else:
                _write(self.place.directory, "cgroup.procs", str(pid))
        except ProcessLookupError:
            return False
        return True

    def open_procs(self) -> int:
        """This cgroup's `cgroup.procs`, open for writing (the caller closes it)."""
        return os.open(os.path.join(self.place.directory, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def leave(self) -> None:
        """Move this process back home, so the task's cgroup can be killed and removed."""
        _write(self.home.directory, "cgroup.procs", str(os.getpid()))
        self.entered = False

    def holds(self, pid: int) -> bool | None:
        """Whether `pid` is in this cgroup or one below it (None: its /proc entry is gone
        or not ours to read)."""
        path = _cgroup_of(pid, self.place.kind)
        if path is None:
            return None
        return path == self.place.path or path.startswith(self.place.path.rstrip("/") + "/")

    def kill_and_remove(self, timeout_secs: float, stuck: frozenset[int] = frozenset()) -> str | None:
        """SIGKILL every member (this process must have left), then remove the cgroup;
        None when it is gone, else what went wrong, in words (`CutShort`: the deadline).
        `stuck`: processes SIGKILLed that would not die (D state), named and left to the
        watchdog already: once they are all that holds the cgroup, no longer waited for."""
        if self.entered:
            return f"the supervising process is still in {self.directory}; not killing it"
        try:
            return self._kill_and_remove(timeout_secs, stuck)
        except (ImportError, SyntaxError) as exc:  # `cgroupwalk.py`, loaded only as a walk is needed
            return (f"cannot walk {self.directory}: executor/procs/cgroupwalk.py does not load "
                    f"({type(exc).__name__}: {exc}; upgraded in place?)")

    def _kill_and_remove(self, timeout_secs: float, stuck: frozenset[int]) -> str | None:
        """`kill_and_remove`'s passes. The walk's module is loaded late, long after the start
        (a member left after `cgroup.kill`, a removal refused, a freezer): an upgrade in place
        may have left it unloadable, which `kill_and_remove` answers as a failure, the
        watchdog's to finish (it needs no module); a freezer's tree is thawed on the way out."""
        deadline = time.monotonic() + timeout_secs
        problem, cut = None, False
        while True:
            try:
                self._kill_once(deadline)
                problem, cut = None, False  # this kill went through: an earlier one's failure is not what is left
            except OSError as e:
                from executor.procs import cgroupwalk  # (loaded: a kill failed; was it its walk's deadline?)

                problem = f"cannot kill through {self.directory}: {describe_os_error(e)}"
                cut = isinstance(e, cgroupwalk.DeadlinePassed)
            try:
                os.rmdir(self.directory)
                return None
            except FileNotFoundError:
                return None
            except OSError as e:
                from executor.procs import cgroupwalk  # loaded only as a removal fails (or a walk kills)

                self.stuck_left = bool(stuck) and e.errno == errno.EBUSY and cgroupwalk.only(self.directory, stuck)
                if self.stuck_left or time.monotonic() >= deadline:
                    return cgroupwalk.left_at_deadline(self, problem, cut, e, timeout_secs)
                if e.errno == errno.EBUSY and cgroupwalk.remove_below(self.directory, deadline):
                    continue  # the cgroups a member made below it were what held it
                # SIGKILLed members take a moment to leave; after a kill that failed (a walk cut
                # short: out of descriptors), the pass again RETRY_SECS later, if none left meanwhile
                retry = min(deadline, time.monotonic() + RETRY_SECS)
                if problem is None:
                    cgroupwalk.wait_emptied(self.directory, deadline)
                else:
                    cgroupwalk.retry_after(self.directory, retry)

    def _kill_once(self, deadline: float) -> None:
        d = self.directory
        if self.how == "kill":  # it signals a process whose first thread exited while others run
            _write(d, "cgroup.kill", "1")  # (`pthread_exit` in `main`) through that thread alone:
            if "populated 1" in read(d, "cgroup.events"):  # it lived on; by its pid, the whole
                self._kill_members(deadline)  # process dies (usually none is left: no walk loaded)
            return
        if self.how == "freeze":
            _write(d, "cgroup.freeze", "1")
            try:
                _wait_until(lambda: "frozen 1" in read(d, "cgroup.events"), deadline)
                self._kill_members(deadline)
            finally:  # v2's frozen die by SIGKILL too; thawed all the same
                _write(d, "cgroup.freeze", "0")
            return
        _write(d, "freezer.state", "FROZEN")
        try:
            _wait_until(lambda: read(d, "freezer.state").strip() == "FROZEN", deadline)
            self._kill_members(deadline)
        except BaseException:  # cut (its deadline, EMFILE): what it froze thawed, or what it SIGKILLed lives on
            with contextlib.suppress(OSError):  # (no descriptor: the next pass, or the watchdog)
                self._thaw(lambda: _write(d, "freezer.state", "THAWED"))
            raise
        from executor.procs import cgroupwalk  # (loaded only as a kill needs a walk)

        self._thaw(lambda: cgroupwalk.thaw(d, deadline))

    def _thaw(self, thaw: Callable[[], None]) -> None:
        """`thaw` the v1 freezer tree, noting why when it is left FROZEN (`left_frozen`)."""
        try:
            thaw()
        except OSError as e:
            self.left_frozen = describe_os_error(e)
            raise
        self.left_frozen = None

    def _kill_members(self, deadline: float) -> None:
        """SIGKILL each member, of this cgroup or one below it (both freezers freeze the
        subtree), through a pidfd opened before its cgroup's list is read again and still
        names it (a member's parent may have reaped it meanwhile, and the pid gone to
        another). Without pidfds (a kernel before 5.3, a seccomp profile that denies
        pidfd_open) by kill() right after the same check: a frozen member cannot exit
        meanwhile. By the cgroup's list, not /proc/PID/cgroup: that cannot show a path
        longer than PATH_MAX (ENAMETOOLONG), which a run may nest below the task's. Stops
        at `deadline` (`cgroupwalk.WalkCut`), within the pass: the rest is the watchdog's."""
        from executor.procs import cgroupwalk  # (loaded only as a kill needs a walk)

        cgroupwalk.walk(self.directory, cgroupwalk.kill_listed, deadline=deadline)


class CutShort(str):
    """`kill_and_remove`'s words when its deadline, not a failure, left the cgroup there: the
    watchdog, let go, kills what is left and removes it (when one runs: `TaskCgroupLife.close`)."""


def task_name(marker: str) -> str:
    """The name of the cgroup of the task whose marker is `marker`: the whole marker, so that
    a re-run removes a lost attempt's by that (`cgrouplost.py`), never a cgroup whose name
    only begins the same (a marker planted in a checkpoint)."""
    return f"stoker-{marker}"


def create(name: str, setting: str,
           announce: Callable[[str, str], None] = lambda directory, how: None) -> TaskCgroup | NoCgroup:
    """Make the cgroup `name` for one task where `setting` says (`auto`: under the cgroups
    this process is in; `off`; or a directory: under that delegated cgroup). The strongest
    kind that can be made and has a way to kill wins. Not entered yet. Never raises.
    `announce(directory, how)` is told each directory before it is made (`how` "": the
    watchdog's, which removes it, if empty, should this process die as it makes it), then
    how to kill it once made, or ("", "") when it was not made (not ours: never killed)."""
    global _holder
    if setting == SETTING_OFF:
        return NoCgroup("cgroups are off (--cgroups off or STOKER_CGROUPS=off)")
    with _holder_lock:
        if _holder is not None:
            return NoCgroup(f"this process already keeps another task in {_holder} "
                            f"(a process is in one cgroup per hierarchy)")
        try:
            proc_cgroup = read("/proc/self", "cgroup")
            mountinfo = read("/proc/self", "mountinfo")
        except OSError as e:
            return NoCgroup(f"cannot read /proc/self/cgroup or mountinfo: {describe_os_error(e)}")
        result = _first_made(name, setting, own_places(proc_cgroup, mountinfo), mountinfo, announce)
        if isinstance(result, TaskCgroup):
            _holder = result.directory
        return result


def release(cgroup: TaskCgroup) -> None:
    """The process is out of `cgroup` (or never entered it): another task may have one."""
    global _holder
    with _holder_lock:
        if _holder == cgroup.directory:
            _holder = None


def _first_made(name: str, setting: str, homes: list[Place], mountinfo: str,
                announce: Callable[[str, str], None]) -> TaskCgroup | NoCgroup:
    if setting == SETTING_AUTO:
        parents = homes
    else:
        parent = place_of(os.path.normpath(setting), mountinfo)
        if parent is None:
            return NoCgroup(f"STOKER_CGROUPS={setting} is not in a cgroup2 or cgroup-v1 freezer mount")
        parents = [parent]
    reasons = []
    for parent in parents:
        home = next((h for h in homes if h.kind is parent.kind), None)
        if home is None:
            reasons.append(f"this process is in no {parent.kind.value} cgroup to come back to")
            continue
        if setting == SETTING_AUTO and (unit := _undelegated_service(parent)) is not None:
            reasons.append(f"{parent.directory} is systemd's, for {unit}, which is not delegated "
                           "(Delegate=yes in the unit gives Stoker a cgroup there)")
            continue
        made = _make(parent.child(name), home, announce)
        if isinstance(made, TaskCgroup):
            made.passed_over = "; ".join(reasons)
            return made
        reasons.append(made)
    if not reasons:
        return NoCgroup("no cgroup2 or cgroup-v1 freezer hierarchy shows this process's cgroup")
    return NoCgroup("; ".join(reasons))


def _undelegated_service(place: Place) -> str | None:
    """The name of the systemd service whose own v2 cgroup `place` is, when this process is
    the one systemd started for it and systemd has not delegated it (see the module
    docstring); None otherwise."""
    name = os.path.basename(place.directory)
    started = os.environ.get("SYSTEMD_EXEC_PID") == str(os.getpid())
    if place.kind is not CgroupKind.V2 or not name.endswith(".service") or not started:
        return None
    with contextlib.suppress(OSError):  # systemd gives a delegated cgroup to the unit's User=
        if os.stat(place.directory).st_uid == os.geteuid() != 0:  # (it cannot read trusted.*)
            return None
    for attribute in ("user.delegate", "trusted.delegate"):
        try:
            if os.getxattr(place.directory, attribute).strip() == b"1":
                return None
        except OSError:  # not set, not ours to read, or no xattrs on this file system
            continue
    return name


def _sweep_stale(parent: str) -> None:
    """Remove the empty `stoker-*` cgroups an earlier crash left under `parent` (a Stoker
    and its watchdog both SIGKILLed). Only empty ones can be removed at all, and only those
    older than STALE_SECS are tried: a starting supervisor enters its own within
    milliseconds of making it."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith("stoker-")]
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(parent, name)
        try:
            if now - os.stat(path).st_mtime > STALE_SECS:
                os.rmdir(path)
        except OSError:
            pass  # in use (not empty), or gone meanwhile


def _make(place: Place, home: Place, announce: Callable[[str, str], None]) -> TaskCgroup | str:
    if "\n" in place.directory:  # no cgroup's name has one; the watchdog's line would end there
        from config.words import quoted  # (a byte not UTF-8 as `\xff`, as every message writes it)

        return f"cannot make {quoted(place.directory)}: a newline in its path"
    _sweep_stale(os.path.dirname(place.directory))
    announce(place.directory, "")
    try:
        os.mkdir(place.directory, 0o755)
    except OSError as e:
        announce("", "")  # not made here: EEXIST is someone else's
        return f"cannot make {place.directory}: {describe_os_error(e)}"
    files = {"kill": "cgroup.kill", "freeze": "cgroup.freeze"} if place.kind is CgroupKind.V2 \
        else {"freezer": "freezer.state"}
    for how, file in files.items():
        if os.path.exists(os.path.join(place.directory, file)):
            announce(place.directory, how)
            return TaskCgroup(place=place, home=home, how=how)
    _rmdir_quietly(place.directory)
    announce("", "")
    return f"{place.directory} has none of {', '.join(files.values())} (kernel too old)"


def discard(cgroup: TaskCgroup) -> None:
    """Remove a cgroup that was made but never held a process (enter failed)."""
    _rmdir_quietly(cgroup.directory)
    release(cgroup)


def _parent_of(pid: int) -> int | None:
    """The parent of live process `pid` (None: gone, a zombie, or unreadable); os-level reads
    (a Python file object costs an fstat and an ioctl more)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fields = os.read(fd, 1024).rpartition(b")")[2].split()
        return int(fields[1]) if fields[0] != b"Z" else None
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


def _rmdir_quietly(directory: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def _write(directory: str, name: str, text: str) -> None:
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read(directory: str, name: str, dir_fd: int | None = None) -> str:
    """The file `name` of cgroup `directory` (or of the one open as `dir_fd`, `directory` "")."""
    fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(fd)


def read_pids(directory: str, dir_fd: int | None = None) -> list[int]:
    """The processes listed in the cgroup ([] when it is gone or not ours to read). Raises
    OSError when there was no descriptor or memory to read it with (`SCARCE`)."""
    try:
        return [int(x) for x in read(directory, "cgroup.procs", dir_fd).split()]
    except OSError as e:
        if e.errno in SCARCE:
            raise
        return []
    except ValueError:
        return []


def _cgroup_of(pid: int, kind: CgroupKind) -> str | None:
    try:
        return parse_proc_cgroup(read(f"/proc/{pid}", "cgroup")).get(kind)
    except OSError:
        return None


def _wait_until(done: Callable[[], bool], deadline: float) -> None:
    while not done() and time.monotonic() < deadline:
        time.sleep(POLL_SECS)
