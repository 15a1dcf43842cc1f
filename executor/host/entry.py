"""The host registry's entries. PURE.

Owns the format of one registry entry (`RegistryEntry`, one JSON object per file, named
after its supervisor: `PID-STARTTICKS.json`, or `PID-STARTTICKS.TAG.json` where another
host's supervisor of that pid and start holds that name in a shared root (`tagged_name`),
with its format's `version`), and the rule of
how long one stays listed (`expired`): an ended or LOST task stays until the last sign of
it is older than the retention. What a task's state is, given its checkpoint and whether its supervisor runs,
is `executor/host/truth.py`'s (only the inspection commands load it).

No I/O, no clock, no logging: the registry adapter (`executor/host/registry.py`) reads the
files, /proc and the time, and passes them in.
"""
from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

ENTRY_SUFFIX = ".json"
ENTRY_NAME = re.compile(r"^[1-9][0-9]{0,9}-[0-9]{1,20}(?:\.[0-9a-z]{1,16})?\.json$")
TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "KILLED"})
LOST = "LOST"
NO_TASK = "NEW"  # a supervisor that has not started a task yet (an executor before LAUNCH)
# An entry's "version": one that adds a field keeps it; one that changes what a field means
# or drops one takes the next, which older readers do not read (nor prune while its
# supervisor runs: executor/host/registry.py).
FORMAT = 1
EARLIER_TASK_IDS = 20  # a `stoker run`'s earlier attempts' task ids an entry keeps (the latest)


class FrontEnd(enum.Enum):
    RUN = "run"  # `stoker run`
    EXECUTOR = "executor"  # `stoker executor`, under a Mesos agent


def entry_name(pid: int, start_ticks: int, tag: str = "") -> str:
    return f"{pid}-{start_ticks}{'.' + tag if tag else ''}{ENTRY_SUFFIX}"


def name_tag(boot: str, host_id: str) -> str:
    """The tag of a supervisor's second name: the first 16 letters and digits of its boot's
    id (random at each boot), else of its machine id; "" where neither is known."""
    return "".join(c for c in (boot or host_id).lower() if c.isascii() and c.isalnum())[:16]


def claims_name(boot: str, host: tuple[str, str]) -> str:
    """The name of the port claims file of the kernel that booted as `boot` (`boot_id`), else,
    where that is not known, of the host `host` (machine id, host name); the characters of
    neither that a file name had better not hold as `_`. One a host, so that where several
    hosts share the root (a home on NFS), one host's claims on its own loopback ports never
    keep another's runs from choosing the same numbers on theirs; by its boot, not its name:
    named by the host name, a run started after the host was renamed (`hostnamectl
    set-hostname`, DHCP) claimed in another file than a run started before it, and so did a
    container of the host's network (`--network host`) under a name or machine id of its
    own, and each was given the other's port. Containers of one host in networks of their
    own claim in one file too, as they did in the one file of every host: a port one claims
    is not chosen by another, which chooses again."""
    parts = (boot,) if boot else host
    return "ports." + ".".join("".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in part)
                               for part in parts) + ".claims"


# A damaged field raises a bare ValueError: `from_json` turns any of them into None.
def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError
    return value


def _path(doc: Mapping[str, Any], key: str) -> str:
    """A path the readers open: as the writer keeps it (its bytes as UTF-8, surrogate escapes
    for the others), no NUL byte, which no open() takes (a ValueError from every reader of
    the entry: `stoker ps`, the registry's pruning and each observer page and scrape)."""
    value = _text(doc, key)
    if "\0" in value:
        raise ValueError
    value.encode("utf-8", "surrogateescape")  # a lone surrogate no byte gives: UnicodeEncodeError
    return value


