"""The early start: a re-run of an unchanged config has its first processes running before
the rest of Stoker is loaded.

`stoker run` spends most of its first 200 ms importing itself (attrs, logging, argparse,
the supervisor's 60-odd modules). When the run before it kept the plan (`plancache.py`) and
left a launch record beside it (`plancache.keep_launch`: the plan's first runs, their names and
commands with the plan's stand-in task id, and what they were planned from), the entry point
calls `begin` first, with the standard library only, and, when everything the record
assumed still holds, starts those runs at once:

1. eligible: `stoker run CONFIG` alone, or with `--sandbox DIR` for a DIR that does not exist
   yet, either with `--ready-fd N` first when N is open for writing (anything else may change
   the plan or what the sandbox holds; a closed N would be one of the early start's own
   descriptors by the time the run checks it); no sandbox from the
   environment (MESOS_SANDBOX, MESOS_DIRECTORY, STOKER_SANDBOX); no relative STOKER_ROOT
   from a deleted working directory (refused); STOKER_EARLY_START is not `off`;
2. the record is this user's, for this config, Python build, host and user; the config
   package and pystachio are the same files, in the directories this process loads them
   from (a Stoker upgraded into another place leaves the old ones unchanged behind);
   every file the load read has the same text;
3. the plan's lease is free (no live run of the same config), its ports are free;
4. this process becomes a child subreaper; the sandbox is made (as `stoker run` names it)
   and locked, the task id and marker chosen, a watchdog started on the marker (no cgroup
   yet: the supervisor's own watchdog takes over and this one retires), each run's log
   directory and files made, and each run started as the supervisor starts it
   (`executor/procs/earlyfork.py`, the env of `executor/procs/runenv.py`). A stop signal
   (Ctrl-C) from the sandbox's making until the early start holds it waits, then gives it
   up: no empty sandbox is left behind.

When there is no kept plan for `stoker run CONFIG` (a first run, an edited config, one
that reads more than its text), `begin` hands the job to the first run's early start
(`executor/cli/launchfirst.py`, loaded only then: `first_run`), which plans it ahead and
starts the plan's first runs as soon as `stoker run` has loaded, by steps 3 and 4 here.

`take` (or the first run's `start_first`) hands the result (`executor/host/early.py`) to `LocalRun`, which
checks what it decides itself against it and gives the supervisor the runs to adopt: the
console lines, the checkpoint and the logs are those of any run. A check that fails anywhere gives the
early start up before it counts (`EarlyStart.abandon`): its runs are killed before the
supervisor starts any, and the run goes on as without it. Nothing here raises or prints;
a problem before the first fork only means there is no early start.
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's: `signal` adds enums (1.3 ms) for nothing here
import fcntl
import marshal
import os
import sys

import executor
from executor.host.early import STOPS, EarlyStart, defer_stop_signals, undefer_stop_signals
from executor.local import planfiles
from executor.procs import earlyfork, runenv

# Step 4's own modules (`oomcount`, `sandboxfs`, `watchdogsh`) are imported where it runs
# (`_start`), not here: a first run's planning child is forked with this module loaded and
# never starts a run, and their loading was 2.4 M instructions of its chain to the plan
# (docs/benchmarks.md, newcfg5); its parent loads them right after the fork
# (`launchfirst.fork_ahead`), a re-run's early start as it takes off.

TYPE_CHECKING = False  # not `typing`'s: the early start's modules load neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import ModuleType

__all__ = ["begin", "eligible", "first_run", "take", "to_plan_ahead"]

SANDBOX_VARIABLES = ("MESOS_SANDBOX", "MESOS_DIRECTORY", "STOKER_SANDBOX")
BATCH = 64  # runs whose log files are open at once (two descriptors each)
_LOCK_PATH = (".stoker", "supervisor.lock")  # `executor/host/sandbox.py`'s names

_started: EarlyStart | None = None
_first_run: ModuleType | None = None  # `executor.cli.launchfirst`, once `begin` noted a job for it


def take() -> EarlyStart | None:
    """What `begin` started, once (None when it started nothing)."""
    global _started
    started, _started = _started, None
    return started


def first_run() -> ModuleType | None:
    """The first run's early start (`executor/cli/launchfirst.py`) when `begin` noted a job
    for it to plan ahead; None otherwise (a re-run started early never loads it)."""
    return _first_run


def begin(args: list[str], environ: Mapping[str, str]) -> None:
    """Start the kept plan's first runs for `stoker ARGS` when the launch record allows it;
    with no kept plan, note the job for the first run's early start to plan ahead."""
    global _started, _first_run
    if environ.get("STOKER_EARLY_START", "") == "off":
        return
    try:
        _started = _begin(args, environ)
    except Exception:  # whatever it was, there is no early start: the run goes on as ever
        _started = None
    if _started is None:
        try:
            wanted = to_plan_ahead(args, environ)
            if wanted is not None:  # loaded only then: a re-run never loads it
                from executor.cli import launchfirst

                launchfirst.note(wanted, args, environ)
                _first_run = launchfirst
        except Exception:  # then it plans when the plan is needed, as ever
            _first_run = None


