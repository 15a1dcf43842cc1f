"""The host registry's lookups: which entry a task id or a sandbox names, and whose host each is.

`find` (a task id: a live supervisor's first, else the newest; one two live supervisors
have is ambiguous), `find_named` (a job key, or the beginning of a task id, that no task
has as its id: one running task, else one job's newest end), `find_sandbox`, and, where several hosts share the registry root (an
ordinary user's default root is under the home: a home on NFS), `host_of` an entry and
`split_hosts`: this host's entries are the only ones judged, listed or chosen here (another
host's supervisor's pid means nothing on this one). The reading itself is here too
(`listing`: every entry file, at most `MAX_ENTRIES`, read or, for a reader that keeps what it
read, its entry kept; expired ones pruned), `Registry.read`'s and `entries`'. Loaded by the
commands that read the registry (`stoker ps`, `status`, `kill`, `restart`, `tail`, the
observer), never by a supervisor, which writes its entry and prunes
(`executor/host/registry.py`).
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from config.words import printable
from executor.host import identity
from executor.host.entry import ENTRY_NAME, RegistryEntry, listing_order, registered_after
from executor.host.identity import of_this_host, supervisor_alive
from executor.host.registry import Listed, Registry, RegistryUnreadable, by_design, prune, read_entry
from executor.host.replacefile import local_path, portable_path
from executor.procs import saferead

if TYPE_CHECKING:
    from executor.host.entrycache import Reading

MAX_ENTRIES = 10000


def host_of(entry: RegistryEntry, here: tuple[str, str] | None = None) -> str:
    """The host that wrote `entry`, by its name (its machine id where it recorded none), where
    that is another host than this one (a registry root several hosts share: a home on NFS);
    "" for this host's (an older Stoker's included, and a live one written under this host's
    earlier name: `supervisor_alive`). `here`: this host's identity, read once for many."""
    if of_this_host(entry, here or identity.host_identity()) or supervisor_alive(entry):
        return ""
    return entry.host_name or entry.host_id


def split_hosts(listed: list[Listed]) -> tuple[list[Listed], dict[str, int]]:
    """This host's entries, and how many each other host has in the registry (by name)."""
    here: list[Listed] = []
    others: dict[str, int] = {}
    this_host = identity.host_identity()
    for item in listed:
        host = host_of(item.entry, this_host)
        if host:
            others[host] = others.get(host, 0) + 1
        else:
            here.append(item)
    return here, others


def other_hosts_line(others: dict[str, int], root: str) -> str:
    """One sentence on the tasks of other hosts a shared registry holds, which are not listed."""
    count = sum(others.values())
    which = ", ".join(f"{host} ({n})" for host, n in sorted(others.items()))
    return (f"{count} task{'s' if count != 1 else ''} of other hosts in the registry {root} "
            f"{'is' if count == 1 else 'are'} not listed (a root they share: a home on a network "
            f"file system): {which}; each host lists its own")


def not_read_line(names: list[str], root: str) -> str:
    """One sentence on the registry's files read as no task (`Registry.read_noting`'s third
    list: at least one), naming how many and the first; `stoker ps` and the observer's list."""
    many = len(names) > 1
    return (f"{len(names)} file{'s' if many else ''} in the registry {root} "
            f"{'are not tasks' if many else 'is not a task'} it reads (put there by hand, not JSON, a field "
            f"missing; a damaged entry goes once older than the retention, anything else stays): the first "
            f"is {root}/{printable(names[0])}")


class AmbiguousTaskId(LookupError):
    """A task id that more than one live supervisor's task has; the message names their
    sandboxes (the caller says what to do instead)."""


