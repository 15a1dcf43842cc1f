"""One `/metrics` scrape (`executor/observe/scrape.py`) over a real registry: a task whose
reading or exporting raises is left out, counted and named once, every other task is in the
answer; the leftovers of every task are looked for in one /proc scan; and only a viewer who
sees every task is told the observer's own counts.

The tasks are written with the product's own writers (`tests/support/statuscli.py`'s
`registered_task`): one whose supervisor is this test's process, one whose supervisor let
go a moment ago, and two LOST ones, each with a leftover (a real `sleep` carrying its
attempt's marker): one whose checkpoint names its marker, one (an older Stoker's checkpoint)
whose registry entry alone does. The faults are injected where
the scrape calls its collaborators (the sandbox's inspection, the leftover scan, a task's
measuring and its samples), each raising for one task only: they stand for a bug the
scrape must survive, which no real input is known to cause any more."""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.observe import metrics, scrape
from executor.observe.reader import EVERYONE, Reader, supervisor_key
from executor.observe.scrape import TaskErrors, details, metrics_text
from executor.task.inspection import Inspection
from tests.support.exposition import parse
from tests.support.marked import marked_sleeps
from tests.support.statuscli import RUNNING, registered_task

pytestmark = pytest.mark.timeout(60)

TASKS = ("alive-a", "ended-b", "lost-c", "lost-d")
EVERY = {"alive-a": 0, "ended-b": 0, "lost-c": 1, "lost-d": 1}  # each task: the leftovers found


