"""A task's use against its reservation, the figures Thermos' executor keeps per task (its
ResourceManager's gauges), as `stoker status` and the observer show them. PURE: the figures
in, text and JSON out; no I/O, no clock.

    cpu_used      the CPU rate of the task's running process trees and of its held
                  daemons' and orphans' trees (`executor/observe/usage.py`), in cores
    cpu_reserved  Resources.cpu, in cores
    ram_used      the RSS of those trees, in bytes
    ram_reserved  Resources.ram, in bytes
    disk_used     the sandbox's bytes at the last sample of the disk-limit check
    disk_reserved Resources.disk, in bytes
    *_percent     used over reserved, in percent (Thermos' gauges of these names are the
                  fraction: 0.35 there is 35 here)

A figure that is not known is None (`-` in text) with the reason beside it (`cpu_note`,
`ram_note`, `disk_note`), never 0: a task that has ended uses no CPU, but its figure is not
known, not zero. `Live` is what the caller read from /proc (the observer's per-run usage,
`executor/observe/usage.py`, added up), `UsageRecord` what the task's supervisor wrote in
`.stoker/usage.json` (`executor/task/usagefile.py`): its reservation and its last disk
sample.
"""
from __future__ import annotations

from typing import Any

import attrs

from executor.host.clock import age, iso_time
from executor.task.recordfields import finite


@attrs.frozen(slots=True)
class DiskSample:
    """One sample of the disk-limit check: the sandbox's bytes, when, and how long it took."""

    used_bytes: int
    wall: float  # when it was taken, in today's wall clock
    secs: float  # how long the walk of the sandbox took
    files: int = 0
    unreadable: int = 0  # directories it could not read (their contents not counted)


@attrs.frozen(slots=True)
class UsageRecord:
    """What a task's supervisor keeps beside its checkpoint about its use."""

    cpu: float | None  # Resources.cpu (None: not reserved)
    ram_bytes: int | None
    disk_bytes: int | None
    check_secs: float | None  # the disk check's interval (None: the check is off)
    sample: DiskSample | None = None  # the last good sample (None: none yet)
    error: str = ""  # why the last sample failed ("" it did not)
    unverified: str = ""  # why it may not be the supervisor's ("" it is: `usagefile.read_usage`)


@attrs.frozen(slots=True)
class Live:
    """The task's running process trees and held processes' trees now, as read from /proc;
    None: not known (`note` says why). `basis`: how the CPU rate was measured (since the
    previous look, or the average since each tree's top started)."""

    cpu_cores: float | None
    rss_bytes: int | None
    basis: str = ""
    note: str = ""


@attrs.frozen(slots=True)
class Figures:
    cpu_used: float | None
    cpu_reserved: float | None
    ram_used: int | None
    ram_reserved: int | None
    disk_used: int | None
    disk_reserved: int | None
    cpu_basis: str
    cpu_note: str  # why cpu_used (and ram_used) is not known ("" it is)
    disk_note: str  # why disk_used is not known ("" it is)
    disk_sampled: float | None  # the sample's wall time
    disk_sample_secs: float | None  # how long it took
    disk_check_secs: float | None
    disk_error: str  # the last sample failed (the figure is the one before)
    unverified: str = ""  # why the reservation and disk figure may not be the supervisor's

    @property
    def cpu_percent(self) -> float | None:
        return percent(self.cpu_used, self.cpu_reserved)

    @property
    def ram_percent(self) -> float | None:
        return percent(self.ram_used, self.ram_reserved)

    @property
    def disk_percent(self) -> float | None:
        return percent(self.disk_used, self.disk_reserved)


def _number(value: Any, whole: bool = False) -> float | None:
    """A finite number ≥ 0 (an int when `whole`), else None."""
    if type(value) not in ((int,) if whole else (int, float)):
        return None
    return value if finite(value) and value >= 0 else None


_BAD = object()


def _optional(doc: dict[str, Any], key: str, whole: bool = False) -> Any:
    value = doc.get(key)
    if value is None:
        return None
    number = _number(value, whole)
    return _BAD if number is None else number


def usage_record(doc: dict[str, Any]) -> UsageRecord | None:
    """The record a usage file holds (`executor/task/usagefile.py`); None when a field has
    the wrong type (the file is damaged, or planted)."""
    fields = (_optional(doc, "cpu_reserved"), _optional(doc, "ram_reserved", True),
              _optional(doc, "disk_reserved", True), _optional(doc, "disk_check_secs"))
    error = doc.get("disk_error") or ""
    raw = doc.get("disk_sample")
    sample = _sample(raw)  # None for no sample too
    if _BAD in fields or not isinstance(error, str) or (raw is not None and sample is None):
        return None
    return UsageRecord(*fields, sample=sample, error=error[:1000])


