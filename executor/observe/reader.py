"""What the observer reads for a request: the registry, a task's sandbox, a run's log.

The tasks are the host registry's (`executor/host/registry.py`: reading prunes what the
retention let go, as `stoker ps` does); each is inspected as `stoker ps` and `stoker
status` inspect it (`executor/task/inspection.py`). A task is found by its task id (a live
supervisor's entry first, else the newest), or by its id and its supervisor's PID-START
(`supervisor_key`), which names one entry when two running tasks (two frameworks') share
the id: asked for by id alone, such an id is `Ambiguous` (each is offered, neither shown).
Only a registered sandbox is ever read. Each reading is for a `viewer` (`visible`): EVERYONE,
or a uid who sees only the tasks whose sandbox is theirs (`--show-tasks-to owner`). A
registry there that cannot be read (another user's, not trusted) is `Unavailable` (503),
never an empty list, nor a task not found (404) for a task's page or its logs.

A log is `SANDBOX/.logs/PROCESS/RUN/STREAM`, opened one level at a time without following
a symlink or blocking (`executor/procs/saferead.py`): a symlink anywhere below the sandbox,
a FIFO or a device, a name that is not plain, or a missing file is `NotFound` with the
reason, and so is the log of a task whose sandbox a later supervisor registered (`stoker
run --sandbox` again: `.logs` is that run's, this task's were kept as `.logs.attempt-N`). At most `logrange.MAX_CHUNK_BYTES` are read for one request, and a run directory
is listed up to `MAX_LISTED` entries, whatever the task planted there; a sparse log's holes
are stepped over, never read (`executor/observe/logread.py`).

Follow mode (a request naming the file and run directory it holds, `LogQuery.file` and
`.dir`) goes on from there as `stoker tail -f` does: into the file a rotation wrote after
the one held (`executor/procs/rotation.py`, shared with tail), then into the next run.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from config.registry import RegistrySettings
from config.words import quoted
from executor.host.entry import RegistryEntry, later_ids, registered_after
from executor.host.entrycache import EntryCache
from executor.host.frozen import frozen_cgroup
from executor.host.identity import is_alive, is_stopped, one_reading
from executor.host.lock import LockTable
from executor.host.registry import Listed, Registry, RegistryUnreadable
from executor.host.registrylookup import AmbiguousTaskId, find, running_alike, split_hosts
from executor.observe import logread
from executor.observe.logrange import STREAM, LogQuery
from executor.observe.model import Choice, LogChunk, TaskDetail, TaskSummary
from executor.observe.taskusage import measure, task_figures
from executor.observe.usage import UsageSampler
from executor.procs import rotation, saferead
from executor.task.definition import Asked, read_definition
from executor.task.inspection import (
    Inspection,
    Viewed,
    inspect_sandbox,
    marker_of,
    with_leftovers,
    with_replacements,
)
from executor.task.inspectionjson import row, status_json
from executor.task.usagefigures import figures_json
from executor.task.viewcache import ViewCache

LOGS_DIR = ".logs"
MAX_LISTED = 10000


class NotFound(Exception):
    """Nothing to answer with (404); the message says why."""


class Ambiguous(Exception):
    """A task id that two running tasks share, asked for without naming its supervisor
    (300): the message says so, `choices` names each (their `url` left to the caller)."""

    def __init__(self, message: str, choices: list[Choice]) -> None:
        super().__init__(message)
        self.choices = choices


def supervisor_key(entry: RegistryEntry) -> str:
    """PID-START of the entry's supervisor: its registry entry's name, which names one
    entry (a pid alone may be a later process's)."""
    return f"{entry.supervisor_pid}-{entry.supervisor_start}"


EVERYONE = -1  # a viewer who sees every task: `--show-tasks-to all`, or root


def visible(entry: RegistryEntry, viewer: int | None) -> bool:
    """Whether `viewer` (a uid; EVERYONE; None: not known, who sees nothing) may see the
    task: its sandbox (the path as the registry names it, symlinks followed, as it is
    read) is the viewer's. A root executor gives the sandbox to the user the task runs as,
    in a directory that user cannot rename or replace."""
    if viewer == EVERYONE:
        return True
    try:
        return viewer is not None and os.stat(entry.sandbox).st_uid == viewer
    except (OSError, ValueError):
        return False


class Unavailable(Exception):
    """The registry is there and cannot be read (503): not trusted, or another user's
    (root's, for an observer run as an ordinary user); the message says why. Never an
    empty list of tasks."""


class Reader:
    def __init__(self, settings: RegistrySettings, usage: UsageSampler | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._usage = usage or UsageSampler()
        self._wall = wall
        self.views: ViewCache[Viewed] = ViewCache()  # each checkpoint replayed once it changed
        self.entries: EntryCache[Listed | None] = EntryCache()  # each registry entry parsed once it changed
        self.other_hosts: dict[str, int] = {}  # the last reading's other hosts' tasks, by host
        self.not_read: list[str] = []  # the last reading's files that are no entry (`Registry.read_noting`)

    @property
    def root(self) -> str:
        return self.settings.registry_root

    def _registry(self) -> Registry:
        return Registry(self.settings, kept=self.entries)

    def tasks(self, viewer: int | None = EVERYONE) -> list[TaskSummary]:
        return self.tasks_and_unreadable(viewer)[0]

    def tasks_and_unreadable(self, viewer: int | None = EVERYONE) -> tuple[list[TaskSummary], list[str]]:
        """The tasks `viewer` may see, and the registry's entries this version cannot read
        whose supervisors run (from the same reading of the registry; to EVERYONE only)."""
        entries, found, unreadable = self._inspected(viewer)
        return [TaskSummary(row(e, i), dict(i.view.ports) if i.view else {}, supervisor_key(e))
                for e, i in zip(entries, found)], unreadable

    def visible_entries(self, viewer: int | None) -> tuple[list[RegistryEntry], list[str]]:
        """The entries `viewer` may see, and the unreadable entries (to EVERYONE only), from
        one reading of the registry, whose listing the kept views are cut to (those of the
        tasks it no longer lists forgotten). Raises Unavailable."""
        listed, unreadable = self._read_all()
        self.views.keep_only({(str(Path(i.entry.sandbox)), i.entry.stoker_dir) for i in listed})  # every user's
        return [item.entry for item in listed if visible(item.entry, viewer)], \
            unreadable if viewer == EVERYONE else []

    def _read_all(self) -> tuple[list[Listed], list[str]]:
        """The registry's entries and its unreadable ones (`Registry.read_all`), for every
        answer: one that cannot be read is Unavailable (503) for a task, its logs and the
        list alike, never a task not found (404). This host's entries only; how many each other
        host has (a registry root hosts share) is kept as `other_hosts`, the last reading's, and the
        registry's other files, read as no entry, as `not_read`."""
        try:
            listed, unreadable, self.not_read = self._registry().read_noting()
        except RegistryUnreadable as exc:
            raise Unavailable(str(exc)) from None
        listed, self.other_hosts = split_hosts(listed)  # this host's only: another's pid means nothing here
        return listed, unreadable

    def _inspected(self, viewer: int | None) -> tuple[list[RegistryEntry], list[Inspection], list[str]]:
        """The entries `viewer` may see, each inspected, and the unreadable entries (to
        EVERYONE only), from one reading of the registry."""
        with one_reading():  # each supervisor looked at once: by the pruning, then the inspection
            entries, unreadable = self.visible_entries(viewer)
            locks = LockTable()  # /proc/locks read once for all of them, when one is asked about
            found = [inspect_sandbox(Path(e.sandbox), e, self.views, locks) for e in entries]
        found = with_leftovers(found, [marker_of(i, e) for i, e in zip(found, entries)])
        return entries, with_replacements(found, entries), unreadable  # `stoker ps --all`'s rows

    def _found(self, every: list[Listed], task_id: str, supervisor: str, viewer: int | None) -> Listed:
        """The entry of `task_id` among those of `every` that `viewer` may see; of the
        supervisor `supervisor` (PID-START) when given. Raises NotFound, or Ambiguous when two
        running tasks have the id and no supervisor is named."""
        listed = [item for item in every if visible(item.entry, viewer)]
        if supervisor:
            listed = [item for item in listed if supervisor_key(item.entry) == supervisor]
        try:
            found = find(listed, task_id) if task_id else None
        except AmbiguousTaskId as exc:  # which one is meant cannot be told: each is offered
            choices = [Choice(known, supervisor_key(item.entry), item.entry.supervisor_pid, item.entry.job_key,
                              item.entry.sandbox, item.entry.registered_wall)
                       for item, known in running_alike(listed, task_id)]
            raise Ambiguous(f"{exc}: name one by its supervisor (`?supervisor=PID-START`)", choices) from None
        if found is None:
            of = f" of the supervisor {supervisor}" if supervisor else ""
            raise NotFound(f"no task {quoted(task_id)}{of} in the registry {self.root}")
        return found

    def task(self, task_id: str, supervisor: str = "", viewer: int | None = EVERYONE) -> TaskDetail:
        every = self._read_all()[0]
        entry = self._found(every, task_id, supervisor, viewer).entry
        inspection = inspect_sandbox(Path(entry.sandbox), entry, self.views)
        (inspection,) = with_leftovers([inspection], [marker_of(inspection, entry)])
        visible_ones = [item.entry for item in every if visible(item.entry, viewer)]  # who took its sandbox: one it may see
        (inspection,) = with_replacements([inspection], [entry], visible_ones)
        definition, problem = read_definition(entry.sandbox, Asked(
            task_id, (*entry.earlier_task_ids, entry.task_id), inspection.truth.alive, inspection.attempt is not None,
            later_ids((item.entry for item in every), entry), entry.ended_wall is not None), pinned=entry.stoker_dir)
        detail = self.measured(entry, inspection)
        assert detail.figures is not None
        frozen = frozen_cgroup(entry.supervisor_pid) if inspection.truth.alive and not detail.supervisor_stopped else None
        status = dict(status_json(inspection), resources=figures_json(detail.figures, self._wall()),
                      supervisor_stopped=detail.supervisor_stopped,
                      stopped_processes=sorted(n for n, u in detail.usage.items() if u.stopped),
                      supervisor_frozen=frozen is not None, supervisor_frozen_cgroup=frozen)
        return attrs.evolve(detail, definition=definition, definition_problem=problem, status=status,
                            supervisor_frozen=frozen or "")

    def measured(self, entry: RegistryEntry, inspection: Inspection) -> TaskDetail:
        """The task with the use of its processes (/proc) against its reservation."""
        marker = marker_of(inspection, entry)
        usage, held = measure(inspection, marker, self._usage)
        figures = task_figures(inspection, marker, usage, held)
        stopped = inspection.truth.alive and is_stopped(entry.supervisor_pid)
        return TaskDetail(row=row(entry, inspection), inspection=inspection, usage=usage,
                          definition=None, definition_problem="", status={}, figures=figures,
                          supervisor_stopped=stopped, supervisor=supervisor_key(entry))

    def _open_sandbox(self, sandbox: str, task_id: str, viewer: int | None) -> int:
        """The sandbox's directory, open, when it is `viewer`'s (`visible`, checked on the
        directory opened). Raises OSError or NotFound."""
        root = saferead.open_root(sandbox)
        if viewer != EVERYONE and os.fstat(root).st_uid != viewer:
            os.close(root)
            raise NotFound(f"no task {quoted(task_id)} in the registry {self.root}")
        return root

    def _log_entry(self, task_id: str, supervisor: str, viewer: int | None) -> RegistryEntry:
        """The entry whose logs are asked for (`_found`). Raises NotFound, also when a later
        supervisor registered its sandbox (`_not_taken_over`), Ambiguous or Unavailable."""
        every = self._read_all()[0]
        entry = self._found(every, task_id, supervisor, viewer).entry
        _not_taken_over(entry, every, task_id)
        return entry

    def log(self, task_id: str, process: str, query: LogQuery, supervisor: str = "",
            viewer: int | None = EVERYONE) -> LogChunk:
        entry = self._log_entry(task_id, supervisor, viewer)
        sandbox, over = entry.sandbox, _over(entry)  # before the read (`_over`)
        where = f"{LOGS_DIR}/{process}"
        try:
            root = self._open_sandbox(sandbox, task_id, viewer)
            try:
                pdir = saferead.walk(root, [LOGS_DIR, process], file=False)
            finally:
                os.close(root)
            try:
                runs = _runs(pdir)
                number = query.run if query.run is not None else (runs[-1] if runs else None)
                if number is None:
                    raise NotFound(f"process {quoted(process)} has no log in {sandbox}/{LOGS_DIR}")
                where = f"{where}/{number}/{query.stream}"
                if query.file is not None and "." not in query.stream:
                    step = _follow(pdir, runs, query)
                else:
                    rdir = saferead.open_dir(str(number), pdir)
                    step = logread.Step(number, rdir, _open_closing(query.stream, rdir), query.offset)
            finally:
                os.close(pdir)
            try:
                parts = _parts(step.rdir)
                dir_ident = logread.ident_text(os.fstat(step.rdir))
            finally:
                os.close(step.rdir)
        except ValueError as exc:
            raise NotFound(f"no such process: {exc}") from None
        except OSError as exc:
            raise NotFound(f"no log {where} in task {quoted(task_id)}: {saferead.describe(exc)}") from None
        try:
            chunk = logread.chunk(step, attrs.evolve(query, offset=step.offset), task_id=task_id,
                           process=process, runs=runs, parts=parts, run_dir=dir_ident)
            return attrs.evolve(chunk, over=over, supervisor=supervisor_key(entry))
        finally:
            os.close(step.fd)


def _not_taken_over(entry: RegistryEntry, every: list[Listed], task_id: str) -> None:
    """Raises NotFound when a later supervisor registered in `entry`'s sandbox (`stoker run
    --sandbox` again): `.logs` is that run's then, and this task's logs were kept as
    `.logs.attempt-N`, which no record ties to its task id."""
    later = [item.entry for item in every if item.entry.sandbox == entry.sandbox
             and registered_after(item.entry, entry)]
    if later:
        raise NotFound(f"the logs of task {quoted(task_id)} are no longer in {entry.sandbox}/{LOGS_DIR}: "
                       f"a later run in the sandbox (task {quoted(later[-1].task_id)}) kept them as "
                       f"{LOGS_DIR}.attempt-N (`stoker tail --attempt N {entry.sandbox} PROCESS`)")


def _over(entry: RegistryEntry) -> bool:
    """The task's supervisor let go or is gone: none of its processes writes any more. Read
    before the log: what a supervisor that let go had written is all there then."""
    return entry.ended_wall is not None or not is_alive(entry.supervisor_pid, entry.supervisor_start,
                                                        entry.supervisor_boot)


def _open_closing(name: str, rdir: int) -> int:
    """`name` in `rdir`, open; on failure `rdir` is closed too. Raises OSError."""
    try:
        return saferead.open_file(name, rdir)
    except BaseException:
        os.close(rdir)
        raise


def _follow(pdir: int, runs: tuple[int, ...], query: LogQuery) -> logread.Step:
    """Follow mode: what comes after byte `query.offset` of the file `query.file` of run
    `query.run` (its directory `query.dir`): the rest of that file, else the file a rotation
    wrote after it (`executor/procs/rotation.py`), else the next run's log from its start
    (the first run of a new `.logs` when the run's directory is another one now: `stoker
    run` kept the attempt's logs as `.logs.attempt-N`). Raises OSError."""
    run, stream, offset = query.run or 0, query.stream, query.offset or 0
    try:
        rdir = saferead.open_dir(str(run), pdir)
    except FileNotFoundError:
        rdir = None
    if rdir is None or query.dir not in (None, logread.ident_text(os.fstat(rdir))):
        if rdir is not None:
            os.close(rdir)
        if not runs:
            raise FileNotFoundError("the run's directory was moved and no run has a log yet")
        return _first(pdir, runs[0], stream)
    try:
        return _next_file(pdir, runs, rdir, query, run, offset)
    except BaseException:
        os.close(rdir)
        raise


def _next_file(pdir: int, runs: tuple[int, ...], rdir: int, query: LogQuery, run: int,
               offset: int) -> logread.Step:
    stream = query.stream
    held, generation = logread.held_file(query.file or "0:0")
    try:
        fd: int | None = saferead.open_file(stream, rdir)
    except FileNotFoundError:
        fd = None  # between a rotation's rename and its new file
    if fd is not None:
        current = os.fstat(fd)
        if rotation.is_held(fd, held, generation):
            if current.st_size < offset:
                return logread.Step(run, rdir, fd, 0, continues=False)  # truncated: from its start
            try:
                following = _next_run(pdir, runs, run, stream) if current.st_size == offset else None
            except BaseException:
                os.close(fd)
                raise
            if following is None:
                return logread.Step(run, rdir, fd, offset)
            os.close(fd)
            os.close(rdir)
            return following
        os.close(fd)
    return _rotated_on(run, rdir, stream, (held, generation), offset, known=bool(query.file))


def _rotated_on(run: int, rdir: int, stream: str, file: tuple[rotation.Ident, int | None], offset: int,
                known: bool) -> logread.Step:
    """`held` is no longer the file `stream`: the rest of it, found among the backups, else
    the file written after it; when it is not there at all (`known`: the page named it),
    the oldest file there now, after the page's marker (rotated past the last backup since
    the page's look, as a burst does: every file there came after it; was: the newest, the
    backups still there between them never shown). Raises OSError."""
    held, generation = file
    mine = rotation.open_backup(rdir, stream, held, generation)
    if mine is not None:
        if os.fstat(mine).st_size > offset:
            return logread.Step(run, rdir, mine, offset, whole=True)  # the rest of the held file
        os.close(mine)
        successor = rotation.open_successor(rdir, stream, held, held_generation=generation)
        if successor is not None:  # a backup too when a burst rotated it since
            return _from_start(run, rdir, successor, stream, continues=True)
    elif known:
        return _from_start(run, rdir, rotation.open_first(rdir, stream), stream, continues=False)
    return logread.Step(run, rdir, saferead.open_file(stream, rdir), 0, continues=False)


def _from_start(run: int, rdir: int, fd: int, stream: str, continues: bool) -> logread.Step:
    whole = rotation.ident_at(stream, rdir) != rotation.ident(os.fstat(fd))  # a backup: complete
    return logread.Step(run, rdir, fd, 0, continues=continues, whole=whole)


def _next_run(pdir: int, runs: tuple[int, ...], run: int, stream: str) -> logread.Step | None:
    """The first run after `run`, its log from its start; None when there is none (or its
    directory is there and its log not yet). Raises OSError."""
    newer = [r for r in runs if r > run]
    if not newer:
        return None
    try:
        return _first(pdir, newer[0], stream)
    except FileNotFoundError:
        return None


def _first(pdir: int, run: int, stream: str) -> logread.Step:
    """Run `run`'s log from the start of its oldest file (`rotation.open_first`)."""
    rdir = saferead.open_dir(str(run), pdir)
    try:
        fd = rotation.open_first(rdir, stream)
    except BaseException:
        os.close(rdir)
        raise
    whole = rotation.ident_at(stream, rdir) != rotation.ident(os.fstat(fd))
    return logread.Step(run, rdir, fd, 0, whole=whole)


def _names(dir_fd: int) -> list[tuple[str, bool]]:
    """(name, is a directory) of up to MAX_LISTED entries; symlinks are neither."""
    found: list[tuple[str, bool]] = []
    with os.scandir(dir_fd) as scan:
        for entry in scan:
            if len(found) >= MAX_LISTED:
                break
            found.append((entry.name, entry.is_dir(follow_symlinks=False)))
    return found


def _runs(pdir: int) -> tuple[int, ...]:
    numbers = (saferead.run_number(n) for n, is_dir in _names(pdir) if is_dir)
    return tuple(sorted(n for n in numbers if n is not None and not saferead.readied(n, pdir)))


def _parts(rdir: int) -> tuple[str, ...]:
    def order(name: str) -> tuple[str, int]:
        base, _, number = name.partition(".")
        return base, int(number or 0)
    return tuple(sorted((n for n, is_dir in _names(rdir) if not is_dir and STREAM.match(n)),
                        key=order))