def marker(task: str) -> str:
    """Task `task`'s marker: this process's own, as the same test may run in another worker
    at the same time (its leftovers carry the same task names)."""
    return f"marker-{task}-{os.getpid()}"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[RegistrySettings]:
    """The four tasks, and the LOST ones' leftovers (a `sleep` with the task's marker) while
    the test runs."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=86400.0)
    for name in TASKS:
        (tmp_path / name).mkdir()
        registered_task(settings, tmp_path / name, name, RUNNING, alive=name == "alive-a", ended=name == "ended-b",
                        marked=name != "lost-d", marker=marker(name))
    with marked_sleeps(marker("lost-c"), marker("lost-d")):
        yield settings


def _scraped(settings: RegistrySettings, errors: TaskErrors, reader: Reader | None = None,
             later: float = 0.0) -> dict[str, int]:
    """Each task of the answer (its window's now `later` s from now): how many leftovers it
    was found with."""
    window = metrics.Window(600.0, time.time() + later)
    out, unreadable = details(reader or Reader(settings), EVERYONE, window, errors)
    assert unreadable == []
    return {str(d.row["task_id"]): len(d.inspection.leftovers) for d in out}


def _but(failing: str) -> dict[str, int]:
    return {task: n for task, n in EVERY.items() if task != failing}


def _supervisor_of(settings: RegistrySettings, task_id: str) -> str:
    entries, _ = Reader(settings).visible_entries(EVERYONE)
    return next(supervisor_key(e) for e in entries if e.task_id == task_id)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "observer_task_error" in r.getMessage()]


def test_with_nothing_failing_every_task_is_there_and_the_leftovers_come_from_one_scan(settings, monkeypatch):
    scans: list[list[str]] = []
    real = scrape.with_leftovers

    def counted(inspections: list[Inspection], markers: list[str]) -> list[Inspection]:
        scans.append(sorted(markers))
        return real(inspections, markers)

    monkeypatch.setattr(scrape, "with_leftovers", counted)
    errors = TaskErrors()
    assert _scraped(settings, errors) == EVERY  # lost-d's leftover found by its entry's marker
    assert errors.total == 0
    assert scans == [[marker(t) for t in TASKS]]


def test_a_task_that_ended_before_the_window_is_left_out_before_its_checkpoint_is_read(settings):
    """An hour on, ended-b (its entry says when it ended) is past the window; the LOST ones
    are kept while their leftovers live, their last records long past too."""
    reader = Reader(settings)
    assert _scraped(settings, TaskErrors(), reader, later=3600.0) == _but("ended-b")
    assert reader.views.read == 3


@pytest.mark.parametrize("failing", TASKS)
def test_a_task_whose_sandbox_cannot_be_inspected_is_left_out_named_once(settings, monkeypatch, caplog, failing):
    real = scrape.inspect_sandbox

    def inspect(sandbox: Path, entry, *more) -> Inspection:
        if entry.task_id == failing:
            raise RuntimeError(f"cannot read {entry.task_id}")
        return real(sandbox, entry, *more)

    monkeypatch.setattr(scrape, "inspect_sandbox", inspect)
    caplog.set_level(logging.WARNING, logger="executor.observe.scrape")
    errors = TaskErrors()
    assert _scraped(settings, errors) == _but(failing)
    assert _scraped(settings, errors) == _but(failing)
    assert errors.total == 2  # counted at each scrape ...
    [line] = _warnings(caplog)  # ... logged once
    assert f"task={failing}" in line and f"supervisor={_supervisor_of(settings, failing)}" in line
    assert f"RuntimeError: cannot read {failing}" in line


def test_a_task_whose_leftover_scan_raises_is_left_out_and_the_others_are_scanned_each_alone(settings, monkeypatch,
                                                                                             caplog):
    real = scrape.with_leftovers
    scans: list[list[str]] = []

    def scan(inspections: list[Inspection], markers: list[str]) -> list[Inspection]:
        scans.append(list(markers))
        if marker("ended-b") in markers:
            raise RuntimeError("scan failed")
        return real(inspections, markers)

    monkeypatch.setattr(scrape, "with_leftovers", scan)
    caplog.set_level(logging.WARNING, logger="executor.observe.scrape")
    errors = TaskErrors()
    assert _scraped(settings, errors) == _but("ended-b")  # each LOST one's leftover found alone
    assert len(scans[0]) == 4 and sorted(sum(scans[1:], [])) == [marker(t) for t in TASKS]
    assert errors.total == 1
    [line] = _warnings(caplog)
    assert "task=ended-b" in line and f"supervisor={_supervisor_of(settings, 'ended-b')}" in line
    assert "RuntimeError: scan failed" in line


@pytest.mark.parametrize("failing", TASKS)
def test_a_task_that_cannot_be_measured_is_left_out_named_once(settings, monkeypatch, caplog, failing):
    real = Reader.measured

    def measured(self: Reader, entry, inspection: Inspection):
        if entry.task_id == failing:
            raise ValueError("unmeasurable")
        return real(self, entry, inspection)

    monkeypatch.setattr(Reader, "measured", measured)
    caplog.set_level(logging.WARNING, logger="executor.observe.scrape")
    errors = TaskErrors()
    assert _scraped(settings, errors) == _but(failing)
    assert errors.total == 1
    [line] = _warnings(caplog)
    assert f"task={failing}" in line and f"supervisor={_supervisor_of(settings, failing)}" in line
    assert "ValueError: unmeasurable" in line


def test_a_task_whose_samples_cannot_be_made_is_left_out_of_the_text_and_its_count(settings, monkeypatch, caplog):
    real = metrics._task

    def samples(out, d) -> None:
        real(out, d)  # some of its samples made, then it fails: none of them stays
        if d.row["task_id"] == "ended-b":
            raise KeyError("odd")

    monkeypatch.setattr(metrics, "_task", samples)
    caplog.set_level(logging.WARNING, logger="executor.observe.scrape")
    errors = TaskErrors()
    m = parse(metrics_text(Reader(settings), EVERYONE, 600.0, errors))
    assert {s.labels["task_id"] for s in m.samples("stoker_task_info")} == set(_but("ended-b"))
    assert m.value("stoker_observer_tasks") == 3
    assert m.value("stoker_observer_task_errors_total") == 1
    [line] = _warnings(caplog)
    assert "task=ended-b" in line and f"supervisor={_supervisor_of(settings, 'ended-b')}" in line
    assert "error=\"KeyError: 'odd'\"" in line


def test_the_observer_s_own_counts_are_told_only_to_a_viewer_who_sees_every_task(settings, monkeypatch):
    real = scrape.inspect_sandbox
    monkeypatch.setattr(scrape, "inspect_sandbox", lambda sandbox, entry, *more: (
        real(sandbox, entry, *more) if entry.task_id != "ended-b" else 1 / 0))
    errors = TaskErrors()
    errors.total = 7  # earlier scrapes' errors
    reader = Reader(settings)
    everyone = parse(metrics_text(reader, EVERYONE, 600.0, errors))
    assert everyone.value("stoker_observer_task_errors_total") == 8  # and this one's
    assert everyone.value("stoker_observer_tasks") == 3
    assert everyone.value("stoker_observer_checkpoint_replays_total") == reader.views.read > 0
    assert everyone.value("stoker_observer_registry_unreadable_entries") == 0
    assert 0 < everyone.value("stoker_observer_scrape_duration_seconds") < 60
    mine = parse(metrics_text(reader, os.getuid() + 1, 600.0, errors))  # another user: none of the tasks...
    assert errors.total == 8  # ... so none of them read
    assert mine.value("stoker_observer_tasks") == 0 and mine.value("stoker_observer_scrape_duration_seconds") > 0
    for name in ("stoker_observer_task_errors_total", "stoker_observer_checkpoint_replays_total",
                 "stoker_observer_registry_unreadable_entries"):
        assert not mine.samples(name), name


def test_task_errors_are_each_counted_and_logged_once_per_task_and_supervisor(monkeypatch, caplog):
    monkeypatch.setattr(scrape, "MAX_LOGGED", 3)
    caplog.set_level(logging.WARNING, logger="executor.observe.scrape")
    errors = TaskErrors()
    for task, supervisor in (("t", "1-1"), ("t", "1-1"), ("t", "2-9"), ("u", "1-1"), ("u", "1-1")):
        errors.record(task, supervisor, OSError(5, "I/O error"))
    assert errors.total == 5
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.WARNING, None)] * 3
    assert [line.split(" error=")[0] for line in _warnings(caplog)] == [
        "observer_task_error task=t supervisor=1-1", "observer_task_error task=t supervisor=2-9",
        "observer_task_error task=u supervisor=1-1"]
    assert 'error="OSError: [Errno 5] I/O error"' in _warnings(caplog)[0]
    assert 'reason="left out of /metrics (every other task is exported); logged once per task"' in _warnings(caplog)[0]
    errors.record("v", "1-1", OSError())  # a fourth task: the three remembered are forgotten ...
    errors.record("t", "1-1", OSError())  # ... so the first is logged again
    errors.record("v", "1-1", OSError())
    assert [line.split(" error=")[0] for line in _warnings(caplog)[3:]] == [
        "observer_task_error task=v supervisor=1-1", "observer_task_error task=t supervisor=1-1"]


def test_a_task_error_s_traceback_is_logged_at_debug_only(caplog):
    caplog.set_level(logging.DEBUG, logger="executor.observe.scrape")
    try:
        raise RuntimeError("deep")
    except RuntimeError as exc:
        TaskErrors().record("t", "1-1", exc)
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[1].args == ("deep",)


def test_a_gone_task_a_new_observer_never_read_is_judged_by_its_entry(tmp_path):
    """Its sandbox deleted before this observer started: no view of its checkpoint was ever
    kept, so it has no last record; let go a moment ago, it is in the window."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=86400.0)
    registered_task(settings, tmp_path / "gone", "gone-e", RUNNING, alive=False, ended=True)
    shutil.rmtree(tmp_path / "gone")
    assert _scraped(settings, TaskErrors()) == {"gone-e": 0}
    assert _scraped(settings, TaskErrors(), later=3600.0) == {}
