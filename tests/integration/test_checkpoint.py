"""The checkpoint on disk and `stoker status` formatting (its compaction:
test_checkpoint_compaction.py; finding and following run logs: tests/integration/test_tail.py)."""
import json
import os
import time

import pytest

from executor.cli.views import format_duration, format_status
from executor.host.clock import iso_time
from executor.host.truth import Truth
from executor.task import checkpoint
from executor.task.checkpoint import CheckpointError, CheckpointWriter, checkpoint_path, read_records
from executor.task.replay import replay

pytestmark = pytest.mark.timeout(10)

HEADER = {"kind": "header", "task": "hello.0", "job_key": "devcluster/www/prod/hello",
          "task_id": "hello-0-abc", "sandbox": "/sb", "ports": {"health": 31000, "http": 31001},
          "supervisor_pid": 4000, "processes": ["web"], "health": "HTTP GET /health"}


def test_records_round_trip_with_wall_times(tmp_path):
    writer = CheckpointWriter(tmp_path)
    before = time.time()
    writer.append(HEADER)
    writer.append({"kind": "task", "from": "", "to": "STARTING", "reason": "launched",
                   "wall": 12.5})
    writer.close()
    records = read_records(tmp_path)
    assert [r["kind"] for r in records] == ["header", "task"]
    assert before <= records[0]["wall"] <= time.time()
    assert records[1]["wall"] == 12.5
    assert {k: v for k, v in records[0].items() if k != "wall"} == HEADER
    assert checkpoint_path(tmp_path) == tmp_path / ".stoker" / "checkpoint.jsonl"


def test_every_record_is_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", spy)
    writer = CheckpointWriter(tmp_path)
    synced.clear()  # the directory's fsync at creation
    for i in range(3):
        writer.append({"kind": "task", "to": f"S{i}"})
        assert len(synced) == i + 1
    writer.append_many([{"kind": "task", "to": "A"}, {"kind": "task", "to": "B"}])
    assert len(synced) == 4  # one sync for the whole batch
    writer.close()
    assert [r["to"] for r in read_records(tmp_path)] == ["S0", "S1", "S2", "A", "B"]


def test_torn_last_line_is_skipped_and_the_next_writer_starts_a_new_line(tmp_path):
    writer = CheckpointWriter(tmp_path)
    writer.append(HEADER)
    writer.close()
    with open(checkpoint_path(tmp_path), "ab") as f:
        f.write(b'{"kind":"task","from":"STARTING","to":"RUN')  # the crash
    assert [r["kind"] for r in read_records(tmp_path)] == ["header"]
    writer = CheckpointWriter(tmp_path)
    writer.append({"kind": "task", "from": "", "to": "STARTING", "reason": "again"})
    writer.close()
    records = read_records(tmp_path)
    assert [r.get("reason") for r in records] == [None, "again"]


def test_no_checkpoint_reads_as_nothing(tmp_path):
    assert read_records(tmp_path / "missing") == []
    (tmp_path / "empty" / ".stoker").mkdir(parents=True)
    assert read_records(tmp_path / "empty") == []


def test_the_writer_makes_a_missing_sandbox(tmp_path):
    writer = CheckpointWriter(tmp_path / "new" / "sandbox")
    writer.append(HEADER)
    writer.close()
    assert [r["kind"] for r in read_records(tmp_path / "new" / "sandbox")] == ["header"]


def test_a_fifo_as_the_checkpoint_is_refused_by_the_writer_and_the_reader(tmp_path):
    (tmp_path / ".stoker").mkdir()
    os.mkfifo(checkpoint_path(tmp_path))
    for open_it in (CheckpointWriter, read_records):
        with pytest.raises(CheckpointError) as caught:
            open_it(tmp_path)
        assert str(caught.value) == (f"cannot open the checkpoint {checkpoint_path(tmp_path)}: "
                                     f"it is a FIFO, not a regular file")


