"""`GET /metrics`: the registry read for one scrape (`Reader`), the families made
(`metrics`) and written (`exposition`).

A scrape exports the tasks `metrics.Window` keeps: each task whose supervisor runs, and
each other one until `--metrics-ended-secs` after it ended (default 10 minutes: a scrape
every 15-60 s sees a task's terminal state several times, and a host that keeps thousands
of ended tasks for its registry's retention does not export them on every scrape; the
pages and /api show every task the registry keeps). A task whose supervisor let go says
when in its registry entry, so an older one is left out before its checkpoint is read.
A LOST task past the window is exported still while any of its processes lives
(`Window.keeps_lost`): its leftovers are looked for in the same /proc scan as those of the
LOST tasks the window keeps (every LOST task of the registry is inspected anyway: its
entry says no end).

One task whose reading or exporting raises is left out of the answer, every other task is
in it: `TaskErrors` counts each time (`stoker_observer_task_errors_total`) and logs one
WARNING line per task (its id, its supervisor and the error), not one per scrape.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from executor.host.entry import RegistryEntry
from executor.host.lock import LockTable
from executor.logs import log_event
from executor.observe import metrics
from executor.observe.exposition import render
from executor.observe.model import TaskDetail
from executor.observe.reader import EVERYONE, Reader, supervisor_key
from executor.task.inspection import Inspection, inspect_sandbox, marker_of, with_leftovers

logger = logging.getLogger(__name__)

MAX_LOGGED = 10000  # tasks whose error was logged, remembered (then forgotten, and logged again)


class TaskErrors:
    """The tasks left out of answers because reading or exporting them raised. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self._logged: set[tuple[str, str]] = set()

    def record(self, task_id: str, supervisor: str, exc: Exception) -> None:
        with self._lock:
            self.total += 1
            key = (task_id, supervisor)
            if key in self._logged:
                return
            if len(self._logged) >= MAX_LOGGED:
                self._logged.clear()
            self._logged.add(key)
        log_event(logger, logging.WARNING, "observer_task_error", task=task_id, supervisor=supervisor,
                  error=f"{type(exc).__name__}: {exc}",
                  reason="left out of /metrics (every other task is exported); logged once per task",
                  exc_info=logger.isEnabledFor(logging.DEBUG))  # its traceback: at --log-level DEBUG


def details(reader: Reader, viewer: int | None, window: metrics.Window,
            errors: TaskErrors) -> tuple[list[TaskDetail], list[str]]:
    """The tasks of the answer, each read as its page reads it (definition and `stoker
    status` view left out), and the unreadable entries (`Reader.visible_entries`)."""
    entries, unreadable = reader.visible_entries(viewer)
    inspected, past = [], []  # past: LOST tasks past the window, kept only while leftovers live
    locks = LockTable()  # /proc/locks read once for all of them, when one is asked about
    for e in entries:
        if not window.keeps_entry(e.ended_wall):
            continue
        try:
            inspection = inspect_sandbox(Path(e.sandbox), e, reader.views, locks)
        except Exception as exc:
            errors.record(e.task_id, supervisor_key(e), exc)
            continue
        if window.keeps(inspection, e.registered_wall, e.ended_wall, _last_seen(reader, e, inspection)):
            inspected.append((e, inspection))
        elif inspection.truth.unsupervised and marker_of(inspection, e):
            past.append((e, inspection))
    inspected += past
    found: list[Inspection | None]
    try:
        found = list(with_leftovers([i for _, i in inspected], [marker_of(i, e) for e, i in inspected]))
    except Exception:  # one scan for all of them: each on its own, to tell which failed
        found = [_with_leftovers(e, i, errors) for e, i in inspected]
    out: list[TaskDetail] = []
    for n, ((e, _), checked) in enumerate(zip(inspected, found)):
        if checked is None or (n >= len(inspected) - len(past) and not window.keeps_lost(checked)):
            continue
        try:
            out.append(reader.measured(e, checked))
        except Exception as exc:
            errors.record(e.task_id, supervisor_key(e), exc)
    return out, unreadable


def _last_seen(reader: Reader, entry: RegistryEntry, inspection: Inspection) -> float | None:
    """A GONE task's last record as the reader read it before its checkpoint went (None:
    not GONE, or never read: an observer started since). Only its own: a later task that
    took its sandbox and `.stoker` leaves its checkpoint's view there, and the task GONE was
    measured from that one's records, in /metrics for as long as the later task wrote."""
    if not inspection.truth.gone:
        return None
    viewed = reader.views.last((str(Path(entry.sandbox)), entry.stoker_dir))
    view = viewed[0] if viewed is not None else None
    return view.last_wall if view is not None and entry.known_as(view.task_id) else None


def _with_leftovers(entry: RegistryEntry, inspection: Inspection, errors: TaskErrors) -> Inspection | None:
    try:
        return with_leftovers([inspection], [marker_of(inspection, entry)])[0]
    except Exception as exc:
        errors.record(entry.task_id, supervisor_key(entry), exc)
        return None


def metrics_text(reader: Reader, viewer: int | None, ended_secs: float | None, errors: TaskErrors,
                 wall: Callable[[], float] = time.time) -> str:
    """`/metrics` for `viewer`: the tasks it may see that the window keeps."""
    started = time.perf_counter()
    found, unreadable = details(reader, viewer, metrics.Window(ended_secs, wall()), errors)
    took = time.perf_counter() - started
    left_out: list[TaskDetail] = []

    def failed(d: TaskDetail, exc: Exception) -> None:
        left_out.append(d)
        try:
            task_id, supervisor = str(d.row.get("task_id") or ""), d.supervisor
        except Exception:  # what made it fail may fail again
            task_id, supervisor = "?", "?"
        errors.record(task_id, supervisor, exc)

    tasks = metrics.task_families(found, failed)
    everyone = viewer == EVERYONE  # the observer's own counts of every task: not a user's to know
    return render([*tasks, *metrics.observer_families(metrics.ObserverFigures(
        scrape_secs=took, tasks=len(found) - len(left_out), unreadable=len(unreadable) if everyone else None,
        replays=reader.views.read if everyone else None, task_errors=errors.total if everyone else None,
        not_read=len(reader.not_read) if everyone else None))])