def eligible(args: list[str], environ: Mapping[str, str]) -> tuple[str, str | None] | None:
    """(CONFIG, DIR or None) for `run CONFIG [--sandbox DIR]` with no sandbox from the
    environment; None otherwise."""
    if any(environ.get(name) for name in SANDBOX_VARIABLES) or _root_unresolvable(environ):
        return None
    return _run_config(args)


def _root_unresolvable(environ: Mapping[str, str]) -> bool:
    """A relative STOKER_ROOT from a working directory with no name (deleted): the run
    refuses it (exit 2, `executor/cli/main.py` `_resolvable`), so nothing may start first."""
    root = environ.get("STOKER_ROOT", "")
    return bool(root) and not root.startswith("/") and executor.working_directory_gone()


def _run_config(args: list[str]) -> tuple[str, str | None] | None:
    """(CONFIG, DIR or None) for `run CONFIG [--sandbox DIR]`, with or without `--ready-fd N`
    before CONFIG (s6's readiness: it changes nothing of the plan); None otherwise."""
    if args[1:2] == ["--ready-fd"] and args[2:3] and args[2].isdigit():
        if not _writable(int(args[2])):
            return None  # the full path says so (exit 2), before this start's own files take that number
        args = args[:1] + args[3:]
    if args[:1] != ["run"] or len(args) not in (2, 4):
        return None
    if len(args) == 2:
        config, sandbox = args[1], None
    elif args[2] == "--sandbox":  # run CONFIG --sandbox DIR
        config, sandbox = args[1], args[3]
    elif args[1] == "--sandbox":  # run --sandbox DIR CONFIG
        config, sandbox = args[3], args[2]
    else:
        return None
    if not config or config.startswith("-") or (sandbox is not None and (not sandbox or sandbox.startswith("-"))):
        return None
    return config, sandbox


def _writable(fd: int) -> bool:
    """Whether `fd` is open for writing now, before the early start opens anything: once it
    has, a descriptor that was not open may be one of its own (the plan's lease, a pipe)."""
    try:
        return fd > 2 and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except (OSError, OverflowError):
        return False


def _begin(args: list[str], environ: Mapping[str, str]) -> EarlyStart | None:
    wanted = eligible(args, environ)
    directory = planfiles.cache_dir(environ)
    if wanted is None or directory is None:
        return None
    config = os.path.abspath(wanted[0])
    entry = _entry(directory, config)
    record = _record(entry, config, environ)
    if record is None:
        return None
    lease = planfiles.lock(entry + planfiles.LOCK_SUFFIX)  # the plan's lease, as `plancache.lease` takes it
    if lease is None:
        return None
    return _take_off(record, entry, wanted[1], lease, environ)


def _take_off(record: dict, entry: str, requested: str | None, lease: int, environ: Mapping[str, str], *,
              ahead: bool = False) -> EarlyStart | None:
    """With the plan's lease held: its ports free, this process a subreaper, the sandbox
    made, then the runs (`_start`); None, the lease given back, at the first that fails, or
    when this process has another thread (see below)."""
    # a stop waits from before the sandbox is made until `_start` holds it (in its `try`,
    # which gives it up): raised in between, it left the sandbox behind. Only this thread's:
    # another (the log spool's, a line logged before `start_first`) takes it, raised here
    if _threading_started():
        os.close(lease)
        return None
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, STOPS)
    try:
        try:
            if not planfiles.ports_free(record["ports"]):
                os.close(lease)
                return None
            earlyfork.set_subreaper()
            sandbox = _make_sandbox(requested, record["name"])
        except OSError:
            os.close(lease)
            return None
        return _start(record, entry, sandbox, lease, environ, mask, ahead)
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def _threading_started() -> bool:
    """Whether this process may have a second thread (a fork copies only the calling one,
    and a lock another thread holds would stay held in the child): `threading` is loaded
    and counts more than one."""
    threading = sys.modules.get("threading")
    return threading is not None and threading.active_count() > 1