def _sample(raw: Any) -> DiskSample | None:
    if not isinstance(raw, dict):
        return None
    used, files, unreadable = (_number(raw.get(k), True) for k in ("used_bytes", "files", "unreadable"))
    secs, wall = _number(raw.get("secs")), _number(raw.get("wall"))
    if used is None or files is None or unreadable is None or secs is None or wall is None:
        return None
    return DiskSample(int(used), float(wall), float(secs), int(files), int(unreadable))


def percent(used: float | None, reserved: float | None) -> float | None:
    """`used` over `reserved` in percent, to a tenth; None when either is unknown or nothing
    is reserved."""
    if used is None or reserved is None or reserved <= 0:
        return None
    return round(100.0 * used / reserved, 1)


def figures(record: UsageRecord | None, problem: str, live: Live) -> Figures:
    """The figures from the supervisor's record (None: `problem` says why there is none)
    and the live trees."""
    sample = record.sample if record is not None else None
    return Figures(
        cpu_used=None if live.cpu_cores is None else round(live.cpu_cores, 3),
        cpu_reserved=record.cpu if record else None,
        ram_used=live.rss_bytes, ram_reserved=record.ram_bytes if record else None,
        disk_used=sample.used_bytes if sample else None,
        disk_reserved=record.disk_bytes if record else None,
        cpu_basis=live.basis if live.cpu_cores is not None else "", cpu_note=live.note,
        disk_note=_disk_note(record, problem), disk_sampled=sample.wall if sample else None,
        disk_sample_secs=sample.secs if sample else None,
        disk_check_secs=record.check_secs if record else None,
        disk_error=record.error if record else "", unverified=record.unverified if record else "")


def _disk_note(record: UsageRecord | None, problem: str) -> str:
    if record is None:
        return problem
    if record.sample is not None:
        return ""
    if record.error:
        return f"no sample yet: {record.error}"
    if record.check_secs is None:
        if record.disk_bytes is None:
            return "not sampled: the task reserves no disk (Resources.disk), so the disk-limit check is off"
        return "not sampled: the disk-limit check is off for this task (--disk-limit on turns it on)"
    return "no sample yet: the first is under way"


def figures_json(f: Figures, now_wall: float) -> dict[str, Any]:
    """Thermos' names, the sample's time and age, and the reasons for what is unknown."""
    age_secs = None if f.disk_sampled is None else round(max(0.0, now_wall - f.disk_sampled), 3)
    return {
        "cpu_used": f.cpu_used, "cpu_reserved": f.cpu_reserved, "cpu_percent": f.cpu_percent,
        "ram_used": f.ram_used, "ram_reserved": f.ram_reserved, "ram_percent": f.ram_percent,
        "disk_used": f.disk_used, "disk_reserved": f.disk_reserved, "disk_percent": f.disk_percent,
        "cpu_basis": f.cpu_basis or None, "cpu_note": f.cpu_note or None,
        "disk_sampled": f.disk_sampled, "disk_sampled_iso": iso_time(f.disk_sampled) if f.disk_sampled else None,
        "disk_sample_age_secs": age_secs, "disk_sample_secs": f.disk_sample_secs,
        "disk_check_secs": f.disk_check_secs, "disk_note": f.disk_note or None,
        "disk_error": f.disk_error or None, "unverified": f.unverified or None,
    }


def size_text(count: int | None) -> str:
    """1.5 KiB, 23.0 MiB: a byte count for people; '-' when unknown."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # not reached


def duration(secs: float) -> str:
    """12 ms, 3.4s, 2m05s: how long a sample took."""
    return f"{secs * 1000:.0f} ms" if secs < 1 else age(secs)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def figure_rows(f: Figures, now_wall: float) -> list[tuple[str, str, str, str, str]]:
    """(resource, used, reserved, percent, note) for cpu, ram and disk."""
    cpu_note = f.cpu_note or (f"cores; {f.cpu_basis}" if f.cpu_basis else "cores")
    if f.disk_sampled is not None:
        took = "" if f.disk_sample_secs is None else f", took {duration(f.disk_sample_secs)}"
        disk_note = f"sampled {age(now_wall - f.disk_sampled)} ago{took}"
        if f.disk_error:
            disk_note += f"; the last sample failed: {f.disk_error}"
    else:
        disk_note = f.disk_note
    if f.unverified:  # only a record has it, and a record always gives a note
        disk_note = f"{disk_note}; unverified: {f.unverified}"
    return [("cpu", _cores(f.cpu_used), _cores(f.cpu_reserved), _pct(f.cpu_percent), cpu_note),
            ("ram", size_text(f.ram_used), size_text(f.ram_reserved), _pct(f.ram_percent), f.cpu_note),
            ("disk", size_text(f.disk_used), size_text(f.disk_reserved), _pct(f.disk_percent), disk_note)]