def _texts(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError
    return tuple(value[-EARLIER_TASK_IDS:])


def _number(doc: Mapping[str, Any], key: str, optional: bool = False) -> float | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError
    try:
        number = float(value)  # an integer too large for a float: OverflowError
    except OverflowError:
        raise ValueError from None
    if not math.isfinite(number):
        raise ValueError
    return number


def _whole(doc: Mapping[str, Any], key: str) -> int:
    value = _number(doc, key)
    assert value is not None
    if not value.is_integer() or value < 0:
        raise ValueError
    return int(value)


@attrs.frozen(slots=True, kw_only=True)
class RegistryEntry:
    """One supervisor and its sandbox. The task fields follow its latest task (`stoker run`
    starts a new task id per attempt); `ended_wall` is set when the supervisor let go."""

    sandbox: str
    supervisor_pid: int
    supervisor_start: int  # clock ticks after boot
    supervisor_boot: str
    front_end: FrontEnd
    registered_wall: float
    task_id: str = ""
    job_key: str = ""
    label: str = ""
    marker: str = ""  # the task's STOKER_TASK_MARKER value
    ended_wall: float | None = None
    # 'DEV:INO' of the sandbox's .stoker as the supervisor made it: a reader trusts only that
    # one (a task that owns its sandbox may rename it and plant its own). '' in older entries.
    stoker_dir: str = ""
    # The task ids of this supervisor's earlier attempts (`stoker run`), oldest first: an id
    # an operator read a moment before a restart still names this supervisor.
    earlier_task_ids: tuple[str, ...] = ()
    # Why the supervisor stopped, where it stopped before its task could start and said why
    # (`cannot go on: ...`); "" otherwise.
    ended_reason: str = ""
    # Its latest task's terminal state (TERMINAL_STATES), where the task's owner wrote its
    # record in the checkpoint before the supervisor let go; "" otherwise, and in an older
    # Stoker's entry. `stoker ps` lists no task whose entry says both (`end_recorded`).
    ended_state: str = ""
    # Which host wrote it (`identity.host_identity`: its machine id and host name), where
    # several hosts share one registry root (a home on NFS); "" in an older Stoker's entry,
    # which is this host's, as it was.
    host_id: str = ""
    host_name: str = ""

    def of_host(self, host: tuple[str, str]) -> bool:
        """Whether this entry is the host `host`'s (machine id, host name): written there, or
        by an older Stoker, which recorded no host (its entries were always taken as this one's)."""
        return not (self.host_id or self.host_name) or (self.host_id, self.host_name) == host

    @property
    def end_recorded(self) -> bool:
        """Whether its supervisor let go after its latest task's end was recorded in the
        checkpoint (`ended_state`): that task ended, and nothing of it is left to act on."""
        return self.ended_wall is not None and self.ended_state in TERMINAL_STATES

    def known_as(self, task_id: str) -> bool:
        """`task_id` is this supervisor's task, its latest or an earlier attempt's."""
        return bool(task_id) and (task_id == self.task_id or task_id in self.earlier_task_ids)

    def next_task(self, task_id: str) -> tuple[str, ...]:
        """`earlier_task_ids` once the supervisor's next task is `task_id`."""
        if not self.task_id or self.task_id == task_id:
            return self.earlier_task_ids
        return (*self.earlier_task_ids, self.task_id)[-EARLIER_TASK_IDS:]

    @property
    def name(self) -> str:
        return entry_name(self.supervisor_pid, self.supervisor_start)

    @property
    def tagged_name(self) -> str:
        """The name this entry is written under where its `name` is another supervisor's: one
        of another host sharing the root (a pid and start on two hosts, identical machines
        booted alike), or of an earlier boot of this one; "" where no tag is known."""
        tag = name_tag(self.supervisor_boot, self.host_id)
        return entry_name(self.supervisor_pid, self.supervisor_start, tag) if tag else ""

    def named(self, name: str) -> bool:
        """Whether a file named `name` may hold this entry (its `name` or `tagged_name`, made
        only when asked: a reading of a week of entries made every one's, 1,000 a `stoker ps`)."""
        if name == self.name:
            return True
        tagged = self.tagged_name
        return bool(tagged) and name == tagged

    def same_supervisor(self, other: RegistryEntry) -> bool:
        """Whether `other` is this entry's supervisor's (its pid, start, boot and host)."""
        return (self.supervisor_pid, self.supervisor_start, self.supervisor_boot, self.host_id) == \
            (other.supervisor_pid, other.supervisor_start, other.supervisor_boot, other.host_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT, "sandbox": self.sandbox, "supervisor_pid": self.supervisor_pid,
            "supervisor_start": self.supervisor_start, "supervisor_boot": self.supervisor_boot,
            "front_end": self.front_end.value, "registered": self.registered_wall,
            "task_id": self.task_id, "job_key": self.job_key, "label": self.label,
            "marker": self.marker, "ended": self.ended_wall, "stoker_dir": self.stoker_dir,
            "earlier_task_ids": list(self.earlier_task_ids), "ended_reason": self.ended_reason,
            "ended_state": self.ended_state, "host_id": self.host_id, "host_name": self.host_name,
        }

    @classmethod
    def from_json(cls, doc: object) -> RegistryEntry | None:
        """The entry a JSON object holds; None when it is damaged in any way."""
        if not isinstance(doc, Mapping) or doc.get("version", FORMAT) != FORMAT:
            return None  # another format (a newer Stoker's): not read as this one
        try:
            registered = _number(doc, "registered")
            assert registered is not None
            entry = cls(sandbox=_path(doc, "sandbox"), supervisor_pid=_whole(doc, "supervisor_pid"),
                        supervisor_start=_whole(doc, "supervisor_start"),
                        supervisor_boot=_text(doc, "supervisor_boot"),
                        front_end=FrontEnd(doc.get("front_end")), registered_wall=registered,
                        task_id=_text(doc, "task_id"), job_key=_text(doc, "job_key"),
                        label=_text(doc, "label"), marker=_text(doc, "marker"),
                        ended_wall=_number(doc, "ended", optional=True), stoker_dir=_path(doc, "stoker_dir"),
                        earlier_task_ids=_texts(doc, "earlier_task_ids"),
                        ended_reason=_text(doc, "ended_reason"), ended_state=_text(doc, "ended_state"),
                        host_id=_text(doc, "host_id"), host_name=_text(doc, "host_name"))
        except ValueError:
            return None
        if not entry.sandbox.startswith("/") or entry.supervisor_pid <= 0:
            return None
        return entry


def expired(last_sign_wall: float | None, now_wall: float, retention_secs: float) -> bool:
    """An ended or LOST task whose last sign is older than the retention is dropped from the
    registry; one with no sign at all (a damaged entry) too."""
    return last_sign_wall is None or now_wall - last_sign_wall > retention_secs


def later_ids(entries: Iterable[RegistryEntry], entry: RegistryEntry) -> frozenset[str]:
    """The task ids of the supervisors that took `entry`'s sandbox after it (registered later,
    in the `.stoker` it pinned, or at its path where either pinned none): whose `task.json` may
    have been written over its own (`executor/task/definition.Asked`)."""
    return frozenset(i for e in takers_after(entries, entry) for i in (e.task_id, *e.earlier_task_ids) if i)


def takers_after(entries: Iterable[RegistryEntry], entry: RegistryEntry) -> Iterator[RegistryEntry]:
    """The other supervisors that took `entry`'s sandbox after it: registered later
    (`registered_after`), in the `.stoker` it pinned, or at its path where either pinned none."""
    pin, path = entry.stoker_dir, entry.sandbox
    return (e for e in entries if (e.stoker_dir == pin if e.stoker_dir and pin else e.sandbox == path)
            and e is not entry
            and (e.supervisor_pid, e.supervisor_start) != (entry.supervisor_pid, entry.supervisor_start)
            and registered_after(e, entry))


def first_taker(entries: Iterable[RegistryEntry], entry: RegistryEntry) -> RegistryEntry | None:
    """The supervisor that took `entry`'s sandbox next (`takers_after`: the earliest of those
    registered after it); None: none did."""
    first = None
    for e in takers_after(entries, entry):
        if first is None or registered_after(first, e):
            first = e
    return first


def listing_order(entry: RegistryEntry, boot: str) -> tuple[int, float]:
    """Where `entry` comes in a listing, oldest first: this boot's (`boot`) entries after
    every earlier boot's, in the order their supervisors started on the boot's clock (a step
    of the wall clock between two registrations listed the later first); the others by the
    wall clock of their registrations."""
    if boot and entry.supervisor_boot == boot:
        return 1, float(entry.supervisor_start)
    return 0, entry.registered_wall


def registered_after(later: RegistryEntry, entry: RegistryEntry) -> bool:
    """Whether `later`'s supervisor came after `entry`'s: by their starts on the boot's clock
    where both are of one boot and apart (no step of the wall clock moves it: one stepped back
    between the two made the later registration look older, and the later run's sandbox the
    earlier one's), else by the wall clock of their registrations."""
    if later.supervisor_boot and later.supervisor_boot == entry.supervisor_boot \
            and later.supervisor_start != entry.supervisor_start:
        return later.supervisor_start > entry.supervisor_start
    return later.registered_wall > entry.registered_wall
