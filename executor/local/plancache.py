"""`stoker run`'s plan cache: a job planned once (`config.plan.JobPlan`: loaded, checked,
its ports chosen, bound) is kept, and the next `stoker run` of the same, unchanged config
uses it without loading pystachio or the config modules (a third of its imports).

A plan is served only when all of these are as they were when it was kept:
- the key: the config's absolute path, the job key, `--bind`, `--instance`, `--port`, the
  host name, the user, the Python build, and the name, size and mtime of every module of
  `config/`, of pystachio and of Stoker's planning (`planfiles.PLAN_CODE`: `executor/local/`,
  the task's planner), so an upgrade or an edit of any of them plans afresh;
- the text of every file the load read: the config and each file it `include()`d;
- the ports the plan chose free: each is still free on 127.0.0.1 (`probe`). A re-run of an
  unchanged config therefore gets the same port numbers when nothing else took them.

A run uses or keeps a plan only while it holds its `Lease` (an flock on the entry's `.lock`
file, held for the run's life and released by the kernel however it ends). A second run of
the same config while the first is still up cannot take it: it plans afresh, with ports of
its own, and keeps nothing, so two live runs never share the kept ports (a service that has
not bound its port yet would otherwise look free to the probe).

Only closed configs are kept (`config.purity`: no imports, no `open`, `print` or other
builtins that reach outside the file): a config that reads the environment or the clock is
loaded afresh every time. Errors are never kept.

The files live in `$STOKER_PLAN_CACHE` (an absolute directory; `off` turns the cache off),
else `$XDG_CACHE_HOME/stoker/plans`, else `~/.cache/stoker/plans`: one per config path, job
key and instance, at most `KEEP` (the oldest go). They hold plain values in `marshal` form:
reading one runs no code, builds only the plan's own classes, and any damaged, foreign or
unreadable file is simply a miss. The plan is kept as marshal data of its own inside the
entry (`planform.encode`d, then `marshal`ed): a first run keeps the bytes the planning child
sent, as they came (decoding them again and encoding the plan for the file made some 160 KB
of short-lived objects once the runs had started, left as holes in the allocator's pools),
and the early start's check of an entry (`executor/cli/launch.py`) reads the plan as one
`bytes` object, not as its objects. A directory or file not owned by this user, or writable by
others, is ignored. Nothing here raises: the cache can only make a run faster.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import marshal
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from config.plan import JobPlan
from config.settings import RunSettings
from config.spec import LogDestination, LogMode
from executor.host.replacefile import make_dirs, trusted_path, untrusted_level
from executor.local import planfiles
from executor.local.planfiles import cache_dir
from executor.local.planform import decode, encode
from executor.logs import log_event

__all__ = ["KEEP", "Lease", "cache_dir", "decode", "encode", "entry_stem", "first_wave", "keep_launch", "lease",
           "lookup", "plan_key", "store", "unkept_reason"]

logger = logging.getLogger(__name__)

FORMAT = planfiles.PLAN_FORMAT
KEEP = 64  # plan files kept in one directory; the least recently written go first


def unkept_reason(environ: Mapping[str, str], euid: int | None = None) -> str | None:
    """Why `cache_dir` gives no place for plans, for the one line `stoker run` says (a run
    that keeps none plans each time, slower, with no other sign); None when it gives one, or
    STOKER_PLAN_CACHE=off turned the cache off."""
    euid = os.geteuid() if euid is None else euid
    value = environ.get("STOKER_PLAN_CACHE", "")
    if cache_dir(environ, euid) is not None or value == "off":
        return None
    if value and not os.path.isabs(value):
        return f"STOKER_PLAN_CACHE ({value}) is not an absolute path (nor off)"
    base = value or environ.get("XDG_CACHE_HOME", "")
    if not value and not os.path.isabs(base):
        home = planfiles.own_home(environ, euid)
        if home is None:
            return (f"HOME ({environ.get('HOME') or 'not set'}) is not a directory this user owns, "
                    f"nor is the password database's home of uid {euid}")
        base = os.path.join(home, ".cache")
    directory = value or os.path.join(base, "stoker", "plans")
    return f"another user could redirect {directory}: {untrusted_level(directory, euid)}"


def plan_key(settings: RunSettings, hostname: str, user: str) -> tuple[Any, ...]:
    """Everything besides the files' text that a plan depends on."""
    return (FORMAT, sys.version, planfiles.code_stamp(planfiles.code_roots()),
            os.path.abspath(settings.config), settings.jobkey,
            tuple(settings.bindings), settings.instance, tuple(sorted(settings.ports.items())),
            hostname, user)


