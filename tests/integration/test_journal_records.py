"""The task's journal (`executor/task/journal.py`) over a real checkpoint: each judged
health-check attempt as one record and one line at the level it deserves, the records held
while a full disk refuses them (a real tmpfs, filled) and bounded with the header kept first,
and the file kept beside the checkpoint. The health policy is the real one, fed attempts as
the owner feeds them (`executor/task/checks.py`)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from executor.events import HealthTransition, ProcessState, ProcessTransition
from executor.task import journal as journal_module
from executor.task.checkpoint import CHECKPOINT_DIR, CheckpointWriter, read_records
from executor.task.journal import Journal
from executor.task.records import HeaderRecord
from healthcheck.policy import Attempt, HealthPolicy
from tests.support.limits import fill, tmpfs

pytestmark = pytest.mark.timeout(60)

WALL = 1_700_000_000.0
HEADER = HeaderRecord(task="web.0", job_key="c/r/e/web", task_id="web-0-1", sandbox="/sb",
                      ports={}, supervisor_pid=4000, processes=("web",), wall=WALL)


def _run(journal: Journal, run: int) -> None:
    journal.transition(ProcessTransition("web", run, ProcessState.WAITING, ProcessState.RUNNING,
                                         f"starting run {run} " + "x" * 100), pid=1000 + run)


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "executor.task.journal" and r.getMessage().startswith(event)]


def _judged(journal: Journal, policy: HealthPolicy, attempt: Attempt, latency: float) -> None:
    """As the owner judges one attempt (`Checks.health`)."""
    before = policy.state
    verdict = policy.record(attempt)
    t = HealthTransition(before, verdict.state, policy.attempts, attempt.outcome, verdict.reason or attempt.reason)
    journal.health(policy, verdict, t, latency, attempt.reason)


def test_each_judged_attempt_is_one_record_and_one_line_at_its_level(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.task.journal")
    journal = Journal("web.0", wall_clock=lambda: WALL + 5)
    journal.open(CheckpointWriter(tmp_path, label="web.0"), HEADER)
    # one attempt of grace, then one failure counted before the task fails, one pass needed
    policy = HealthPolicy(initial_interval_secs=1.0, interval_secs=1.0, max_consecutive_failures=1,
                          min_consecutive_successes=1)
    for attempt, latency in ((Attempt.failed("refused"), 0.0012344), (Attempt.passed("200"), 0.5),
                             (Attempt.failed("timed out"), 1.25), (Attempt.snoozed(), 0.0),
                             (Attempt.passed("200"), 0.002), (Attempt.passed("200"), 0.003)):
        _judged(journal, policy, attempt, latency)
    journal.close()
    health = [r for r in read_records(tmp_path) if r["kind"] == "health"]
    assert [(r["outcome"], r["reason"], r["latency_secs"], r["state"], r["attempts"], r["consecutive_failures"],
             r["consecutive_successes"], r["wall"]) for r in health] == [
        ("failed", "refused", 0.001234, "STARTING", 1, 0, 0, WALL + 5),  # (grace: not counted)
        ("passed", "200", 0.5, "RUNNING", 2, 0, 1, WALL + 5),
        ("failed", "timed out", 1.25, "RUNNING", 3, 1, 0, WALL + 5),
        ("snoozed", "snoozed: .healthchecksnooze present", 0.0, "RUNNING", 4, 0, 1, WALL + 5),  # (a pass)
        ("passed", "200", 0.002, "RUNNING", 5, 0, 2, WALL + 5),
        ("passed", "200", 0.003, "RUNNING", 6, 0, 3, WALL + 5)]
    lines = _lines(caplog, "health_check ")
    # grace's failure INFO; a pass that moved the state DEBUG (the task's own line says it);
    # a counted failure WARNING; a snoozed attempt DEBUG and no recovery; the pass after the
    # failure INFO (it recovered), the next one DEBUG
    assert [level for level, _ in lines] == [logging.INFO, logging.DEBUG, logging.WARNING, logging.DEBUG,
                                             logging.INFO, logging.DEBUG]
    assert lines[2][1].startswith("health_check task=web.0 result=failed attempt=3 latency_ms=1250.0 state=RUNNING")
    assert "latency_ms=1.2 " in lines[0][1]


def test_records_a_full_disk_refuses_are_held_bounded_the_header_kept_first(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(journal_module, "MAX_HELD_RECORDS", 5)
    caplog.set_level(logging.INFO, logger="executor.task.journal")
    with tmpfs(tmp_path / "fs") as fs:
        journal = Journal("web.0", wall_clock=lambda: WALL)
        journal.open(CheckpointWriter(fs / "sandbox", label="web.0"), HEADER)
        filler = fill(fs)
        for run in range(8):  # nothing written, not even the header
            _run(journal, run)
            journal.flush()
        [(level, failed)] = _lines(caplog, "checkpoint_")
        assert level == logging.ERROR
        assert failed.startswith("checkpoint_write_failed task=web.0 error=") and "ENOSPC" in failed
        assert failed.endswith(' records_held=2 reason="kept in memory, written again at each step (every few '
                               'seconds once many are held) until it works"')
        filler.unlink()
        _run(journal, 8)
        journal.flush()
        records = read_records(fs / "sandbox")
        journal.close()
    assert [r["kind"] for r in records] == ["header"] + ["process"] * 5
    assert [r["pid"] for r in records[1:]] == [1004, 1005, 1006, 1007, 1008]  # the oldest runs dropped
    (level, recovered) = _lines(caplog, "checkpoint_")[1]
    assert level == logging.WARNING and recovered.startswith(
        "checkpoint_write_recovered task=web.0 records=6 records_lost=4 reason=\"written now, held since ")


def test_a_file_beside_the_checkpoint_is_written_once_it_is_open(tmp_path):
    journal = Journal("web.0", wall_clock=lambda: WALL)
    with pytest.raises(ValueError, match="^the checkpoint is not open$"):
        journal.replace_beside("held.json", b"{}")
    journal.open(CheckpointWriter(tmp_path, label="web.0"), HEADER)
    journal.replace_beside("held.json", b'{"a": 1}\n')
    journal.close()
    assert (Path(tmp_path) / CHECKPOINT_DIR / "held.json").read_bytes() == b'{"a": 1}\n'
