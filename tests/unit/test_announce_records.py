"""The announcement in the checkpoint and in what `stoker status` / `stoker ps` show.

The `announce` record (executor/task/records.py) round-trips and refuses damage; replay
shows the attempt's last one; compaction keeps it (replaying a compacted checkpoint with
announce records gives the same view); `next_record` decides what is worth a record and
since when; the status machine's `failed` (a missed first announcement) ends FAILED; the
status and ps texts say where the member is and since when.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.cli.ps import format_rows
from executor.cli.views import announcement_text, format_status
from executor.events import TaskPhase, TaskState
from executor.task.announcing import earliest, leave_within_secs, next_record
from executor.task.compaction import compact
from executor.task.membership import AnnouncerView, Connection, MemberState
from executor.task.records import AnnounceRecord, DamagedRecord, parse, parse_checked
from executor.task.replay import replay
from executor.task.status import TaskStatusMachine
from executor.task.taskview import AnnouncementView
from healthcheck.policy import HealthState, Verdict

PATH = "/aurora/www-data/prod/hello"
JOINED = AnnounceRecord(path=PATH, state=MemberState.JOINED, connection=Connection.CONNECTED,
                        member="member_0000000003", reason="created member_0000000003",
                        since=1000.5, wall=1000.6)


def view(state=MemberState.JOINED, member="member_0000000003", connection=Connection.CONNECTED,
         reason="created member_0000000003", since=1000.5) -> AnnouncerView:
    return AnnouncerView(path=PATH, member=member, state=state, reason=reason, since=since,
                         connection=connection, first_joined=True)


# ---- the record ----


def test_the_announce_record_round_trips_and_names_its_fields():
    doc = json.loads(json.dumps(JOINED.to_json()))
    assert doc == {"kind": "announce", "path": PATH, "member": "member_0000000003", "state": "JOINED",
                   "connection": "CONNECTED", "reason": "created member_0000000003", "since": 1000.5,
                   "wall": 1000.6}
    assert parse(doc) == JOINED
    assert parse({"kind": "announce", "path": PATH, "state": "LEFT", "connection": "LOST"}) == \
        AnnounceRecord(path=PATH, state=MemberState.LEFT, connection=Connection.LOST)


@pytest.mark.parametrize("change, words", [
    ({"state": "ALIVE"}, "'state' is 'ALIVE', not a MemberState name"),
    ({"connection": None}, "'connection' is missing"),
    ({"path": 7}, "'path' is an int, not text"),
    ({"member": ["x"]}, "'member' is a list, not text"),
    ({"since": -1}, "'since' is -1"),
])
def test_a_damaged_announce_record_is_named_and_skipped(change, words):
    doc = {**JOINED.to_json(), **change}
    damaged = parse_checked(doc)
    assert isinstance(damaged, DamagedRecord) and damaged.kind == "announce" and words in damaged.reason
    assert replay([doc]).announcement is None and len(replay([doc]).warnings) == 1


# ---- what gets recorded ----


def test_next_record_keeps_since_while_the_member_stays_and_skips_repeats():
    first = next_record(None, view())
    assert first == attr_free(JOINED)
    assert next_record(first, view()) is None  # nothing new
    suspended = next_record(first, view(connection=Connection.SUSPENDED, reason="dropped", since=1010.0))
    assert suspended is not None and suspended.since == 1000.5  # same member, same since
    left = next_record(suspended, view(state=MemberState.LEFT, member=None, since=1020.0))
    assert left is not None and left.since == 1020.0


def attr_free(record: AnnounceRecord) -> AnnounceRecord:
    return AnnounceRecord(path=record.path, state=record.state, connection=record.connection,
                          member=record.member, reason=record.reason, since=record.since)


def test_the_leave_waits_two_seconds_at_most_and_a_quarter_of_a_bound_on_the_stop():
    assert leave_within_secs(None) == 2.0
    assert leave_within_secs(20.0) == 2.0
    assert leave_within_secs(2.0) == 0.5
    assert leave_within_secs(0.0) == 0.0
    assert leave_within_secs(None, 2.5) == 0.625  # a quarter of the time left before the exit
    assert leave_within_secs(20.0, 4.0) == 1.0 and leave_within_secs(4.0, 20.0) == 1.0
    assert leave_within_secs(None, -1.0) == 0.0  # the exit time passed


def test_earliest_of_the_deadlines_that_are_set():
    assert earliest(None, None) is None
    assert earliest(5.0, None) == 5.0 and earliest(None, 3.0) == 3.0 and earliest(5.0, 3.0) == 3.0


def test_a_failed_first_announcement_kills_and_then_fails_the_task():
    m = TaskStatusMachine(health_checked=True)
    m.started()
    m.health(Verdict(state=HealthState.RUNNING, changed=True, reason="ok"))
    out = m.failed("Creating Announcer Serverset timed out.")
    assert out.kill_reason == "Creating Announcer Serverset timed out." and m.killing
    assert m.failed("again").kill_reason is None  # already killing
    end = m.task_ended(TaskPhase.KILLED, "killed")
    assert [(u.state, u.message, u.healthy) for u in end.updates] == [
        (TaskState.FAILED, "Creating Announcer Serverset timed out.", None)]
    assert m.failed("after the end").kill_reason is None


# ---- replay and compaction ----


def header(n: int) -> dict:
    return {"kind": "header", "task": "hello.3", "task_id": f"t-{n}", "processes": [], "wall": float(n)}


def test_replay_shows_the_last_announce_record_of_each_attempt():
    later = AnnounceRecord(path=PATH, state=MemberState.CLOSED, connection=Connection.CONNECTED,
                           reason="closed: the ZooKeeper session is ended", since=1005.0, wall=1005.0)
    docs = [header(1), JOINED.to_json(), later.to_json(), header(2)]
    v = replay(docs)
    assert v.announcement is None  # the new attempt has not announced yet
    assert v.attempts[0].announcement == AnnouncementView(
        path=PATH, member=None, state="CLOSED", connection="CONNECTED",
        reason="closed: the ZooKeeper session is ended", since_wall=1005.0)
    assert replay(docs[:2]).announcement.member_path == f"{PATH}/member_0000000003"


STATES = ["JOINING", "JOINED", "LEAVING", "LEFT", "CLOSED"]


@st.composite
def announcing_checkpoints(draw):
    """Attempts of health, task and announce records, in the order a writer writes them."""
    docs, wall = [], 0.0
    for attempt in range(draw(st.integers(1, 4))):
        docs.append(header(attempt))
        for kind in draw(st.lists(st.sampled_from(["announce", "health", "task"]), max_size=30)):
            wall += 1.0
            if kind == "announce":
                state = draw(st.sampled_from(STATES))
                docs.append({"kind": "announce", "path": PATH, "state": state,
                             "member": f"member_{int(wall):010d}" if state in ("JOINED", "LEAVING") else None,
                             "connection": draw(st.sampled_from(["CONNECTED", "SUSPENDED", "LOST"])),
                             "reason": f"at {wall}", "since": wall - draw(st.sampled_from([0.0, 0.5])),
                             "wall": wall})
            elif kind == "health":
                docs.append({"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.001,
                             "state": "RUNNING", "attempts": int(wall), "consecutive_failures": 0,
                             "consecutive_successes": 1, "wall": wall})
            else:
                docs.append({"kind": "task", "to": "RUNNING", "reason": f"at {wall}", "wall": wall})
    return docs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(announcing_checkpoints())
def test_a_compacted_checkpoint_keeps_the_announcement(docs):
    kept = [r.to_json() for r in compact(r for r in map(parse, docs) if r is not None)]
    assert replay(kept) == replay(docs)


def test_a_long_flapping_connection_compacts_to_its_last_records():
    docs = [header(0)]
    for n in range(1000):
        docs.append({**JOINED.to_json(), "connection": "SUSPENDED" if n % 2 else "CONNECTED",
                     "wall": 1001.0 + n})
    kept = [r.to_json() for r in compact(r for r in map(parse, docs) if r is not None)]
    assert [d["kind"] for d in kept] == ["header", "summary", "announce", "announce", "announce"]
    assert replay(kept) == replay(docs)


# ---- what stoker status and stoker ps print ----


def test_status_says_where_the_member_is_and_since_when():
    text = format_status(replay([header(0), JOINED.to_json()]), now_wall=1060.5)
    assert f"  announced: {PATH}/member_0000000003 since " in text
    assert "(1m00s ago) (ZooKeeper CONNECTED)" in text


def test_status_of_an_announcement_not_made_says_why():
    a = AnnouncementView(path=PATH, member=None, state="JOINING", connection="LOST", since_wall=1000.0,
                         reason="asked to join; waiting for ZooKeeper")
    assert announcement_text(a, 1002.0) == (
        f"announcement: JOINING at {PATH} since {iso(1000.0)} (2.0s ago): asked to join; waiting "
        "for ZooKeeper (ZooKeeper LOST)")
    idle = AnnouncementView(path=PATH, member=None, state="IDLE", connection="LOST", since_wall=1000.0,
                            reason="not asked to join yet")
    assert announcement_text(idle, 1002.0) == f"announcement: at {PATH} once RUNNING (not asked to join yet)"
    closed = AnnouncementView(path=PATH, member=None, state="CLOSED", connection="CONNECTED",
                              since_wall=1000.0, reason="closed: the ZooKeeper session is ended")
    assert announcement_text(closed, 1002.0).endswith("the ZooKeeper session is ended")


def test_a_lost_task_s_member_is_said_to_be_gone_with_its_supervisor():
    a = AnnouncementView(path=PATH, member="member_0000000003", state="JOINED", connection="CONNECTED",
                         since_wall=1000.0, reason="")
    assert announcement_text(a, 1002.0, lost=True).endswith(
        "(ZooKeeper CONNECTED; recorded: its session ended with the supervisor)")


def test_ps_prints_one_line_per_announcing_task_after_the_table():
    row = {"task_id": "hello-3-ab", "job_key": "c/www-data/prod/hello", "state": "RUNNING",
           "supervisor_pid": 42, "sandbox": "/sb", "started": 1000.0, "processes_running": 1,
           "processes_total": 1, "health": "RUNNING", "health_current": True, "failed_by_health_check": False,
           "announcement": {
               "path": PATH, "member": "member_0000000003", "member_path": f"{PATH}/member_0000000003",
               "state": "JOINED", "connection": "CONNECTED", "reason": "", "since": 1000.0,
               "since_iso": iso(1000.0)}}
    quiet = {**row, "task_id": "other-0-cd", "announcement": None}
    lines = format_rows([row, quiet], now_wall=1010.0).splitlines()
    assert lines[-1] == (f"hello-3-ab: announced: {PATH}/member_0000000003 since {iso(1000.0)} "
                         "(10.0s ago) (ZooKeeper CONNECTED)")
    assert len(lines) == 4  # the header, two rows, one announcement


def iso(wall: float) -> str:
    from executor.host.clock import iso_time

    return iso_time(wall)
