"""Compaction (executor/task/compaction.py): fewer records, the same view.

The property: for every checkpoint a writer could have produced, replaying the compacted
records gives exactly the view the whole checkpoint gives. Checked on generated checkpoints
with small caps (so that every cap is hit often), and on long ones with the real caps."""
from __future__ import annotations

import contextlib
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.task import compaction
from executor.task import replay as replay_module
from executor.task.compaction import compact
from executor.task.records import SummaryRecord, UnreadableLine, parse
from executor.task.replay import RUNS_KEPT, Fold, replay

pytestmark = pytest.mark.timeout(60)

NAMES = ["web", "db", "cron", "side"]
STAGES = ["STARTING", "RUNNING", "KILLING", "FINISHED", "FAILED", "KILLED"]
PHASES = ["ACTIVE", "CLEANING", "FINALIZING", "SUCCESS", "FAILED", "KILLED"]


@contextlib.contextmanager
def small_caps():
    caps = {"HEALTH_HISTORY": 3, "RUNS_KEPT": 3, "ATTEMPTS_KEPT": 3, "TRANSITIONS_KEPT": 4,
            "PROCESSES_KEPT": 3}
    with mock.patch.multiple(replay_module, **caps), \
            mock.patch.multiple(compaction, LOOSE_KEPT=2, **caps):
        yield


@st.composite
def checkpoints(draw):
    """Records as a writer writes them: headers, then task / phase / health / announce / restart records
    and the runs of each process in order (a run starts, then ends: restarted or for good)."""
    docs = []
    wall = 0.0
    for attempt in range(draw(st.integers(0, 6)) + 1):
        names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
        if attempt or draw(st.booleans()):
            docs.append({"kind": "header", "task": "t.0", "job_key": "c/r/e/t", "task_id": f"t-{attempt}",
                         "sandbox": "/sb", "ports": {}, "supervisor_pid": 100 + attempt,
                         "processes": names, "health": "check", "wall": wall})
        runs = {}  # process -> (last run, running)
        for step in draw(st.lists(st.integers(0, 10), max_size=40)):
            wall += 1.0
            name = draw(st.sampled_from(NAMES))
            last, running = runs.get(name, (-1, False))
            if step <= 3 and not running:
                docs.append(proc(name, last + 1, "WAITING", "RUNNING", wall, pid=1000 + int(wall)))
                runs[name] = (last + 1, True)
            elif step <= 5 and running:
                to, outcome = draw(st.sampled_from([("WAITING", "FAILED"), ("WAITING", "LOST"),
                                                    ("WAITING", "RESTARTED"), ("SUCCESS", "SUCCESS"),
                                                    ("FAILED", "FAILED"), ("KILLED", "KILLED")]))
                docs.append(proc(name, last, "RUNNING", to, wall, exit_code=3, outcome=outcome))
                runs[name] = (last, False)
            elif step == 6 and not running:
                docs.append(proc(name, None if last < 0 else last, "WAITING", "KILLED", wall))
            elif step == 7:
                docs.append({"kind": "health", "outcome": draw(st.sampled_from(["passed", "failed"])),
                             "reason": f"attempt {wall}", "latency_secs": 0.001,
                             "state": draw(st.sampled_from(["STARTING", "RUNNING", "FAILED", None])),
                             "attempts": int(wall), "consecutive_failures": 0,
                             "consecutive_successes": 1, "wall": wall})
            elif step == 8:
                docs.append({"kind": "task", "from": "", "to": draw(st.sampled_from(STAGES)),
                             "reason": f"at {wall}", "wall": wall})
            elif step == 9 and draw(st.booleans()):
                docs.append({"kind": "restart", "delay_secs": wall, "reason": f"at {wall}", "wall": wall})
            elif step == 10:
                docs.append({"kind": "announce", "path": "/aurora/r/e/j",
                             "member": draw(st.sampled_from([None, "member_0000000001"])),
                             "state": draw(st.sampled_from(["JOINING", "JOINED", "LEFT"])),
                             "connection": "CONNECTED", "reason": f"at {wall}", "since": wall, "wall": wall})
            else:
                docs.append({"kind": "phase", "from": "ACTIVE", "to": draw(st.sampled_from(PHASES)),
                             "reason": f"at {wall}", "wall": wall})
    return docs


def proc(name, run, frm, to, wall, pid=None, exit_code=None, outcome=None):
    return {"kind": "process", "process": name, "run": run, "from": frm, "to": to,
            "reason": f"{name} {run} {to} at {wall}", "pid": pid, "exit_code": exit_code,
            "signal": None, "outcome": outcome, "wall": wall}


def compacted(docs):
    records = [parse(d) for d in docs]
    return [r.to_json() for r in compact(r for r in records if r is not None)]


@pytest.mark.timeout(300)  # 4-5 s alone; past 60 s at a load of 15 under -n 2 (when it took 10)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints())
def test_a_compacted_checkpoint_replays_to_the_same_view(docs):
    with small_caps():
        once, view = compacted(docs), replay(docs)
        twice = compacted(once)
        assert replay(once) == view
        assert replay(twice) == view  # compacting again changes nothing seen
        assert len(twice) <= len(once)


