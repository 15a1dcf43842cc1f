"""Which task an inspection or control command means, and the executor's hold on its sandbox.

`resolve(TARGET)`: a directory is a sandbox (one another host's live supervisor holds, a
directory on NFS both hosts see, is that host's task, as a task id of its is); a name that does not exist is a task id, looked
up in the host registry (a live supervisor's entry first, else the newest; one that two
live supervisors' tasks have is refused, naming their sandboxes), or, where no task has that
id, a job key (`CLUSTER/ROLE/ENV/NAME[/INSTANCE]`) or the beginning of one task's id (one
running task, else one job's newest end: `registrylookup.find_named`); anything else,
an id no task has, or one whose sandbox was deleted since (naming its supervisor's pid when
it still runs; `stoker status` takes a gone supervisor's: GONE), is a `UsageError` saying
which (exit 2). With no TARGET,
`$MESOS_SANDBOX`, else the current directory. `registry_arguments` adds the registry's
flags (`--root`, `--registry-retention`) to a command; `error` prints one `stoker: error:`
line, escaped.

`run_held_executor`: `stoker executor` takes its sandbox (lock, registry entry, control
socket) before it subscribes, so a sandbox another live supervisor holds is refused at once
(exit 2) and the task owner later joins the same session (`executor/host/session.py`).

Light at import (every `stoker` command imports it to build its parser): the registry and
the session are imported when used.
"""
from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

import executor
from config.executorsettings import ExecutorSettings
from config.registry import RegistrySettings
from config.words import quoted
from executor.cli import UsageError

if TYPE_CHECKING:  # argparse: the inspection commands' parser, built only for them
    import argparse

    from executor.host.entry import RegistryEntry
    from executor.host.registry import Listed

EXIT_USAGE = 2
TARGET_HELP = "sandbox directory, task id (or its beginning), or job key CLUSTER/ROLE/ENV/NAME[/INSTANCE]"


def error(message: str) -> None:
    from executor.cli import logsetup

    logsetup.say("error", message)


@attrs.frozen(slots=True)
class Target:
    sandbox: Path
    entry: RegistryEntry | None  # when found through the registry


def task_arguments(parser: argparse.ArgumentParser, *, process: bool = False) -> None:
    """The positional SANDBOX|TASK_ID (`resolve` reads it) and, with `process`, PROCESS: of
    `stoker kill`, `restart` and `tail`."""
    parser.add_argument("target", metavar="SANDBOX|TASK_ID", help=TARGET_HELP)
    if process:
        parser.add_argument("process", metavar="PROCESS", help="the process's name, as in the job")


def registry_arguments(parser: argparse.ArgumentParser) -> None:
    from config.argdecl import add_arguments  # argparse's path only

    add_arguments(parser, RegistrySettings)


def resolve(given: str | None, args: argparse.Namespace, *, deleted: bool = False,
            command: str = "") -> Target:
    """The sandbox TARGET names (see the module docstring). Raises UsageError. `deleted`: a task
    id whose sandbox was deleted, its supervisor gone too, is its target all the same (`stoker
    status` says it GONE, from the `.stoker` its entry pins, or none an older Stoker's entry
    pins: `inspect_sandbox`). A task id of
    another host's (a registry root hosts share) is refused naming that host, unless `command`
    is "status": its target then, which `stoker status` says runs there (`elsewhere`)."""
    if given == "":  # `stoker kill "$SB"`, SB unset: no sandbox, not `Path('')`'s `.` (nor the default)
        raise UsageError("sandbox '' does not exist")
    path = Path(given or os.environ.get("MESOS_SANDBOX") or ".")
    gone = not path.is_absolute() and executor.working_directory_gone()  # a task id may still name it
    kind = "missing" if gone else _kind(path)
    if kind == "dir":
        held = _held_elsewhere(path, args)
        if held is not None and command not in ("", "status"):
            raise UsageError(elsewhere(held, RegistrySettings.from_args(args, os.environ).registry_root,
                                       command, str(path)))
        return Target(path.absolute(), held)
    named = quoted(str(path))  # as errors quote what they were given: `sandbox 'a b'`
    missing = f"sandbox {named}: {executor.working_directory_unnamed()}" if gone else f"sandbox {named} does not exist"
    if kind == "other" or given is None:
        raise UsageError(f"sandbox {named} is not a directory" if kind == "other" else missing)
    from executor.host.registrylookup import host_of

    settings = RegistrySettings.from_args(args, os.environ)
    found = _look_up(given, settings, missing)
    sandbox = Path(found.entry.sandbox)
    if host_of(found.entry):  # its pid, sandbox and socket are that host's: nothing to judge here
        if command == "status":
            return Target(sandbox, found.entry)
        raise UsageError(elsewhere(found.entry, settings.registry_root, command or "status", given))
    kind = _kind(sandbox)
    if kind != "dir" and not (deleted and kind is None and not _still_runs(found.entry)):
        raise UsageError(f"task {quoted(given)}: its sandbox {quoted(str(sandbox))} no longer exists{_still_runs(found.entry)}")
    return Target(sandbox, found.entry)