def find(listed: list[Listed], task_id: str) -> Listed | None:
    """The entry of task `task_id` (its supervisor's latest task, or an earlier attempt of
    it): a live supervisor's first, else the newest. Raises AmbiguousTaskId when two live
    supervisors have it: a task id is unique only within its framework, so another
    framework's task on the host (another tenant's) may take the id of one that runs, and
    would be the one shown, killed or restarted, as the newer. This host's entries come
    first: another host's (a shared root) only where none of this host's has the id (the
    caller says it is that host's: `host_of`)."""
    task_id = portable_path(task_id)  # typed in a shell: its bytes, which a task id's UTF-8 are
    matches = [item for item in listed if item.entry.known_as(task_id)]
    live = running_alike(listed, task_id)
    if len(live) > 1:
        how = "" if all(known == task_id for _, known in live) else \
            " (the same as Unicode text, written differently)"
        raise AmbiguousTaskId(f"task id {task_id!r} is the id of {len(live)} running tasks{how}, in "
                              f"{', '.join(sorted(local_path(item.entry.sandbox) for item, _ in live))}")
    return _chosen([item for item in matches if not host_of(item.entry)] or matches)


def running_alike(listed: list[Listed], task_id: str) -> list[tuple[Listed, str]]:
    """The entries of live supervisors known as an id that is `task_id` as Unicode text
    (canonically equivalent: `café` composed or decomposed, which `stoker ps` shows alike),
    each with that id as the entry writes it."""
    found = []
    for item in listed:
        known = _known_alike(item.entry, portable_path(task_id))
        if known and supervisor_alive(item.entry):
            found.append((item, known))
    return found


def _known_alike(entry: RegistryEntry, task_id: str) -> str:
    """The id `entry` is known as that is `task_id` as Unicode text ("" when none)."""
    import unicodedata  # only to look a task id up

    text = unicodedata.normalize("NFC", task_id)
    return next((known for known in (entry.task_id, *entry.earlier_task_ids)
                 if known and unicodedata.normalize("NFC", known) == text), "")


def find_named(listed: list[Listed], given: str) -> Listed | None:
    """The task `given` names where no task has it as its id (`find` first): a job key,
    `CLUSTER/ROLE/ENVIRONMENT/NAME` (as `stoker ps` shows it) or with `/INSTANCE` after it
    (Aurora's name of one instance), else the beginning of a task id (`hello_world-0`, where
    the whole is `hello_world-0-7a64b6c1`). This host's tasks only. Of the running ones, one
    must match: two are AmbiguousTaskId, naming each one's id and sandbox, since `stoker kill`
    must never pick one; with none running, the newest that ended, so long as every match
    is the same instance of the same job (one job re-run many times) and ambiguous else."""
    import unicodedata  # only to look a name up

    text = unicodedata.normalize("NFC", portable_path(given))
    key = parse_job_key(text)
    if key is None and not text:
        return None

    def named(entry: RegistryEntry) -> bool:
        if key is not None:
            return entry.job_key == key[0] and key[1] in ("", entry.label.rpartition(".")[2])
        return any(known and unicodedata.normalize("NFC", known).startswith(text)
                   for known in (entry.task_id, *entry.earlier_task_ids))

    matches = [item for item in listed if named(item.entry) and not host_of(item.entry)]
    live = [item for item in matches if supervisor_alive(item.entry)]
    apart = live if live else matches
    if len(live) > 1 or len({(item.entry.job_key, item.entry.label) for item in apart}) > 1:
        what = ("the beginning of the ids" if key is None else "the job key" if not key[1] else "the instance")
        tasks = ", ".join(f"{item.entry.task_id} (in {local_path(item.entry.sandbox)})" for item in apart)
        raise AmbiguousTaskId(f"{given!r} is {what} of {len(apart)} {'running' if live else 'ended'} "
                              f"tasks: {tasks}")
    return _chosen(matches)


def parse_job_key(text: str) -> tuple[str, str] | None:
    """(`CLUSTER/ROLE/ENVIRONMENT/NAME`, `INSTANCE` or "") where `text` is shaped so; else None."""
    parts = text.split("/")
    if len(parts) not in (4, 5) or not all(parts) or (len(parts) == 5 and not parts[4].isdigit()):
        return None
    return "/".join(parts[:4]), str(int(parts[4])) if len(parts) == 5 else ""