class Lease:
    """This run's hold on the plan kept for its key (`lease`): `held`, or not (the same
    config is running now, or there is no usable cache directory: `problem` says why)."""

    def __init__(self, fd: int | None, problem: str = "") -> None:
        self._fd = fd
        self.problem = problem  # why the cache directory cannot hold plans; "" when it can

    @property
    def held(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def take(self) -> int | None:
        """The lease's descriptor, for the early start to hold (None: not held); no longer
        this object's."""
        fd, self._fd = self._fd, None
        return fd


def lease(directory: str, key: tuple[Any, ...]) -> Lease:
    """Take the lease on the entry for `key` (making the directory, private, if needed);
    never waits: a lease another live run holds is not held here."""
    if problem := place_problem(directory):
        return Lease(None, problem)
    return _lease_on(directory, _path(directory, key, planfiles.LOCK_SUFFIX))


def lease_at(directory: str, path: str) -> Lease:
    """`lease`, of the entry whose lock file is `path` in `directory` (the early start of a
    first run names its entry by the config's path: `executor/cli/launch.py`)."""
    if problem := place_problem(directory):
        return Lease(None, problem)
    return _lease_on(directory, path)


def _lease_on(directory: str, path: str) -> Lease:
    """The lease on the lock file `path` in `directory` (which `place_problem` passed). Not
    held because another live run holds it: nothing to say; because no file can be opened
    for writing there (a read-only filesystem, a directory this user may no longer write),
    or no lock taken there (ENOLCK): `problem` says so. Was: such a directory, made by an earlier run, kept no plan, each run
    planned afresh, and nothing said why."""
    fd = planfiles.lock(path)
    if fd is not None:
        return Lease(fd)
    try:  # only when not held: told apart from a live run's hold by opening it once more
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return Lease(None, _cannot_write(directory, exc))
    try:  # and locking it once more: a file system that takes no lock (ENOLCK) keeps no plan
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno == errno.ENOLCK:  # an NFS home whose server's lock manager is not reached
            return Lease(None, f"cannot lock in {directory}: {_os_reason(exc)}")
    finally:
        os.close(fd)
    return Lease(None)


def _cannot_write(directory: str, exc: OSError) -> str:
    """The reason no plan is kept in `directory`, which is there: `exc` said no to a write."""
    return f"cannot write in {directory}: {_os_reason(exc)}"


def _os_reason(exc: OSError) -> str:
    """`exc` as "Permission denied (EACCES)"."""
    return f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"


def place_problem(directory: str) -> str:
    """Why `directory` cannot hold plans, "" when it can: it is there (made now if need be)
    and no other user can redirect it. Was: a directory that could not be made (a home
    that is not writable, a STOKER_PLAN_CACHE under another user's) kept no plan, each run
    planned afresh, and nothing said why."""
    try:
        make_dirs(directory, 0o700)  # each level: ~/.cache too, under a umask of 0
        # again, now that it is made: a level another user made meanwhile is not trusted
        if planfiles.private(os.stat(directory)) and trusted_path(directory):
            return ""
    except OSError as exc:
        return f"cannot make {directory}: {_os_reason(exc)}"
    return f"{directory} is not this user's alone: another user could redirect it"


def lookup(directory: str, key: tuple[Any, ...], probe: Callable[[list[int]], bool],
           held: Lease) -> JobPlan | None:
    """The plan kept for `key`, if `held` is held, its files are unchanged and `probe` finds
    its chosen ports still free; else None."""
    if not held.held:
        return None
    data = planfiles.read_private(_path(directory, key))
    if data is None:
        return None
    try:
        stored_key, sources, encoded = marshal.loads(data)
        del data  # the plan is in `encoded` too: one copy of it at a time
        if stored_key != key:
            return None
        for path, text in sources:
            if planfiles.read_text(path) != text:
                log_event(logger, logging.DEBUG, "plan_cache_missed", reason=f"{path} changed")
                return None
        plan = decode(marshal.loads(encoded))
    except Exception as exc:  # damaged or from another format: plan afresh, and overwrite it
        log_event(logger, logging.DEBUG, "plan_cache_missed", reason=f"unusable entry ({exc})")
        return None
    if not isinstance(plan, JobPlan):
        return None
    if not probe([plan.spec.ports[name] for name in plan.allocated]):
        log_event(logger, logging.DEBUG, "plan_cache_missed", reason="a port it chose is taken now")
        return None
    log_event(logger, logging.DEBUG, "plan_cache_used", config=key[3])
    return plan


def store(directory: str, key: tuple[Any, ...], sources: Mapping[str, str], plan: JobPlan,
          held: Lease, problem: str | None, encoded: bytes | None = None) -> str:
    """Keep `plan`, made from `sources` (the text of each file its load read, by path), if
    `held` is held and nothing made it open (`problem`, from `config.plan.open_problem`).
    `encoded`: `plan` in marshal form already (`marshal.dumps(encode(plan))`: what the child
    forked ahead sent), written as it is. Returns why the directory would not take the plan
    (`_cannot_write`: a read-only filesystem, a directory this user may no longer write, a
    full disk), for the run's one plan_not_kept WARNING; "" otherwise."""
    if not held.held:
        return ""
    if problem is not None:
        log_event(logger, logging.DEBUG, "plan_cache_not_kept",
                  reason=f"the config reads more than its text: {problem}")
        return ""
    try:
        texts = tuple(sorted((os.path.abspath(path), text) for path, text in sources.items()))
        data = marshal.dumps((key, texts, marshal.dumps(encode(plan)) if encoded is None else encoded))
    except (OSError, ValueError) as exc:  # a value marshal cannot hold, no cwd: not the place's doing
        log_event(logger, logging.DEBUG, "plan_cache_not_kept", reason=f"the plan cannot be kept: {exc}")
        return ""
    try:
        planfiles.write_private(_path(directory, key), data)  # in the directory `lease` made or checked
    except OSError as exc:
        return _cannot_write(directory, exc)
    try:
        _prune(directory)
    except OSError as exc:  # another run's pruning meanwhile: the next one prunes
        log_event(logger, logging.DEBUG, "plan_cache_not_pruned", reason=f"{directory}: {exc}")
    return ""


def _prune(directory: str) -> None:
    """At most KEEP entries: the least recently written go, each lock file with its entry
    once no run holds it."""
    entries = []
    for entry in os.scandir(directory):
        if entry.name.startswith("plan-") and entry.name.endswith(planfiles.PLAN_SUFFIX):
            try:
                entries.append((entry.stat().st_mtime_ns, entry.path))
            except OSError:
                continue
    for _, path in sorted(entries)[:-KEEP]:
        try:
            os.unlink(path)
        except OSError:
            continue
        stem = path[:-len(planfiles.PLAN_SUFFIX)]
        with contextlib.suppress(OSError):
            os.unlink(stem + planfiles.START_SUFFIX)
        _unlink_unheld(stem + planfiles.LOCK_SUFFIX)


def _unlink_unheld(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        return  # held by a live run: it stays until a later prune
    finally:
        os.close(fd)


def keep_launch(directory: str, key: tuple[Any, ...], sources: Mapping[str, str], plan: JobPlan,
                wave: list[str] | None, secrets: tuple[str, ...], held: Lease) -> None:
    """Keep (or, with no `wave`, drop) the launch record beside the plan kept for `key`:
    what the early start (`executor/cli/launch.py`) needs to start the plan's first runs,
    `wave` (process names, run 0 of each), before Stoker is loaded. Written only when it
    changed, only with the lease held."""
    if not held.held:
        return
    path = _path(directory, key, planfiles.START_SUFFIX)
    if wave is None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    record = {
        "format": planfiles.LAUNCH_FORMAT, "key": key, "roots": planfiles.code_roots(),
        "sources": tuple(sorted((os.path.abspath(p), text) for p, text in sources.items())),
        **launch_fields(plan, wave, secrets),
    }
    try:
        data = marshal.dumps(record)
        if planfiles.read_private(path) != data:
            planfiles.write_private(path, data)
    except (OSError, ValueError) as exc:
        log_event(logger, logging.DEBUG, "plan_cache_not_kept",
                  reason=f"could not keep the launch record in {directory}: {exc}")


def first_wave(plan: JobPlan) -> list[str] | None:
    """The processes the planner starts first in `plan` (run 0 of each), which an early
    start may start; None when there are none, or one's logger is not a plain file (the
    early start makes only plain log files)."""
    from executor.task.planner import Planner  # loaded for the task anyway (not for the cache's look-up)

    names = [name for name, _ in Planner(plan.spec.task).startable(0.0)]  # (all: a decision starts a batch)
    loggers = [plan.spec.task.process(name).logger for name in names]
    plain = all(lg.destination is LogDestination.FILE and lg.mode is LogMode.STANDARD for lg in loggers)
    return names if names and plain else None


def launch_fields(plan: JobPlan, wave: list[str], secrets: tuple[str, ...]) -> dict[str, Any]:
    """What the early start starts `plan`'s first runs from (`executor/cli/launch.py`): the
    job's name and instance, the plan's stand-in task id, the commands of `wave` (run 0 of
    each), the ports it chose and the variables no run inherits. The launch record holds
    them; a first run's early start takes them from the plan made ahead."""
    spec = plan.spec
    return {"name": plan.name, "instance": spec.instance, "standin": plan.stand_in,
            "wave": [(name, spec.task.process(name).cmdline) for name in wave],
            "ports": [spec.ports[name] for name in plan.allocated], "secrets": list(secrets)}


def entry_stem(directory: str, key: tuple[Any, ...]) -> str:
    """The path of the entry for `key`, without a suffix (the early start names its entry so)."""
    return _path(directory, key, "")


def _path(directory: str, key: tuple[Any, ...], suffix: str = planfiles.PLAN_SUFFIX) -> str:
    """One entry per config path, job key and instance: a changed config replaces its own."""
    return planfiles.entry_path(directory, key[3], key[4], key[6], suffix)
