"""Checkpoint records: each kind round-trips through JSON, and damaged input reads as None."""
from __future__ import annotations

import json
import math

import attrs
import pytest

from executor.events import ProcessState, RunOutcome, TaskPhase, TaskStage, TaskState
from executor.task.records import (
    DamagedRecord,
    HeaderRecord,
    HealthRecord,
    PhaseRecord,
    ProcessRecord,
    RestartRecord,
    SummaryRecord,
    TaskRecord,
    UnreadableLine,
    parse,
    parse_checked,
)
from healthcheck.policy import AttemptOutcome, HealthState

RECORDS = [
    HeaderRecord(task="web.0", job_key="c/r/e/web", task_id="web-0-1", sandbox="/sb",
                 ports={"health": 31000}, supervisor_pid=4000, supervisor_start=81234,
                 supervisor_boot="6f1c7a2e-boot", marker="web-0-1/2f9a", processes=("setup", "web"),
                 health="HTTP GET http://localhost:31000/health",
                 containment="cgroup2 cgroup /sys/fs/cgroup/stoker-1 (cgroup.kill)",
                 cgroup="/sys/fs/cgroup/stoker-1", wall=100.0, boot=8123.25, run_uid=1000),
    TaskRecord(from_=TaskStage.NEW, to=TaskStage.STARTING, reason="task launched", wall=100.0),
    PhaseRecord(from_=TaskPhase.ACTIVE, to=TaskPhase.CLEANING, reason="killed", wall=101.0),
    ProcessRecord(process="web", run=2, from_=ProcessState.RUNNING, to=ProcessState.WAITING,
                  reason="killed by SIGKILL; restarting (loss 1, ...)", pid=4242, signal=9,
                  outcome=RunOutcome.LOST, wall=102.0),
    ProcessRecord(process="late", run=None, from_=ProcessState.WAITING, to=ProcessState.KILLED,
                  reason="not started: the task is stopping"),
    HealthRecord(outcome=AttemptOutcome.FAILED, reason="HTTP 503", latency_secs=0.0032,
                 state=HealthState.STARTING, attempts=3, consecutive_failures=1,
                 consecutive_successes=0, wall=103.0),
    SummaryRecord(earlier_attempts=3, earlier_runs={"web": 280, "db": 0},
                  health_state=HealthState.RUNNING, wall=103.5),
    ProcessRecord(process="web", run=3, from_=ProcessState.RUNNING, to=ProcessState.WAITING,
                  reason="killed by SIGTERM after the operator's restart", pid=4300, signal=15,
                  outcome=RunOutcome.RESTARTED, wall=104.0),
    TaskRecord(from_=TaskStage.RUNNING, to=TaskStage.KILLING, reason="health check failed: HTTP 503",
               wall=105.0, ends_as=TaskState.FAILED),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json(record):
    doc = json.loads(json.dumps(record.to_json()))
    assert parse(doc) == record


def test_the_field_names_on_disk_are_the_ones_written_before_the_records_had_classes():
    assert RECORDS[1].to_json() == {"kind": "task", "from": "NEW", "to": "STARTING",
                                    "reason": "task launched", "wall": 100.0}
    assert set(RECORDS[3].to_json()) == {"kind", "process", "run", "from", "to", "reason", "pid",
                                         "exit_code", "signal", "outcome", "wall"}
    assert set(RECORDS[0].to_json()) == {"kind", "task", "job_key", "task_id", "sandbox", "ports",
                                         "supervisor_pid", "supervisor_start", "supervisor_boot",
                                         "marker", "processes", "health", "containment",
                                         "cgroup", "wall", "boot", "run_uid"}
    assert set(RECORDS[5].to_json()) == {"kind", "outcome", "reason", "latency_secs", "state",
                                         "attempts", "consecutive_failures",
                                         "consecutive_successes", "wall"}


def test_optional_fields_may_be_absent():
    assert parse({"kind": "task", "to": "RUNNING"}) == TaskRecord(from_=None, to=TaskStage.RUNNING)
    assert parse({"kind": "task", "from": "", "to": "STARTING"}).from_ is None
    assert parse({"kind": "process", "process": "web", "to": "RUNNING"}) == ProcessRecord(
        process="web", run=None, from_=None, to=ProcessState.RUNNING)
    assert parse({"kind": "header"}) == HeaderRecord()


@pytest.mark.parametrize("value", [None, "0", -1, 2**32 - 1, 2**40, 1.5, True, math.nan, [0]])
def test_a_header_s_run_uid_that_names_no_user_is_dropped_not_the_header(value):
    """`run_uid` came after the header's other fields: absent (an older Stoker's), or not a
    uid, the header is read without it (`stoker status` then takes the sandbox's owner), as
    its `boot` is; `(uid_t)-1` names no user."""
    doc = {**RECORDS[0].to_json(), "run_uid": value}
    assert parse(doc) == attrs.evolve(RECORDS[0], run_uid=None)
    assert "run_uid" not in HeaderRecord(task="web.0").to_json()  # not recorded: not written


def test_a_header_s_run_uid_reads_from_root_to_the_last_uid():
    for uid in (0, 2**32 - 2):
        assert parse({**RECORDS[0].to_json(), "run_uid": uid}).run_uid == uid


@pytest.mark.parametrize("doc", [
    {"kind": "task"},  # no `to`
    {"kind": "task", "to": "SLEEPING"},  # no such state
    {"kind": "task", "to": "RUNNING", "reason": 3},
    {"kind": "phase", "from": "ACTIVE", "to": "RUNNING"},  # a task state is not a phase
    {"kind": "process", "process": "web", "run": "zero", "to": "RUNNING"},
    {"kind": "process", "process": None, "to": "RUNNING"},
    {"kind": "process", "process": "", "to": "RUNNING"},
    {"kind": "process", "process": "web", "run": 1.5, "to": "RUNNING"},
    {"kind": "process", "process": "web", "run": True, "to": "RUNNING"},
    {"kind": "process", "process": "web", "to": "LOST"},  # an outcome, not a process state
    {"kind": "process", "process": "web", "to": "WAITING", "outcome": "MAYBE"},
    {"kind": "health", "wall": "noon", "outcome": "passed"},
    {"kind": "health", "outcome": "passed", "latency_secs": math.nan},
    {"kind": "health", "outcome": "passed", "latency_secs": math.inf},
    {"kind": "health", "state": "RUNNING"},  # no outcome
    {"kind": "header", "ports": {"http": "eighty"}},
    {"kind": "header", "ports": ["http"]},
    {"kind": "header", "processes": "web"},
    {"kind": "header", "processes": ["web", 7]},
    {"kind": "header", "supervisor_pid": -math.inf},
    {"kind": "summary", "earlier_attempts": -1},
    {"kind": "summary", "earlier_runs": {"web": -2}},
    {"kind": "summary", "earlier_runs": ["web"]},
    {"kind": "summary", "earlier_runs": {"web": 1.5}},
    {"kind": "summary", "health_state": "SICK"},
    {"kind": "from-the-future", "x": 1},  # unknown kinds: not damaged, just not ours
    {"kind": 7},
    {"no": "kind"},
    "not a dict",
    ["header"],
])
def test_damaged_input_reads_as_none(doc):
    assert parse(doc) is None


def test_non_finite_numbers_from_the_json_parser_are_refused():
    doc = json.loads('{"kind": "process", "process": "web", "to": "WAITING", "pid": NaN}')
    assert parse(doc) is None
    doc = json.loads('{"kind": "task", "to": "RUNNING", "wall": Infinity}')
    assert parse(doc) is None


@pytest.mark.parametrize("doc, words", [
    ({"kind": "task", "to": "RUNNING", "wall": 1e300}, "'wall' is 1e+300, outside 0 ... 253402300799"),
    ({"kind": "task", "to": "RUNNING", "wall": -1}, "'wall' is -1, outside"),
    ({"kind": "process", "process": "web", "to": "RUNNING", "pid": 10**23}, "'pid' is 100000000000000000000000, outside"),
    ({"kind": "process", "process": "web", "to": "RUNNING", "pid": 0}, "'pid' is 0, outside 1 ... 4194304"),
    # JSON's integers have any number of digits: past a float's (1.8e308) one raised OverflowError
    ({"kind": "task", "to": "RUNNING", "wall": 10**400}, "'wall' is 100000000000... (401 digits), outside"),
    ({"kind": "header", "ports": {"http": -10**400}}, "'http' is -10000000000... (402 digits), outside"),
    ({"kind": "process", "process": "web", "to": "FAILED", "exit_code": 256}, "'exit_code' is 256"),
    ({"kind": "process", "process": "web", "to": "FAILED", "signal": 65}, "'signal' is 65"),
    ({"kind": "process", "process": "web", "to": "FAILED", "run": -1}, "'run' is -1"),
    ({"kind": "header", "ports": {"http": 0}}, "'ports': 'http' is 0, outside 1 ... 65535"),
    ({"kind": "header", "supervisor_pid": 5_000_000}, "'supervisor_pid' is 5000000"),
    ({"kind": "health", "outcome": "passed", "attempts": -1}, "'attempts' is -1"),
    ({"kind": "health", "outcome": "passed", "latency_secs": -0.5}, "'latency_secs' is -0.5"),
    ({"kind": "task", "to": "SLEEPING"}, "'to' is 'SLEEPING', not a TaskStage name"),
    ({"kind": "task"}, "'to' is missing"),
    ({"no": "kind"}, "'kind' is missing"),
])
def test_a_number_out_of_range_is_damage_and_parse_checked_says_which(doc, words):
    assert parse(doc) is None
    damaged = parse_checked(doc)
    assert isinstance(damaged, DamagedRecord) and words in damaged.reason, damaged


def test_the_edges_of_each_range_are_accepted():
    doc = {"kind": "process", "process": "web", "run": 2**31 - 1, "to": "FAILED", "pid": 4194304,
           "exit_code": 255, "signal": 64, "wall": 253402300799}
    assert parse(doc) == ProcessRecord(process="web", run=2**31 - 1, from_=None,
                                       to=ProcessState.FAILED, pid=4194304, exit_code=255,
                                       signal=64, wall=253402300799.0)
    assert parse_checked({"kind": "from-the-future"}) is None
    assert isinstance(parse_checked(UnreadableLine('{"kind":"ta')), DamagedRecord)


# ---- what `stoker status` says about a damaged record (each reason names the field) ----

DAMAGE = {
    "no kind": ({"no": "kind"}, DamagedRecord("?", "'kind' is missing or not text")),
    "a kind that is no text": ({"kind": 7}, DamagedRecord("?", "'kind' is missing or not text")),
    "not an object": (["header"], DamagedRecord("?", "a JSON list, not an object")),
    "a torn line": (UnreadableLine('{"kind":"ta'),
                    DamagedRecord("?", "a torn line (a write cut short by a crash or a full disk) "
                                       "or not JSON: '{\"kind\":\"ta'")),
    "text that is a number": ({"kind": "task", "to": "RUNNING", "reason": 3},
                              DamagedRecord("task", "'reason' is an int, not text")),
    "a number that is text": ({"kind": "health", "outcome": "passed", "wall": "noon"},
                              DamagedRecord("health", "'wall' is a str, not a number")),
    "a fraction where a whole number belongs": (
        {"kind": "process", "process": "web", "run": 1.5, "to": "RUNNING"},
        DamagedRecord("process", "'run' is 1.5, not a whole number")),
    "a number shown in full up to 24 characters": (
        {"kind": "process", "process": "web", "to": "RUNNING", "pid": 10**23},
        DamagedRecord("process", "'pid' is 100000000000000000000000, outside 1 ... 4194304")),
    "a longer one rounded": (
        {"kind": "process", "process": "web", "to": "RUNNING", "pid": 10**24},
        DamagedRecord("process", "'pid' is 1e+24, outside 1 ... 4194304")),
    "a run past 2^31 - 1": (
        {"kind": "process", "process": "web", "to": "RUNNING", "run": 2**31},
        DamagedRecord("process", "'run' is 2147483648, outside 0 ... 2147483647")),
    "a latency past 10^9 s": (
        {"kind": "health", "outcome": "passed", "latency_secs": 2e9},
        DamagedRecord("health", "'latency_secs' is 2000000000.0, outside 0 ... 1000000000.0")),
    "a state name is cut at 40 characters": (
        {"kind": "phase", "to": "A" * 50},
        DamagedRecord("phase", f"'to' is {'A' * 40!r}, not a TaskPhase name")),
    "an empty process name": ({"kind": "process", "process": "", "to": "RUNNING"},
                              DamagedRecord("process", "'process' is empty")),
    "ports that are no map": ({"kind": "header", "ports": ["http"]},
                              DamagedRecord("header", "'ports' is not a map of names to numbers")),
    "processes that are no list of names": (
        {"kind": "header", "processes": ["web", 7]},
        DamagedRecord("header", "'processes' is not a list of names")),
    "earlier runs that are no map": (
        {"kind": "summary", "earlier_runs": ["web"]},
        DamagedRecord("summary", "'earlier_runs' is not a map of names to counts")),
    "an earlier run count that is no whole number": (
        {"kind": "summary", "earlier_runs": {"web": 1.5}},
        DamagedRecord("summary", "'earlier_runs': 'web' is 1.5, not a whole number")),
}


@pytest.mark.parametrize("doc, damaged", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_record_is_named_with_its_field(doc, damaged):
    assert parse_checked(doc) == damaged
    assert parse(doc) is None


def test_absent_and_empty_optional_fields_take_their_defaults():
    assert parse({"kind": "phase", "to": "CLEANING", "reason": ""}) == PhaseRecord(
        from_=None, to=TaskPhase.CLEANING, reason="", wall=None)
    assert parse({"kind": "health", "outcome": "passed"}) == HealthRecord(
        outcome=AttemptOutcome.PASSED, reason="", latency_secs=None, state=None, attempts=0,
        consecutive_failures=0, consecutive_successes=0, wall=None)
    assert parse({"kind": "health", "outcome": "snoozed", "state": ""}).state is None
    assert parse({"kind": "header", "health": ""}).health == "none"  # no checker
    assert parse({"kind": "header"}).health == "none"
    assert parse({"kind": "summary"}) == SummaryRecord(earlier_attempts=0, earlier_runs={},
                                                       health_state=None, wall=None)
    assert parse({"kind": "restart", "delay_secs": 0}) == RestartRecord(delay_secs=0.0, reason="", wall=None)
    assert parse({"kind": "process", "process": "web", "to": "KILLED", "run": None,
                  "outcome": ""}) == ProcessRecord(process="web", run=None, from_=None,
                                                   to=ProcessState.KILLED)


def test_a_killing_record_says_how_the_kill_ends_the_task_and_an_older_one_still_reads():
    """`ends_as`: the kill's cause (a supervisor that dies before the end leaves it as the
    task's end). A checkpoint written before it has none; one not FAILED or KILLED (damage,
    a newer Stoker's) is dropped, never the record."""
    assert RECORDS[-1].to_json() == {"kind": "task", "from": "RUNNING", "to": "KILLING", "wall": 105.0,
                                     "reason": "health check failed: HTTP 503", "ends_as": "FAILED"}
    older = {"kind": "task", "from": "RUNNING", "to": "KILLING", "reason": "killed", "wall": 1.0}
    assert parse(older) == TaskRecord(from_=TaskStage.RUNNING, to=TaskStage.KILLING, reason="killed", wall=1.0)
    for odd in ("FINISHED", "EXPLODED", 7, ""):
        assert parse({**older, "ends_as": odd}) == parse(older)


def test_a_from_naming_no_known_state_reads_as_not_known():
    """A newer Stoker's state as the state a change left: the change is read by where it went."""
    assert parse({"kind": "task", "from": "DRAINING", "to": "FINISHED"}) == TaskRecord(
        from_=None, to=TaskStage.FINISHED, reason="", wall=None)
    assert parse({"kind": "phase", "from": "DRAINING", "to": "CLEANING"}).from_ is None
    assert parse({"kind": "process", "process": "web", "from": "PAUSED", "to": "KILLED"}).from_ is None
    assert parse({"kind": "task", "from": 7, "to": "FINISHED"}) is None  # not a name at all


def test_a_boot_clock_stamp_that_cannot_be_read_drops_the_stamp_not_the_record():
    """The header starts an attempt and the restart schedules one: without the stamp the
    reader counts from the wall time, as for a record of an older Stoker."""
    assert parse({"kind": "header", "task": "web.0", "boot": "soon"}).boot is None
    assert parse({"kind": "restart", "delay_secs": 1.0, "boot": -5}).boot is None
    assert parse({"kind": "restart", "delay_secs": 1.0, "boot": 12.5}).boot == 12.5
