"""`stoker status`'s text whole (`executor/cli/views.format_status`, `format_unrecorded`), for
a task as its checkpoint replays it: running, checked running, LOST with its leftovers and
other users' processes or none, an attempt registered before its first record, a run ended
by a signal, and a sandbox whose supervisor recorded nothing. Times are the records' (1970,
UTC: the tests set TZ), ages from a fixed now."""
from __future__ import annotations

import textwrap
import time
from pathlib import Path

import attrs
import pytest

from executor.cli.views import Pending, format_status, format_unrecorded
from executor.host.truth import Truth
from executor.task.checkpoint import CheckpointWriter, read_records
from executor.task.inspection import Inspection
from executor.task.leftoverprocs import Foreign, Leftover
from executor.task.replay import replay

NOW = 1207.0
HEADER = {"kind": "header", "task": "hello.0", "job_key": "devcluster/www/prod/hello", "task_id": "hello-0-abc",
          "sandbox": "/sb", "ports": {"health": 31000, "http": 31001}, "supervisor_pid": 4000,
          "processes": ["web", "side"], "health": "HTTP GET /health"}
RECORDS = [
    dict(HEADER, wall=1000.0),
    {"kind": "task", "from": "", "to": "STARTING", "reason": "launched", "wall": 1000.0},
    {"kind": "process", "process": "web", "run": 0, "from": "WAITING", "to": "RUNNING", "reason": "started",
     "pid": 4242, "exit_code": None, "signal": None, "wall": 1000.0},
    {"kind": "process", "process": "web", "run": 0, "from": "RUNNING", "to": "WAITING",
     "reason": "exit status 3; restarting", "pid": 4242, "exit_code": 3, "signal": None, "wall": 1010.0},
    {"kind": "process", "process": "web", "run": 1, "from": "WAITING", "to": "RUNNING", "reason": "started",
     "pid": 4250, "exit_code": None, "signal": None, "wall": 1015.0},
    {"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.0032, "state": "RUNNING", "attempts": 1,
     "consecutive_failures": 0, "consecutive_successes": 1, "wall": 1016.0},
    {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "health check passed", "wall": 1016.0},
]
SIDE_KILLED = [
    {"kind": "process", "process": "side", "run": 0, "from": "WAITING", "to": "RUNNING", "reason": "started",
     "pid": 4260, "exit_code": None, "signal": None, "wall": 1001.0},
    {"kind": "process", "process": "side", "run": 0, "from": "RUNNING", "to": "FAILED", "reason": "killed by signal 9",
     "pid": 4260, "exit_code": None, "signal": 9, "wall": 1003.5},
]
RUNNING = Truth(state="RUNNING", alive=True, ended=False)
LOST = Truth(state="LOST", alive=False, ended=False, since_wall=1100.0)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def view_of(tmp_path: Path, records: list[dict]):
    writer = CheckpointWriter(tmp_path)
    writer.append_many(records)
    writer.close()
    return replay(read_records(tmp_path))


RUNNING_TOP = textwrap.dedent("""\
    task hello.0  key=devcluster/www/prod/hello  state=RUNNING  attempt=1
      reason: health check passed
      ports: health=31000 http=31001
      task_id: hello-0-abc  supervisor_pid: 4000  started: 1970-01-01T00:16:40+00:00 (3m27s ago)

    """)
HEALTH_END = textwrap.dedent("""\

    health: RUNNING (HTTP GET /health); attempts=1 consecutive_failures=0 consecutive_successes=1
      1970-01-01T00:16:56+00:00  passed       3.2 ms
    """)


@pytest.mark.parametrize(("records", "table"), [
    (RECORDS, textwrap.dedent("""\
        PROCESS  STATE    RUN  PID   EXIT  TIME      RESTARTS  REASON
        web      RUNNING  1    4250  -     up 3m12s  1         started
        side     WAITING  -    -     -     -         0
        """)),
    (RECORDS + SIDE_KILLED, textwrap.dedent("""\
        PROCESS  STATE    RUN  PID   EXIT      TIME      RESTARTS  REASON
        web      RUNNING  1    4250  -         up 3m12s  1         started
        side     FAILED   0    4260  signal 9  ran 2.5s  0         killed by signal 9
        """)),
], ids=["running", "a-run-ended-by-a-signal"])
def test_a_running_task_and_its_runs(tmp_path, records, table):
    assert format_status(view_of(tmp_path, records), NOW) == RUNNING_TOP + table + HEALTH_END