def to_plan_ahead(args: list[str], environ: Mapping[str, str]) -> tuple[str, str | None] | None:
    """(CONFIG, DIR or None) for `run CONFIG [--sandbox DIR]` when no plan is kept for it
    (the first run's early start plans it ahead); None otherwise."""
    wanted = _run_config(args)
    if wanted is None:
        return None
    directory = planfiles.cache_dir(environ)
    config = os.path.abspath(wanted[0])
    if directory is not None and _kept(_entry(directory, config), config, environ):
        return None
    return wanted


def _kept(entry: str, config: str, environ: Mapping[str, str]) -> bool:
    """Whether the plan cache holds a plan for `run CONFIG` made from the files as they are
    (its key, but for the code's stamp, as `plancache.plan_key` makes it)."""
    data = planfiles.read_private(entry + planfiles.PLAN_SUFFIX)
    if data is None:
        return False
    try:
        key, sources, _ = marshal.loads(data)
        return key == _key(config, environ, key[2]) and _unchanged(sources)
    except (ValueError, TypeError, EOFError, IndexError):  # damaged: the supervisor will plan
        return False


def _record(entry: str, config: str, environ: Mapping[str, str]) -> dict | None:
    """The launch record, when everything it assumed still holds."""
    data = planfiles.read_private(entry + planfiles.START_SUFFIX)
    if data is None or not os.path.exists(entry + planfiles.PLAN_SUFFIX):
        return None
    record = marshal.loads(data)
    if not isinstance(record, dict) or record.get("format") != planfiles.LAUNCH_FORMAT:
        return None
    if not planfiles.loaded_from(record["roots"]):  # Stoker was upgraded into another place
        return None
    if record["key"] != _key(config, environ, planfiles.code_stamp(record["roots"])):
        return None
    return record if _unchanged(record["sources"]) else None


def _entry(directory: str, config: str) -> str:
    """The plan cache's entry (path without suffix) for `run CONFIG`, CONFIG absolute."""
    return planfiles.entry_path(directory, config, None, 0, "")


def _key(config: str, environ: Mapping[str, str], stamp: object) -> tuple:
    """The plan's key (`plancache.plan_key`) for `run CONFIG` here and now, with `stamp` as
    the code's stamp."""
    return (planfiles.PLAN_FORMAT, sys.version, stamp, config, None, (), 0, (), os.uname().nodename,
            planfiles.login_name(environ))


def _unchanged(sources: list[tuple[str, str]]) -> bool:
    """Whether every file a plan was made from has the same text now."""
    return all(planfiles.read_text(path) == text for path, text in sources)


def _make_sandbox(requested: str | None, name: str) -> str:
    """A new sandbox, named as `stoker run` names it; raises OSError (FileExistsError for a
    DIR that exists: that one is the full path's to use as is)."""
    if requested is None:
        requested = os.path.join(os.getcwd(), planfiles.sandbox_name(name))
    path = os.path.abspath(requested)
    if planfiles.foreign_link(path) or planfiles.open_above(path):  # the supervisor refuses it, saying why
        raise PermissionError(path)
    os.mkdir(path, planfiles.SANDBOX_MODE)  # 0755 at most, whatever the umask
    return os.path.realpath(path)