def find_sandbox(listed: list[Listed], sandbox: str) -> Listed | None:
    """This host's entry of the sandbox at the absolute path `sandbox`: a live supervisor's
    first, else the newest."""
    return _chosen([item for item in listed if item.entry.sandbox == sandbox and not host_of(item.entry)])


def _chosen(matches: list[Listed]) -> Listed | None:
    """A live supervisor's entry, else the newest: the last (`matches` are oldest first, by
    the wall clock) unless one before it came after it (`registered_after`: its supervisor
    started later this boot; was: an earlier run's entry, after a step back of the wall
    clock between the two)."""
    live = [item for item in matches if supervisor_alive(item.entry)]
    newest = None
    for item in live or matches:
        if newest is None or not registered_after(newest.entry, item.entry):
            newest = item
    return newest


def listing(registry: Registry) -> tuple[list[Listed], int, list[str], list[str]]:
    """`registry`'s entries read, oldest first; how many this user may not open; the names of the
    files named like an entry that did not read as one (those it may not open too); the names of
    the other files it holds, but those it holds by design (`registry.by_design`)."""
    try:
        fd = registry.open_root()
    except FileNotFoundError:
        return [], 0, [], []
    except OSError as exc:
        raise RegistryUnreadable(f"cannot read the registry {registry.root}: "
                                 f"{saferead.describe(exc)}") from None
    denied: list[str] = []
    unread: list[str] = []
    others: list[str] = []
    try:
        found, read = read_files(registry, fd, denied, unread, others)
        gone = prune(fd, found, read, time.time(), registry.retention_secs, registry.alive)
    except OSError as exc:
        raise RegistryUnreadable(f"cannot read the registry {registry.root}: "
                                 f"{saferead.describe(exc)}") from None
    finally:
        os.close(fd)
    kept = [item for item in found if item.name not in gone]
    boot = identity.boot_id()
    kept.sort(key=lambda item: (*listing_order(item.entry, boot), item.name))
    return kept, len(denied), unread, others


def read_files(registry: Registry, dir_fd: int, denied: list[str] | None = None,
               unread: list[str] | None = None, others: list[str] | None = None) -> tuple[list[Listed], set[str]]:
    """The entries read in `registry` (open as `dir_fd`), and the names of every file read (at most MAX_ENTRIES); the names of
    those this user may not open go to `denied`, of every file named like an entry
    that did not read as one to `unread`, and of every other name but the registry's own and a file
    system's (`by_design`) to `others`. At most MAX_ENTRIES files are read, whatever
    they hold: the bound counted only the good ones, so a registry of damaged files was
    read whole, and once it was reached nothing more was read, good or damaged alike
    (so no name past it is called unreadable: it was not read)."""
    found: list[Listed] = []
    read: set[str] = set()
    reading = registry.kept.reading(registry.root) if registry.kept is not None else None
    with os.scandir(dir_fd) as scan:
        for item in scan:
            if not (ENTRY_NAME.match(item.name) and item.is_file(follow_symlinks=False)):
                if others is not None and not by_design(item.name):
                    others.append(item.name)
                continue
            if len(read) >= MAX_ENTRIES:
                break
            read.add(item.name)
            listed = _kept_or_read(dir_fd, item, reading, denied)
            if listed is not None:
                found.append(listed)
            elif unread is not None:
                unread.append(item.name)
    if reading is not None:
        reading.done()
    return found, read


def _kept_or_read(dir_fd: int, item: os.DirEntry[str], reading: Reading[Listed | None] | None,
                  denied: list[str] | None) -> Listed | None:
    """The entry `item` names: the one kept when its file is the one it was parsed from (its
    stamp, `fstatat`: no open), else read and parsed (and kept)."""
    if reading is None:
        return read_entry(dir_fd, item.name, denied)
    try:
        known, listed = reading.get(item.name, item.stat(follow_symlinks=False))
    except OSError:
        known, listed = False, None
    return listed if known else read_entry(dir_fd, item.name, denied, reading)