def _look_up(given: str, settings: RegistrySettings, missing: str) -> Listed:
    """The registry's task of id `given`; a UsageError when none has it, or two live
    supervisors' tasks do (`missing`: what the error says of `given` as a sandbox)."""
    from executor.host.registry import Registry, RegistryUnreadable
    from executor.host.registrylookup import AmbiguousTaskId, find, find_named, parse_job_key

    try:
        listed = Registry(settings).read()
        found = find(listed, given)
    except RegistryUnreadable as exc:
        raise UsageError(f"{missing}, and no task id can be looked up: {exc}") from None
    except AmbiguousTaskId as exc:
        raise UsageError(f"{exc}: name the sandbox instead") from None
    try:
        found = found or find_named(listed, given)
    except AmbiguousTaskId as exc:
        raise UsageError(f"{exc}: name one by its task id or its sandbox") from None
    if found is None:
        if "/" in given and parse_job_key(given) is None:
            raise UsageError(missing)
        what = ("that job key" if "/" in given else "that id, or an id that begins so")
        others = ("; a task of another user's is in that user's registry: name its sandbox"
                  if os.geteuid() == 0 else "")  # root controls it by its path (README, Users)
        raise UsageError(f"{missing}, and no task in the registry "
                         f"{quoted(settings.registry_root)} has {what} (`stoker ps --all` lists them){others}")
    return found


def _held_elsewhere(sandbox: Path, args: argparse.Namespace) -> RegistryEntry | None:
    """The entry of another host's live supervisor that holds `sandbox` (a directory both hosts
    see: NFS), as its lock file names it (pid, start and boot: another boot's); None where it
    names a supervisor of this boot, or none, or one the registry lists as this host's or as
    ended. Such a task was judged here (LOST: its lock is not in this host's /proc/locks) or
    said to have no live supervisor. The registry is read only for a holder of another boot."""
    from executor.host.identity import boot_id
    from executor.host.lock import holder
    from executor.host.sandbox import open_stoker_dir

    try:
        fd = open_stoker_dir(sandbox)
    except OSError:
        return None
    try:
        who = holder(fd)
    finally:
        os.close(fd)
    if who is None or not who.boot_id or who.boot_id == boot_id():
        return None
    from executor.host.registry import Registry
    from executor.host.registrylookup import host_of

    for item in Registry(RegistrySettings.from_args(args, os.environ)).entries():
        e = item.entry
        if (e.supervisor_pid, e.supervisor_start, e.supervisor_boot) == (who.pid, who.start_ticks, who.boot_id) \
                and e.ended_wall is None and host_of(e):
            return e
    return None


def elsewhere(entry: RegistryEntry, root: str, command: str, given: str) -> str:
    """What `stoker COMMAND TASK_ID` says of a task another host's supervisor registered in a
    registry root this host shares (a home on NFS): it is that host's, and that host's
    `stoker` reaches it; its pid means nothing here (not LOST, nor killed here)."""
    from executor.host.registrylookup import host_of

    host = host_of(entry)
    how = "ran" if entry.ended_wall is not None else "runs"
    return (f"task {quoted(given)} {how} on host {quoted(host)}, not this one: its supervisor "
            f"(pid {entry.supervisor_pid} there) registered it in the registry {quoted(root)}, "
            f"which the two hosts share; `stoker {command}` on {quoted(host)} reaches it")


def _kind(path: Path) -> str | None:
    """"dir", "other", or None when nothing has that name: a missing one, or one too long
    for a file name (ENAMETOOLONG: a task id of a job named with 300 characters is looked
    up, where `Path.is_dir` raised). Any other error is a UsageError naming it."""
    import errno
    import stat

    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
            return None
        raise UsageError(f"sandbox {quoted(str(path))}: {exc.strerror or exc}") from None
    return "dir" if stat.S_ISDIR(info.st_mode) else "other"


def _still_runs(entry: RegistryEntry) -> str:
    """What to do about a supervisor whose sandbox was deleted under it ('' when it is gone)."""
    from executor.host.identity import is_alive
    from executor.task.unrecorded import unreachable

    pid = entry.supervisor_pid
    if not is_alive(pid, entry.supervisor_start, entry.supervisor_boot):
        return ""
    return f"; {unreachable(pid)}"


def registered(target: Target, args: argparse.Namespace) -> RegistryEntry | None:
    """The registry's entry for the target: the one it was found by, else the entry of its
    sandbox's path (a live supervisor's first), else None."""
    if target.entry is not None:
        return target.entry
    from executor.host.registry import Registry
    from executor.host.registrylookup import find_sandbox

    registry = Registry(RegistrySettings.from_args(args, os.environ))
    found = find_sandbox(registry.entries(), os.path.abspath(target.sandbox))
    return found.entry if found is not None else None


def run_held_executor(settings: ExecutorSettings, registry: RegistrySettings,
                      environ: MutableMapping[str, str],
                      executor_main: Callable[[ExecutorSettings, MutableMapping[str, str]], int]) -> int:
    """`executor_main` while this process holds the executor's sandbox; exit 2 at once when
    another live supervisor holds it."""
    from executor.host.entry import FrontEnd
    from executor.host.lock import SandboxBusy
    from executor.host.session import HostSession, sandbox_unusable

    try:
        session = HostSession.open(settings.sandbox, registry, FrontEnd.EXECUTOR)
    except SandboxBusy as exc:
        error(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # a full disk, a read-only one: the file named
        error(sandbox_unusable(settings.sandbox, exc))
        return EXIT_USAGE
    try:
        return executor_main(settings, environ)
    finally:
        session.close()