def test_a_symlinked_checkpoint_directory_is_not_followed(tmp_path):
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    sandbox.mkdir()
    outside.mkdir()
    (sandbox / ".stoker").symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"\.stoker: it is a symlink, not a directory"):
        CheckpointWriter(sandbox)
    with pytest.raises(CheckpointError, match="symlink"):
        read_records(sandbox)
    assert not any(outside.iterdir())


def test_appending_after_close_is_refused(tmp_path):
    writer = CheckpointWriter(tmp_path)
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.append({"kind": "task"})


def test_status_shows_task_processes_and_health(tmp_path):
    writer = CheckpointWriter(tmp_path)
    for rec in [
        dict(HEADER, wall=1000.0),
        {"kind": "task", "from": "", "to": "STARTING", "reason": "launched", "wall": 1000.0},
        {"kind": "process", "process": "web", "run": 0, "from": "WAITING", "to": "RUNNING",
         "reason": "started", "pid": 4242, "exit_code": None, "signal": None, "wall": 1000.0},
        {"kind": "process", "process": "web", "run": 0, "from": "RUNNING", "to": "WAITING",
         "reason": "exit status 3; restarting", "pid": 4242, "exit_code": 3, "signal": None,
         "wall": 1010.0},
        {"kind": "process", "process": "web", "run": 1, "from": "WAITING", "to": "RUNNING",
         "reason": "started", "pid": 4250, "exit_code": None, "signal": None, "wall": 1015.0},
        {"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.0032,
         "state": "RUNNING", "attempts": 1, "consecutive_failures": 0,
         "consecutive_successes": 1, "wall": 1016.0},
        {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "health check passed",
         "wall": 1016.0},
    ]:
        writer.append(rec)
    writer.close()
    text = format_status(replay(read_records(tmp_path)), now_wall=1015.0 + 192)
    lines = text.splitlines()
    assert lines[0].startswith("task hello.0  key=devcluster/www/prod/hello  state=RUNNING")
    assert "ports: health=31000 http=31001" in text
    assert "reason: health check passed" in text
    row = next(line for line in lines if line.startswith("web "))
    assert row.split()[:7] == ["web", "RUNNING", "1", "4250", "-", "up", "3m12s"]
    assert row.split()[7] == "1"  # one restart
    assert "health: RUNNING (HTTP GET /health); attempts=1" in text
    assert "passed" in text and "3.2 ms" in text
    assert "containment:" not in text  # a checkpoint written before it was recorded
    json.dumps(text)  # plain text, printable


HEALTHY_THEN = [
    dict(HEADER, wall=1000.0),
    {"kind": "task", "from": "", "to": "STARTING", "reason": "launched", "wall": 1000.0},
    {"kind": "process", "process": "web", "run": 0, "from": "WAITING", "to": "RUNNING",
     "reason": "started", "pid": 4242, "exit_code": None, "signal": None, "wall": 1000.0},
    {"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.0032, "state": "RUNNING",
     "attempts": 1, "consecutive_failures": 0, "consecutive_successes": 1, "wall": 1001.0},
    {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "health check passed", "wall": 1001.0},
]
KILLED = [{"kind": "task", "from": "RUNNING", "to": "KILLING", "reason": "killed by the operator (stoker kill)",
           "ends_as": "KILLED", "wall": 1002.0},
          {"kind": "process", "process": "web", "run": 0, "from": "RUNNING", "to": "KILLED", "reason": "SIGTERM",
           "pid": 4242, "exit_code": None, "signal": 15, "wall": 1002.5},
          {"kind": "task", "from": "KILLING", "to": "KILLED", "reason": "killed by the operator (stoker kill)",
           "wall": 1002.5}]