def test_100000_health_attempts_compact_to_the_last_ten():
    docs = [{"kind": "header", "task": "t.0", "processes": ["web"], "wall": 0.0},
            proc("web", 0, "WAITING", "RUNNING", 0.5, pid=7)]
    docs += [{"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.001,
              "state": "RUNNING", "attempts": n, "consecutive_failures": 0,
              "consecutive_successes": n, "wall": float(n)} for n in range(1, 100_001)]
    out = compacted(docs)
    assert [d["kind"] for d in out] == ["header", "summary", "process"] + ["health"] * 10
    view = replay(out)
    assert view == replay(docs)
    assert view.health.attempts == 100_000 and view.last_wall == 100_000.0


def test_a_crash_looping_process_keeps_its_last_runs_and_counts_the_others():
    docs = [{"kind": "header", "task": "t.0", "processes": ["web"], "wall": 0.0}]
    for run in range(300):
        docs.append(proc("web", run, "WAITING", "RUNNING", 2.0 * run, pid=run + 10))
        docs.append(proc("web", run, "RUNNING", "WAITING", 2.0 * run + 1, exit_code=1, outcome="FAILED"))
    out = compacted(docs)
    (summary,) = [parse(d) for d in out if d["kind"] == "summary"]
    assert summary == SummaryRecord(earlier_runs={"web": 300 - RUNS_KEPT})
    (web,) = replay(out).processes
    assert web.restarts == 299 and web.earlier_runs == 280 and len(web.runs) == RUNS_KEPT
    assert web.runs[0].run == 280 and replay(out) == replay(docs)


def test_old_attempts_are_counted_and_numbering_goes_on():
    docs = []
    for attempt in range(50):
        docs.append({"kind": "header", "task": "t.0", "task_id": f"t-{attempt}", "processes": [],
                     "wall": float(attempt)})
        docs.append({"kind": "task", "from": "NEW", "to": "FAILED", "reason": f"#{attempt}",
                     "wall": attempt + 0.5})
    out = compacted(docs)
    view = replay(out)
    assert view == replay(docs)
    assert view.earlier_attempts == 30 and view.attempt == 50 and view.task_id == "t-49"
    assert [a.number for a in view.attempts] == list(range(31, 51))
    # the first kept attempt's summary counts the dropped attempts; the others' count none
    summaries = [parse(d) for d in out if d["kind"] == "summary"]
    assert [s.earlier_attempts for s in summaries] == [30] + [0] * 19


def health(n, state):
    return {"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.001, "state": state,
            "attempts": n, "consecutive_failures": 0, "consecutive_successes": n, "wall": float(n)}


@pytest.mark.parametrize("states, shown", [
    (["FAILED"] + [None] * 10, "FAILED"),  # the state only a dropped record holds
    (["FAILED", "RUNNING"] + [None] * 10, "RUNNING"),  # the last of the dropped states
    (["FAILED", None] + [None] * 10, "FAILED"),  # a dropped record without a state changes nothing
    (["FAILED"] + [None] * 9 + ["RUNNING"], "RUNNING"),  # a kept state wins
])
def test_the_health_state_dropped_records_left_is_kept(states, shown):
    docs = [{"kind": "header", "task": "t.0", "processes": [], "health": "check", "wall": 0.0}]
    docs += [health(n, state) for n, state in enumerate(states, start=1)]
    once = compacted(docs)
    assert [d["kind"] for d in once] == ["header", "summary"] + ["health"] * 10
    assert replay(once).attempts[-1].health.state == shown == replay(docs).attempts[-1].health.state
    twice = compacted(once + [health(len(states) + 1, None)])  # written on after a compaction
    assert replay(twice).attempts[-1].health.state == shown


def test_a_process_the_view_does_not_keep_leaves_no_records():
    docs = [{"kind": "header", "task": "t.0", "processes": ["web", "db"], "wall": 0.0}]
    for n, name in enumerate(["web", "db", "cron", "side"]):
        docs.append(proc(name, 0, "WAITING", "RUNNING", 1.0 + n, pid=100 + n))
    docs.append({"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "", "wall": 9.0})
    with small_caps():  # three processes per attempt
        out = compacted(docs)
        assert [d["process"] for d in out if d["kind"] == "process"] == ["web", "db", "cron"]
        assert replay(out) == replay(docs)


def test_the_last_record_is_kept_even_when_the_view_ignores_it():
    docs = [{"kind": "header", "task": "t.0", "processes": ["web"], "wall": 0.0},
            proc("web", 5, "WAITING", "RUNNING", 1.0),
            proc("web", 2, "RUNNING", "FAILED", 9.0)]  # out of order: the view ignores it
    out = compacted(docs)
    assert out[-1]["wall"] == 9.0 and replay(out).last_wall == 9.0 == replay(docs).last_wall


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoints(), st.data())
def test_a_fold_fed_in_parts_gives_each_time_the_view_of_a_whole_replay(docs, data):
    """The observer's kept fold (`replay.Fold`, `viewcache.py`) goes on with what a checkpoint
    grew by: fed in parts, with damaged records among them (their numbers and the 'N more'
    count go on), its view after each part is that of a replay of all fed so far."""
    damaged = [UnreadableLine("{torn"), {"kind": "health", "outcome": 7}, {"kind": "header", "ports": 5}]
    for _ in range(data.draw(st.integers(0, 30))):
        docs.insert(data.draw(st.integers(0, len(docs))), data.draw(st.sampled_from(damaged)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(docs)), max_size=5)))
    with small_caps():
        fold, start = Fold(), 0
        for cut in [*cuts, len(docs)]:
            fold.feed(docs[start:cut])
            start = cut
            assert fold.view() == replay(docs[:cut]), cut
