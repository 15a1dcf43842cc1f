"""What the watchdog holds, kept beside the checkpoint: `SANDBOX/.stoker/held.json`.

The watchdog kills, besides the task's cgroup and marker, the orphans and daemons its
supervisor handed it by pid and start time (`executor/procs/handover.py`): among them those
whose environment hides the marker (not dumpable, or cleared). When the watchdog went with
its supervisor (both killed), nothing else named them: `stoker status` lists a LOST task's
leftovers by marker, and a re-run kills by marker (`leftovers.py`). So the owner writes the
list here at the end of each step that changed it (`held_json`: `{"marker": M, "boot":
BOOT_ID, "held": [[PID, START], ...], "watchdog": PID}`, the watchdog's pid being the one
child of the supervisor `stoker status` leaves out of the task's figures; START as the host's time namespace counts it;
replaced whole, not synced: a hint, exact at the latest step), through the `.stoker`
directory fd the checkpoint was opened with, never by path: a task that renamed `.stoker`
and put a symlink or a directory of its own in its place redirects nothing. For the
attempt whose marker it names, once LOST, `stoker status` lists and a re-run kills those
still alive as themselves: the same boot, the same start time (`alive_held`), so a reused
pid is never named; each reads only the `.stoker` its registry entry or its lock pins.
What they list and `/metrics` counts (`held_leftovers`) are only processes of the user
who alone could have written the list (all of them when that is root): a list a task
wrote never makes another user's process its leftover.

Reading trusts nothing: the task's processes share the sandbox. A list is read only through
`.stoker`'s fd, never through a symlink or a FIFO, at most `MAX_HELD_BYTES`; with
`trusted_only` (the re-run's kill), only when `.stoker` and the file are this user's and no
one else may write either: a list a task planted must not make a root re-run kill any
process of the host.
"""
from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from executor.host import identity
from executor.host.replacefile import replace_file
from executor.host.sandbox import HELD_FILE, open_stoker_dir
from executor.logs import log_event
from executor.procs import pidsignal, proctree, saferead

logger = logging.getLogger(__name__)

MAX_HELD_BYTES = 1024 * 1024


def held_json(marker: str, held: Mapping[int, int], watchdog: int | None = None) -> bytes:
    """The list of `marker`'s attempt naming `held` (pid → start time, as /proc/PID/stat
    shows it here), its starts counted as the host's time namespace counts them (a
    supervisor under `unshare --time` and a `stoker status` outside read other starts for
    the same process: `identity.boottime_offset_ticks`), and the pid of its `watchdog`
    (the one child of the supervisor its figures leave out: `read_watchdog`)."""
    offset = identity.boottime_offset_ticks()
    doc: dict[str, object] = {"marker": marker, "boot": identity.boot_id(),
                              "held": sorted((pid, start - offset) for pid, start in held.items())}
    if watchdog is not None:
        doc["watchdog"] = watchdog
    return json.dumps(doc).encode()


def write_held(stoker_dir: int, marker: str, held: Mapping[int, int]) -> None:
    """Make `held` the list of `marker`'s attempt in the `.stoker` directory whose fd is
    `stoker_dir` (one opened once, never a path looked up again). Raises OSError."""
    replace_file(HELD_FILE, held_json(marker, held), dir_fd=stoker_dir)


def read_held(sandbox: str | os.PathLike[str], marker: str, *, trusted_only: bool = False,
              pinned: str = "") -> list[tuple[int, int]]:
    """The (pid, start time as /proc/PID/stat shows it here) pairs the list names for
    `marker`'s attempt in this boot; none when there is no such list, or it cannot be read,
    or (`trusted_only`) may not be trusted."""
    doc = _read_doc(sandbox, marker, trusted_only, pinned)
    return [] if doc is None else _pairs(doc, identity.boottime_offset_ticks())


def held_pairs(data: bytes, marker: str, boot: str, offset: int) -> list[tuple[int, int]]:
    """The (pid, start) pairs a list's bytes name for `marker`'s attempt in `boot`, each
    start moved by `offset` (`identity.boottime_offset_ticks`); none when the bytes are over
    MAX_HELD_BYTES, not JSON, or another attempt's. Pure: it never raises."""
    doc = held_doc(data, marker, boot)
    return [] if doc is None else _pairs(doc, offset)


def held_doc(data: bytes, marker: str, boot: str) -> dict[str, object] | None:
    """The list a file's bytes hold for `marker`'s attempt in `boot`, or None. Pure."""
    try:
        doc = json.loads(data) if len(data) <= MAX_HELD_BYTES else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("marker") != marker or doc.get("boot") != boot:
        return None
    return doc


def _pairs(doc: dict[str, object], offset: int) -> list[tuple[int, int]]:
    pairs = doc.get("held")
    if not isinstance(pairs, list):
        return []
    return [(p[0], p[1] + offset) for p in pairs if isinstance(p, list) and len(p) == 2
            and all(type(n) is int and n > 0 for n in p)]


