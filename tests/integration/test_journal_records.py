"""The task's journal (`executor/task/journal.py`) over a real checkpoint: each judged
health-check attempt as one record and one line at the level it deserves, the records held
while a full disk refuses them (a real tmpfs, filled) and bounded with the header kept first,
and the file kept beside the checkpoint. The health policy is the real one, fed attempts as
the owner feeds them (`executor/task/checks.py`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest

from executor.events import (
    ExitStatus,
    HealthTransition,
    PhaseTransition,
    ProcessState,
    ProcessTransition,
    RunOutcome,
    TaskPhase,
    TaskStage,
    TaskState,
    TaskTransition,
)
from executor.host.identity import own_identity
from executor.host.sandbox import HELD_FILE
from executor.task import journal as journal_module
from executor.task.checkpoint import CHECKPOINT_DIR, CheckpointWriter, read_records
from executor.task.journal import Journal, header_record
from healthcheck.checkers import TcpChecker
from healthcheck.policy import Attempt, HealthPolicy
from tests.support.journalsteps import HEADER, WALL, start_run
from tests.support.limits import fill, tmpfs
from tests.support.owner_rig import job

pytestmark = pytest.mark.timeout(60)


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
    assert lines[2][1] == ('health_check task=web.0 result=failed attempt=3 latency_ms=1250.0 state=RUNNING '
                           'reason="health check failed, 1 of 1 consecutive failures tolerated '
                           '(max_consecutive_failures=1): timed out"')
    assert "latency_ms=1.2 " in lines[0][1]


def test_a_pass_with_no_failure_before_it_is_a_debug_line(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.task.journal")
    journal = Journal("web.0", wall_clock=lambda: WALL)
    journal.open(CheckpointWriter(tmp_path, label="web.0"), HEADER)
    policy = HealthPolicy(initial_interval_secs=1.0, interval_secs=1.0, max_consecutive_failures=1,
                          min_consecutive_successes=2)
    _judged(journal, policy, Attempt.passed("200"), 0.001)  # STARTING still: one pass of two
    journal.close()
    assert [level for level, _ in _lines(caplog, "health_check ")] == [logging.DEBUG]


def test_records_a_full_disk_refuses_are_held_bounded_the_header_kept_first(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(journal_module, "MAX_HELD_RECORDS", 5)
    caplog.set_level(logging.INFO, logger="executor.task.journal")
    with tmpfs(tmp_path / "fs") as fs:
        journal = Journal("web.0", wall_clock=lambda: WALL + 7)
        journal.open(CheckpointWriter(fs / "sandbox", label="web.0"), HEADER)
        filler = fill(fs)
        for run in range(8):  # nothing written, not even the header
            start_run(journal, run)
            journal.flush()
        [(level, failed)] = _lines(caplog, "checkpoint_")
        assert level == logging.ERROR
        assert failed.startswith("checkpoint_write_failed task=web.0 error=") and "ENOSPC" in failed
        assert failed.endswith(' records_held=2 reason="kept in memory, written again at each step (every few '
                               'seconds once many are held) until it works"')
        filler.unlink()
        start_run(journal, 8)
        journal.flush()
        records = read_records(fs / "sandbox")
        journal.close()
    assert [r["kind"] for r in records] == ["header"] + ["process"] * 5
    assert [r["pid"] for r in records[1:]] == [1004, 1005, 1006, 1007, 1008]  # the oldest runs dropped
    assert records[0]["wall"] == WALL + 7 and records[0]["boot"] > 0  # stamped as it opened
    (level, recovered) = _lines(caplog, "checkpoint_")[1]
    assert level == logging.WARNING and recovered.startswith(
        "checkpoint_write_recovered task=web.0 records=6 records_lost=4 reason=\"written now, held since ")


def test_once_the_header_is_written_the_bound_drops_the_oldest_records_and_each_failure_counts_anew(
        tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(journal_module, "MAX_HELD_RECORDS", 3)
    caplog.set_level(logging.INFO, logger="executor.task")
    with tmpfs(tmp_path / "fs") as fs:
        journal = Journal("web.0", wall_clock=lambda: WALL)
        journal.open(CheckpointWriter(fs / "sandbox", label="web.0"), HEADER)
        journal.flush()  # the header, written
        run, dropped = 0, []
        for _ in range(2):  # the disk fills twice, 5 records held each time, the 2 oldest dropped
            filler = fill(fs)
            journal.keep_held(fs / "sandbox", "m4rk3r", {42: 7 + run})
            failures = len(_lines(caplog, "checkpoint_write_failed"))
            while len(_lines(caplog, "checkpoint_write_failed")) == failures and run < 500:
                start_run(journal, run)  # until a step's write needs a page the disk cannot give
                journal.flush()
                run += 1
            for _ in range(4):
                start_run(journal, run)
                journal.flush()
                run += 1
            dropped += [1000 + run - 5, 1000 + run - 4]  # the run that failed first, and the next
            filler.unlink()
            journal.flush()
        records = read_records(fs / "sandbox")
        journal.close()
    assert [r.get("pid") for r in records] == [None, *(p for p in range(1000, 1000 + run) if p not in dropped)]
    recovered = [text for _, text in _lines(caplog, "checkpoint_write_recovered")]
    assert [text.split(" reason=")[0] for text in recovered] == [
        "checkpoint_write_recovered task=web.0 records=3 records_lost=2"] * 2
    [unwritten] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("held_unwritten")]
    assert unwritten.startswith("held_unwritten task=web.0 reason=")


def test_records_of_a_journal_never_opened_are_not_written_anywhere(tmp_path):
    journal = Journal("web.0", wall_clock=lambda: WALL)
    start_run(journal, 0)
    journal.flush()
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_records_a_closed_checkpoint_refuses_are_lost_with_one_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.task.journal")
    writer = CheckpointWriter(tmp_path, label="web.0")
    journal = Journal("web.0", wall_clock=lambda: WALL)
    journal.open(writer, HEADER)
    writer.close()
    start_run(journal, 0)
    journal.flush()
    journal.flush()  # nothing held: nothing more said
    start_run(journal, 1)
    journal.flush()
    lines = _lines(caplog, "checkpoint_")
    assert lines == [(logging.ERROR, f'checkpoint_write_failed task=web.0 error="ValueError: checkpoint '
                                     f'{writer.path} is closed" records_lost={n}') for n in (2, 1)]


def test_a_step_of_many_records_on_a_disk_that_never_failed_is_written_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "HELD_RETRY_FROM", 3)
    journal = Journal("web.0", wall_clock=lambda: WALL)
    journal.open(CheckpointWriter(tmp_path, label="web.0"), HEADER)
    for run in range(4):
        start_run(journal, run)
    journal.flush()
    assert len(read_records(tmp_path)) == 5
    journal.close()


def test_a_file_beside_the_checkpoint_is_written_once_it_is_open(tmp_path):
    journal = Journal("web.0", wall_clock=lambda: WALL)
    with pytest.raises(ValueError, match="^the checkpoint is not open$"):
        journal.replace_beside("held.json", b"{}")
    journal.open(CheckpointWriter(tmp_path, label="web.0"), HEADER)
    journal.replace_beside("held.json", b'{"a": 1}\n')
    journal.close()
    assert (Path(tmp_path) / CHECKPOINT_DIR / "held.json").read_bytes() == b'{"a": 1}\n'


def test_each_change_is_one_record_and_one_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.task.journal")
    journal = Journal("web.0", wall_clock=lambda: WALL + 1)
    journal.open(CheckpointWriter(tmp_path, label="web.0"), HEADER)
    R, W = ProcessState.RUNNING, ProcessState.WAITING
    journal.transition(ProcessTransition("web", 0, W, R, "starting run 0"), pid=1000)
    journal.transition(ProcessTransition("web", 0, R, W, "exit status 3: restarting", RunOutcome.FAILED),
                       pid=1000, status=ExitStatus(exit_code=3))
    journal.transition(ProcessTransition("web", 1, R, W, "killed by SIGKILL (nobody in the task sent it)",
                                         RunOutcome.LOST), pid=1001, status=ExitStatus(signal=9))
    journal.transition(ProcessTransition("web", 2, R, ProcessState.FAILED, "exit status 1", RunOutcome.FAILED),
                       pid=1002, status=ExitStatus(exit_code=1))
    journal.transition(ProcessTransition("cron", None, W, ProcessState.KILLED, "the task was killed"))
    journal.transition(PhaseTransition(TaskPhase.ACTIVE, TaskPhase.CLEANING, "a process failed"))
    journal.transition(TaskTransition(TaskStage.RUNNING, TaskStage.KILLING, "killing", ends_as=TaskState.FAILED))
    journal.close()
    records = [{k: v for k, v in r.items() if k != "kind"} for r in read_records(tmp_path)[1:]]
    assert records == [
        {"process": "web", "run": 0, "from": "WAITING", "to": "RUNNING", "reason": "starting run 0", "pid": 1000,
         "exit_code": None, "signal": None, "outcome": None, "wall": WALL + 1},
        {"process": "web", "run": 0, "from": "RUNNING", "to": "WAITING", "reason": "exit status 3: restarting",
         "pid": 1000, "exit_code": 3, "signal": None, "outcome": "FAILED", "wall": WALL + 1},
        {"process": "web", "run": 1, "from": "RUNNING", "to": "WAITING",
         "reason": "killed by SIGKILL (nobody in the task sent it)", "pid": 1001, "exit_code": None, "signal": 9,
         "outcome": "LOST", "wall": WALL + 1},
        {"process": "web", "run": 2, "from": "RUNNING", "to": "FAILED", "reason": "exit status 1", "pid": 1002,
         "exit_code": 1, "signal": None, "outcome": "FAILED", "wall": WALL + 1},
        {"process": "cron", "run": None, "from": "WAITING", "to": "KILLED", "reason": "the task was killed",
         "pid": None, "exit_code": None, "signal": None, "outcome": None, "wall": WALL + 1},
        {"from": "ACTIVE", "to": "CLEANING", "reason": "a process failed", "wall": WALL + 1},
        {"from": "RUNNING", "to": "KILLING", "reason": "killing", "ends_as": "FAILED", "wall": WALL + 1}]
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    # a run's failure is INFO (it restarts), a loss WARNING (as worth a look), a process failed for good WARNING
    assert [level for level, _ in lines] == [logging.INFO, logging.INFO, logging.WARNING, logging.WARNING,
                                             logging.INFO, logging.INFO, logging.INFO]
    assert [text for _, text in lines] == [
        'process_state task=web.0 process=web run=0 pid=1000 from=WAITING to=RUNNING reason="starting run 0"',
        'process_state task=web.0 process=web run=0 pid=1000 from=RUNNING to=WAITING outcome=FAILED '
        'reason="exit status 3: restarting"',
        'process_state task=web.0 process=web run=1 pid=1001 from=RUNNING to=WAITING outcome=LOST '
        'reason="killed by SIGKILL (nobody in the task sent it)"',
        'process_state task=web.0 process=web run=2 pid=1002 from=RUNNING to=FAILED outcome=FAILED '
        'reason="exit status 1"',
        'process_state task=web.0 process=cron from=WAITING to=KILLED reason="the task was killed"',
        'task_phase task=web.0 from=ACTIVE to=CLEANING reason="a process failed"',
        'task_state task=web.0 from=RUNNING to=KILLING reason=killing']


def test_the_close_writes_what_was_held_however_many_and_names_what_it_could_not(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(journal_module, "HELD_RETRY_FROM", 3)  # from 3 held, tried every 600 s only
    monkeypatch.setattr(journal_module, "HELD_RETRY_SECS", 600.0)
    caplog.set_level(logging.INFO, logger="executor.task.journal")
    with tmpfs(tmp_path / "fs") as fs:
        journal = Journal("web.0", wall_clock=lambda: WALL)
        journal.open(CheckpointWriter(fs / "one", label="web.0"), HEADER)
        filler = fill(fs)
        start_run(journal, 0)
        journal.flush()  # the header and run 0 held
        filler.unlink()
        start_run(journal, 1)
        journal.flush()  # 3 held: not tried, 600 s are not over
        assert read_records(fs / "one") == []
        for run in range(2, 5):
            start_run(journal, run)
            journal.flush()
        journal.close()  # tried, whatever the wait
        assert [r.get("pid") for r in read_records(fs / "one")] == [None, 1000, 1001, 1002, 1003, 1004]
        monkeypatch.setattr(journal_module, "MAX_HELD_RECORDS", 2)
        second = Journal("web.1", wall_clock=lambda: WALL)
        second.open(CheckpointWriter(fs / "two", label="web.1"), HEADER)
        filler = fill(fs)
        for run in range(3):  # the header and run 2 held, runs 0 and 1 dropped
            start_run(second, run)
            second.flush()
        second.close()
        filler.unlink()
    [(level, lost)] = _lines(caplog, "checkpoint_records_lost")
    assert level == logging.ERROR
    assert lost.startswith("checkpoint_records_lost task=web.1 records=4 error=") and "ENOSPC" in lost
    assert lost.endswith(' reason="the task ended while its checkpoint could not be written"')


def test_the_held_list_is_written_beside_the_checkpoint_once_there_is_one(tmp_path):
    journal = Journal("web.0", wall_clock=lambda: WALL)
    journal.keep_held(tmp_path, "m4rk3r", {42: 7})  # not open yet: nothing
    journal.open(CheckpointWriter(tmp_path, label="web.0"), HEADER)
    held = Path(tmp_path) / CHECKPOINT_DIR / HELD_FILE
    journal.keep_held(tmp_path, "m4rk3r", {})  # nothing held, no watchdog: no file
    assert not held.exists()
    journal.keep_held(tmp_path, "m4rk3r", {43: 8})  # something held, no watchdog (yet)
    assert json.loads(held.read_bytes())["held"][0][0] == 43 and "watchdog" not in json.loads(held.read_bytes())
    journal.keep_held(tmp_path, "m4rk3r", {}, watchdog=99)
    assert json.loads(held.read_bytes())["watchdog"] == 99 and json.loads(held.read_bytes())["marker"] == "m4rk3r"
    journal.keep_held(tmp_path, "m4rk3r", {42: 7}, watchdog=99)
    assert [pid for pid, _ in json.loads(held.read_bytes())["held"]] == [42]
    journal.close()


@pytest.mark.parametrize("checked", [False, True])
def test_the_header_names_the_task_its_supervisor_and_how_it_is_contained(checked):
    procs = SimpleNamespace(marker="m4rk3r", containment="cgroup2", cgroup="/sys/fs/cgroup/stoker-x", run_uid=1000)
    spec = attrs.evolve(job(), ports={"http": 31000, "health": 31001})
    header = header_record(spec, Path("/sb"), procs, TcpChecker(31001) if checked else None)
    me = own_identity()
    assert (header.task, header.job_key, header.task_id, header.sandbox, header.ports) == (
        spec.label, spec.key, "t-0", "/sb", {"http": 31000, "health": 31001})
    assert (header.supervisor_pid, header.supervisor_start, header.supervisor_boot) == (
        me.pid, me.start_ticks, me.boot_id)
    assert (header.marker, header.processes, header.containment, header.cgroup, header.run_uid) == (
        "m4rk3r", ("a",), "cgroup2", "/sys/fs/cgroup/stoker-x", 1000)
    assert header.health == ("TCP connect to localhost:31001" if checked else "none")
    uncontained = header_record(spec, Path("/sb"), SimpleNamespace(marker="m", containment="", cgroup=None,
                                                                   run_uid=None), None)
    assert uncontained.cgroup == ""



def test_the_end_is_said_recorded_only_once_a_write_put_its_record_in_the_checkpoint(tmp_path):
    """`recorded_end`, which the registry entry keeps (`stoker ps` does not replay a task whose
    entry says it): the terminal state of a task record written, not of one held or lost."""
    killing = TaskTransition(TaskStage.RUNNING, TaskStage.KILLING, "stop", ends_as=TaskState.KILLED)
    killed = TaskTransition(TaskStage.KILLING, TaskStage.KILLED, "killed")
    with tmpfs(tmp_path / "fs") as fs:
        journal = Journal("web.0", wall_clock=lambda: WALL)
        journal.open(CheckpointWriter(fs / "one", label="web.0"), HEADER)
        filler = fill(fs)  # before any write: the file has no block with room left
        journal.transition(killing)
        journal.transition(killed)
        journal.flush()
        assert journal.recorded_end == ""  # held: the disk is full
        filler.unlink()
        start_run(journal, 0)
        journal.flush()
        assert journal.recorded_end == "KILLED"
        journal.close()
        second = Journal("web.1", wall_clock=lambda: WALL)
        second.open(CheckpointWriter(fs / "two", label="web.1"), HEADER)
        second.transition(killing)
        second.flush()
        assert second.recorded_end == ""  # KILLING: no end yet
        second.close()
        third = Journal("web.2", wall_clock=lambda: WALL)
        third.open(CheckpointWriter(fs / "three", label="web.2"), HEADER)
        filler = fill(fs)
        third.transition(killed)
        third.close()  # lost with the disk full
        filler.unlink()
        assert third.recorded_end == ""
        assert read_records(fs / "three") == []
        assert [r.get("to") for r in read_records(fs / "one")] == [None, "KILLING", "KILLED", "RUNNING"]