@pytest.mark.parametrize("ended, truth, shown", [
    (False, None, "health: RUNNING (HTTP GET /health)"),
    (False, Truth(state="RUNNING", alive=True, ended=False), "health: RUNNING (HTTP GET /health)"),
    (True, None, "health: was:RUNNING (HTTP GET /health)"),  # the task ended: its check no longer runs
    (False, Truth(state="LOST", alive=False, ended=False), "health: was:RUNNING (HTTP GET /health)"),
    (False, Truth(state="RESTARTING", alive=True, ended=False), "health: was:RUNNING (HTTP GET /health)"),
], ids=["running", "running-checked", "killed", "lost", "restarting"])
def test_status_marks_a_health_verdict_whose_check_no_longer_runs_as_stoker_ps_does(tmp_path, ended, truth, shown):
    writer = CheckpointWriter(tmp_path)
    writer.append_many(HEALTHY_THEN + (KILLED if ended else []))
    writer.close()
    text = format_status(replay(read_records(tmp_path)), now_wall=1100.0, truth=truth)
    assert f"{shown}; attempts=1" in text


def test_status_shows_how_the_processes_are_contained(tmp_path):
    writer = CheckpointWriter(tmp_path)
    writer.append_many([dict(HEADER, wall=1000.0, containment="cgroup2 cgroup "
                             "/sys/fs/cgroup/stoker-ab (cgroup.kill)")])
    writer.close()
    text = format_status(replay(read_records(tmp_path)), now_wall=1010.0)
    assert "  containment: cgroup2 cgroup /sys/fs/cgroup/stoker-ab (cgroup.kill)" in text.splitlines()


def test_status_shows_the_supervisor_phase(tmp_path):
    writer = CheckpointWriter(tmp_path)
    writer.append_many([
        dict(HEADER, wall=1000.0),
        {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1000.0},
        {"kind": "task", "from": "STARTING", "to": "KILLING", "reason": "killed", "wall": 1001.0},
        {"kind": "phase", "from": "ACTIVE", "to": "CLEANING",
         "reason": "killed; stopping 1 running process: SIGTERM now, SIGKILL 5 s later",
         "wall": time.mktime((2026, 11, 28, 10, 15, 3, 0, 0, -1))},
    ])
    writer.close()
    text = format_status(replay(read_records(tmp_path)), now_wall=1010.0)
    assert "state=KILLING" in text.splitlines()[0]
    cleaning_at = time.mktime((2026, 11, 28, 10, 15, 3, 0, 0, -1))
    assert (f"  supervisor: CLEANING since {iso_time(cleaning_at)}: killed; stopping 1 running "
            f"process: SIGTERM now, SIGKILL 5 s later") in text.splitlines()
    assert iso_time(cleaning_at).startswith("2026-11-28T10:15:03")
    without = replay(read_records(tmp_path)[:-1])
    assert "supervisor:" not in format_status(without, now_wall=1010.0)
    same = read_records(tmp_path) + [
        {"kind": "phase", "from": "CLEANING", "to": "KILLED", "reason": "killed", "wall": 1003.0},
        {"kind": "task", "from": "KILLING", "to": "KILLED", "reason": "killed", "wall": 1003.0}]
    assert "supervisor:" not in format_status(replay(same), now_wall=1010.0)  # says nothing new


@pytest.mark.parametrize("secs, text", [(None, "-"), (3.24, "3.2s"), (245, "4m05s"),
                                        (7380, "2h03m"), (3 * 86400 + 4 * 3600, "3d04h")])
def test_durations_read_well(secs, text):
    assert format_duration(secs) == text


# ---- compaction on disk ----


STORY = [dict(HEADER, wall=1000.0),
         {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1000.0},
         {"kind": "process", "process": "web", "run": 0, "from": "WAITING", "to": "RUNNING",
          "reason": "started", "pid": 4242, "wall": 1000.0}]