def _start(record: dict, entry: str, sandbox: str, lease: int, environ: Mapping[str, str],
           mask: set[int], ahead: bool) -> EarlyStart | None:
    marker = os.urandom(16).hex()
    early = EarlyStart(entry=entry, sandbox=sandbox, lease_fd=lease, marker=marker, planned_ahead=ahead,
                       task_id=f"{record['name']}-{record['instance']}-{os.urandom(4).hex()}")
    opened: list[int] = []

    def keep(fd: int) -> int:
        opened.append(fd)
        return fd

    try:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)  # a stop held since the sandbox was made lands here
        from executor.procs import sandboxfs, watchdogsh  # (see the imports above; failing, gives up)

        top = _take_sandbox(early, sandbox, keep)
        task_env = _task_env(record, environ, sandbox, marker)
        earlyfork.shut_inherited()
        home = keep(os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        root = keep(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        devnull = keep(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
        early.hold_watchdog(*watchdogsh.spawn_watchdog(marker, root_fd=root, home_fd=home))
        defer_stop_signals()  # from the first run on, a stop waits for the supervisor: SIGTERM first
        logs = keep(sandboxfs.new_dir(".logs", dir_fd=top))
        wave = record["wave"]
        for first in range(0, len(wave), BATCH):
            _spawn_batch(early, wave[first:first + BATCH], record["standin"], task_env,
                         logs=logs, top=top, home=home, devnull=devnull)
    except BaseException as exc:
        _close_all(opened)
        opened = []
        early.abandon()
        undefer_stop_signals()  # no runs: a Ctrl-C that came meanwhile is raised now
        if not isinstance(exc, Exception):
            raise  # Ctrl-C: the entry point's to handle, as during its imports
        return None
    finally:
        _close_all(opened)
    return early


def _take_sandbox(early: EarlyStart, sandbox: str, keep: Callable[[int], int]) -> int:
    """The new sandbox's directory, opened (`keep` holds its descriptors until the runs are
    started), with its `.stoker` made and its lock taken and held by `early`."""
    from executor.procs import sandboxfs  # loaded by `_start`, its caller

    top = keep(os.open(sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    os.mkdir(_LOCK_PATH[0], 0o700, dir_fd=top)
    stoker_dir = keep(sandboxfs.open_dir(_LOCK_PATH[0], dir_fd=top))
    lock = os.open(_LOCK_PATH[1], os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                   0o600, dir_fd=stoker_dir)
    early.hold_lock(lock)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new sandbox: nobody else has it
    return top


def _task_env(record: dict, environ: Mapping[str, str], sandbox: str, marker: str) -> dict[str, str]:
    """The runs' environment, as the supervisor gives it: this one less the secrets the
    record names, in the sandbox, with the task's marker."""
    base = dict(environ)
    for name in record["secrets"]:
        base.pop(name, None)
    base["MESOS_SANDBOX"] = sandbox
    return runenv.task_env(base, sandbox, marker)


def _spawn_batch(early: EarlyStart, batch: list[tuple[str, str]], standin: str, task_env: dict[str, str], *,
                 logs: int, top: int, home: int, devnull: int) -> None:
    """Run 0 of each process in `batch`: every log directory and file made first, then the
    spawns back to back (the file system work does not compete with the runs starting)."""
    from executor.procs import oomcount, sandboxfs  # (see the imports above)

    files: list[int] = []
    try:
        prepared = []
        for planned, cmdline in batch:
            process = planned.replace(standin, early.task_id)  # a name may hold the task id too
            outer = sandboxfs.new_dir(process, dir_fd=logs)
            try:
                run_dir = sandboxfs.new_dir("0", dir_fd=outer)
            finally:
                os.close(outer)
            try:
                files.append(sandboxfs.open_regular("stdout", sandboxfs.LOG_FLAGS, dir_fd=run_dir))
                files.append(sandboxfs.open_regular("stderr", sandboxfs.LOG_FLAGS, dir_fd=run_dir))
            finally:
                os.close(run_dir)
            prepared.append((process, cmdline.replace(standin, early.task_id), files[-2], files[-1]))
        os.fchdir(top)
        oom_kills = oomcount.early_count()  # an OOM kill from now on is these runs' (`oomkill.py`)
        try:
            for process, command, out, err in prepared:
                pid = earlyfork.spawn_run(command, runenv.run_env(task_env, early.marker, process, 0),
                                          stdin=devnull, stdout=out, stderr=err)
                early.runs.append(earlyfork.EarlyRun(process, 0, pid, command, task_env, oom_kills))
        finally:
            os.fchdir(home)
    finally:
        _close_all(files)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            continue