def test_a_running_task_checked_with_its_runs_started_by_the_kernel(tmp_path):
    assert format_status(view_of(tmp_path, RECORDS), NOW, RUNNING, starts={"web": 1014.0}) == textwrap.dedent("""\
        task hello.0  key=devcluster/www/prod/hello  state=RUNNING  attempt=1
          reason: health check passed
          ports: health=31000 http=31001
          task_id: hello-0-abc  supervisor_pid: 4000 (running)  started: 1970-01-01T00:16:40+00:00 (3m27s ago)

        PROCESS  STATE    RUN  PID   EXIT  TIME      RESTARTS  REASON
        web      RUNNING  1    4250  -     up 3m13s  1         started
        side     WAITING  -    -     -     -         0

        health: RUNNING (HTTP GET /health); attempts=1 consecutive_failures=0 consecutive_successes=1
          1970-01-01T00:16:56+00:00  passed       3.2 ms
        """)


LOST_TOP = textwrap.dedent("""\
        task hello.0  key=devcluster/www/prod/hello  state=LOST (supervisor gone since 1970-01-01T00:18:20+00:00 (1m47s ago), unknown); recorded RUNNING  attempt=1
          reason: health check passed
          ports: health=31000 http=31001
          task_id: hello-0-abc  supervisor_pid: 4000 (gone)  started: 1970-01-01T00:16:40+00:00 (3m27s ago)

        PROCESS  STATE    RUN  PID   EXIT  TIME  RESTARTS  REASON
        web      LOST     1    4250  -     -     1         started
        side     WAITING  -    -     -     -     0

        health: was:RUNNING (HTTP GET /health); attempts=1 consecutive_failures=0 consecutive_successes=1
          1970-01-01T00:16:56+00:00  passed       3.2 ms

        """)
LEFTOVERS = (Leftover(pid=4250, process="web", run=1, command="serve --port 31001"),
             Leftover(pid=4300, process="", run=None, command="daemon"))
FOREIGN = (Foreign(pid=5000, user="nobody (uid 65534)", command="sleep 1000"),)


@pytest.mark.parametrize(("leftovers", "foreign", "end"), [
    (LEFTOVERS, FOREIGN, textwrap.dedent("""\
        leftover processes (they carry the task's marker, or its watchdog held them; its supervisor is gone):
          PID   PROCESS  RUN  COMMAND
          4250  web      1    serve --port 31001
          4300  -        -    daemon
        other users' processes carrying the task's marker (not counted as its leftovers: the marker is anyone's to copy, and a root task's process may have changed user):
          PID   USER                COMMAND
          5000  nobody (uid 65534)  sleep 1000
        """)),
    ((), (), "leftover processes: none (nothing of the task's user carries the task's marker)\n"),
], ids=["leftovers", "none"])
def test_a_lost_task_with_its_leftovers_and_other_users_processes_or_none(tmp_path, leftovers, foreign, end):
    assert format_status(view_of(tmp_path, RECORDS), NOW, LOST, leftovers=leftovers, foreign=foreign) == LOST_TOP + end


def test_an_attempt_registered_before_its_first_record(tmp_path):
    pending = Pending(number=None, registered_wall=1200.0)
    assert format_status(view_of(tmp_path, RECORDS), NOW, RUNNING, pending=pending) == textwrap.dedent("""\
        task hello.0  key=devcluster/www/prod/hello  state=RUNNING  attempt=-
          ports: not recorded for this attempt yet
          task_id: hello-0-abc  supervisor_pid: 4000 (running)  started: 1970-01-01T00:20:00+00:00 (7.0s ago)
          earlier attempt 1: LOST (recorded RUNNING) (started 1970-01-01T00:16:40+00:00) health check passed

        no processes recorded for this attempt yet (its id is registered; its first record is not in the checkpoint)
        """)


def test_a_sandbox_whose_supervisor_recorded_nothing():
    lost = Inspection(sandbox=Path("/sb"), view=None, attempt=None, truth=LOST, problem="its supervisor recorded nothing",
                      supervisor_pid=4000, leftovers=(Leftover(pid=4300, process="", run=None, command="daemon"),))
    assert format_unrecorded(lost, "m") == textwrap.dedent("""\
        sandbox /sb  state=LOST
          its supervisor recorded nothing
          supervisor_pid: 4000 (gone)

        leftover processes (they carry the task's marker, or its watchdog held them; its supervisor is gone):
          PID   PROCESS  RUN  COMMAND
          4300  -        -    daemon
        """)
    assert format_unrecorded(lost, "") == textwrap.dedent("""\
        sandbox /sb  state=LOST
          its supervisor recorded nothing
          supervisor_pid: 4000 (gone)

        leftover processes: not known (no task marker was recorded)
        """)
    starting = attrs.evolve(lost, truth=Truth(state="NEW", alive=True, ended=False), supervisor_pid=None)
    assert format_unrecorded(starting, "m") == textwrap.dedent("""\
        sandbox /sb  state=NEW
          its supervisor recorded nothing
          supervisor_pid: - (running)
        """)