def test_an_earlier_attempt_that_recorded_no_end_is_shown_lost_not_running(tmp_path):
    """A supervisor SIGKILLed (its last record RUNNING), then a re-run in the same sandbox:
    the first attempt is over (the second took the sandbox's lock), whatever it recorded."""
    writer = CheckpointWriter(tmp_path)
    writer.append_many([
        dict(HEADER, wall=1000.0),
        {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1000.0},
        {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "started", "wall": 1001.0},
        dict(HEADER, supervisor_pid=4001, wall=1100.0),
        {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1100.0},
        {"kind": "task", "from": "STARTING", "to": "FAILED", "reason": "failed", "wall": 1101.0},
        dict(HEADER, supervisor_pid=4002, wall=1200.0),
    ])
    writer.close()
    view = replay(read_records(tmp_path))
    lines = format_status(view, now_wall=1300.0).splitlines()
    assert [line.split(" (started")[0] for line in lines if "earlier attempt" in line] == [
        "  earlier attempt 1: LOST (recorded RUNNING)", "  earlier attempt 2: FAILED"]
    assert [a.ended_state for a in view.attempts] == [
        "LOST (recorded RUNNING)", "FAILED", "LOST (recorded nothing)"]


def test_an_earlier_attempt_whose_supervisor_died_while_killing_shows_the_kill_s_end(tmp_path):
    """Its KILLING record says how the kill ends the task; one written before it did: LOST."""
    writer = CheckpointWriter(tmp_path)
    writer.append_many([
        dict(HEADER, wall=1000.0),
        {"kind": "task", "from": "STARTING", "to": "KILLING", "reason": "disk limit", "wall": 1001.0,
         "ends_as": "FAILED"},
        dict(HEADER, supervisor_pid=4001, wall=1100.0),
        {"kind": "task", "from": "STARTING", "to": "KILLING", "reason": "killed", "wall": 1101.0},
        dict(HEADER, supervisor_pid=4002, wall=1200.0),
    ])
    writer.close()
    view = replay(read_records(tmp_path))
    assert [a.ended_state for a in view.attempts][:2] == [
        "FAILED (its supervisor died while killing)", "LOST (recorded KILLING)"]


def test_an_earlier_attempt_asked_for_by_its_task_id_shows_its_own_ports(tmp_path):
    """`stoker status OLD_TASK_ID`: the attempt its registry entry names, with the ports
    its header recorded, not those of the re-run that followed it in the sandbox."""
    from executor.host.entry import FrontEnd, RegistryEntry
    from executor.task.inspection import inspect_sandbox
    from executor.task.inspectionjson import status_json

    writer = CheckpointWriter(tmp_path)
    writer.append_many([
        dict(HEADER, wall=1000.0, task_id="hello-0-old", supervisor_start=7),
        {"kind": "task", "from": "NEW", "to": "RUNNING", "reason": "started", "wall": 1001.0},
        dict(HEADER, wall=1100.0, task_id="hello-0-new", supervisor_pid=4001, ports={"http": 32000}),
    ])
    writer.close()
    old = RegistryEntry(sandbox=str(tmp_path), supervisor_pid=4000, supervisor_start=7,
                        supervisor_boot="gone", front_end=FrontEnd.RUN, registered_wall=1000.0,
                        task_id="hello-0-old")
    inspection = inspect_sandbox(tmp_path, old)
    assert inspection.view is not None and inspection.view.attempt == 1
    text = format_status(inspection.view, 1200.0, inspection.truth)
    assert "  ports: health=31000 http=31001\n" in text
    assert status_json(inspection)["ports"] == {"health": 31000, "http": 31001}
    latest = inspect_sandbox(tmp_path)
    assert latest.view is not None and latest.view.ports == {"http": 32000}
    assert [a.ports for a in latest.view.attempts] == [{"health": 31000, "http": 31001}, {"http": 32000}]


def test_an_empty_batch_writes_nothing(tmp_path):
    """`append_many([])` is a batch of nothing (was: a TypeError, `max(0)`, the longest line
    of none)."""
    writer = CheckpointWriter(tmp_path)
    writer.append_many([])
    writer.append_many(STORY)
    writer.close()
    assert read_records(tmp_path)[0]["kind"] == "header"