def read_watchdog(sandbox: str | os.PathLike[str], marker: str, *, pinned: str = "") -> int | None:
    """The pid of `marker`'s attempt's watchdog as its supervisor wrote it, or None (no
    list, or one written before its watchdog started)."""
    doc = _read_doc(sandbox, marker, False, pinned)
    pid = doc.get("watchdog") if doc is not None else None
    return pid if type(pid) is int and pid > 0 else None


def _read_doc(sandbox: str | os.PathLike[str], marker: str, trusted_only: bool, pinned: str) -> dict[str, object] | None:
    """The list of `marker`'s attempt in this boot, or None."""
    return _read_doc_by(sandbox, marker, trusted_only, pinned)[0]


def _read_doc_by(sandbox: str | os.PathLike[str], marker: str, trusted_only: bool,
                 pinned: str) -> tuple[dict[str, object] | None, int | None]:
    """The list of `marker`'s attempt in this boot, or None, and the one user who may have
    written it (`.stoker`'s owner, when neither it nor the file is writable by another; None:
    anyone may have)."""
    try:
        dir_fd = open_stoker_dir(sandbox, pinned=pinned)
    except OSError:
        return None, None
    try:
        fd = saferead.open_file(HELD_FILE, dir_fd)
        try:
            if trusted_only and not (_ours(dir_fd) and _ours(fd)):
                return None, None
            writer = _writer(os.fstat(dir_fd), os.fstat(fd))
            data = os.read(fd, MAX_HELD_BYTES + 1)
        finally:
            os.close(fd)
    except OSError:
        return None, None
    finally:
        os.close(dir_fd)
    return held_doc(data, marker, identity.boot_id()), writer


def _writer(directory: os.stat_result, file: os.stat_result) -> int | None:
    """Who alone could have put the file in the directory: the directory's owner, when
    neither may be written by its group or others and the file is the owner's or root's."""
    loose = (directory.st_mode | file.st_mode) & (stat.S_IWGRP | stat.S_IWOTH)
    return None if loose or file.st_uid not in (directory.st_uid, 0) else directory.st_uid


def _ours(fd: int) -> bool:
    info = os.fstat(fd)
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def alive_held(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """Those of `pairs` still alive with that start time (`identity.same_start`: the list
    may come from another time namespace), pid → their start as read here."""
    alive = {}
    for pid, start in pairs:
        stat_ = pidsignal.read_stat(pid)
        if stat_ is not None and identity.same_start(stat_[2], start):
            alive[pid] = stat_[2]
    return alive


def held_leftovers(sandbox: str | os.PathLike[str], marker: str, *, pinned: str = "") -> dict[int, int]:
    """The processes the list of `marker`'s attempt names that a reader may count as the
    task's leftovers (`stoker status`, the pages, `/metrics`): alive as themselves
    (`alive_held`) and, unless only root could have written the list (a root supervisor's
    `.stoker`, its task another user), of the user who could (the task's processes share a
    sandbox they own, and may write a list naming any process of the host: its real uid is
    the test, which a setuid program the task ran keeps). At most one /proc look per live
    process however long the list (1 MB of pairs names 170,000 pids)."""
    doc, writer = _read_doc_by(sandbox, marker, False, pinned)
    if doc is None or writer is None:
        return {}
    pairs = dict(_pairs(doc, identity.boottime_offset_ticks()))
    if len(pairs) > _FEW:
        live = set(proctree.pids())
        pairs = {pid: start for pid, start in pairs.items() if pid in live}
    alive = alive_held(list(pairs.items()))
    return alive if writer == 0 else {pid: s for pid, s in alive.items() if proctree.real_uid(pid) == writer}


_FEW = 64  # a list longer than this is checked against /proc's listing first


class HeldWriter:
    """The owner's writer of the list: writes it when it changed, through `beside` (the
    checkpoint's `replace_beside`: the `.stoker` directory it opened as the task started);
    one WARNING when it cannot, one INFO when it can again."""

    def __init__(self, beside: Callable[[str, bytes], None], sandbox: Path, marker: str, label: str) -> None:
        self._beside = beside
        self._sandbox, self._marker, self._label = sandbox, marker, label
        self._written: dict[int, int] = {}
        self._watchdog: int | None = None
        self._failing = False

    def update(self, held: Mapping[int, int], watchdog: int | None = None) -> None:
        if (dict(held), watchdog) == (self._written, self._watchdog):
            return
        try:
            self._beside(HELD_FILE, held_json(self._marker, held, watchdog))
        except (OSError, ValueError) as exc:
            if not self._failing:
                reason = saferead.describe(exc) if isinstance(exc, OSError) else str(exc)
                log_event(logger, logging.WARNING, "held_unwritten", task=self._label,
                          reason=f"cannot write {self._sandbox}/.stoker/{HELD_FILE}: {reason}",
                          consequence="should the supervisor and its watchdog both die, `stoker "
                                      "status` and a re-run find the task's leftovers by marker only")
            self._failing = True
            return
        if self._failing:
            log_event(logger, logging.INFO, "held_written", task=self._label,
                      reason=f"{self._sandbox}/.stoker/{HELD_FILE} could be written again")
        self._written, self._watchdog, self._failing = dict(held), watchdog, False
