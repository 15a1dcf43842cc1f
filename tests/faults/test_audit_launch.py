"""Issue 16, what the audit broke through LAUNCH: the real executor under the agent simulator.

- #12: a second LAUNCH with the id of the task that is running is a duplicate (an agent's
  retry, or a forged one): it is ignored. It used to send TASK_FAILED for the running task.
- #15: a LAUNCH carrying 40 MiB of TaskInfo.data took the executor from 36 MB to 260 MB of
  peak RSS, and one over 64 MiB broke the stream and was never answered. Records over 8 MiB
  are now dropped as they stream past (docs/mesos.md §4) and such a LAUNCH is answered
  TASK_FAILED naming its size, with the executor's peak RSS measured before and after; the
  largest LAUNCH that is still read costs a bounded multiple of its size.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from config.document import MAX_DOCUMENT_BYTES, encode
from config.loader import load_job
from executor.mesos.recordio import MAX_RECORD_BYTES
from tests.support.agent_sim import TERMINAL_STATES, make_task_info
from tests.support.stoker_proc import live, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]


def _sleeper(tmp_path: Path) -> bytes:
    path = tmp_path / "sleeper.aurora"
    path.write_text(
        "jobs = [Service(cluster='local', role='me', environment='test', name='sleeper',\n"
        "                task=Task(processes=[Process(name='sleep', cmdline='exec sleep 1000')],\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        "                lifecycle=DisableLifecycle)]\n")
    return encode(load_job(path))



# ---- #12: a duplicate LAUNCH ----

def test_a_duplicate_launch_is_ignored_and_the_running_task_is_left_alone(sim, tmp_path, figures):
    info = make_task_info("task-1", _sleeper(tmp_path))
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(info)
    sim.wait_for_state("task-1", "TASK_RUNNING", 20)
    pids = wait_for(lambda: task_pids(sim.sandbox), 10)
    before = sim.states("task-1")
    # The simulator books a LAUNCH as a new task: its history restarts with the duplicate.
    sim.launch(info)  # the same TaskInfo again
    sim.launch(make_task_info("task-1", b"{}"))  # same id, other data
    # Events are handled in order: the KILL comes after both duplicates were handled.
    sim.kill("task-1", grace_secs=1.0)
    sim.wait_for(lambda: TERMINAL_STATES & set(sim.states("task-1")), 20, "a terminal update")
    assert sim.wait_exit(15) == 0
    after = sim.states("task-1")
    figures.add("updates for task-1 after two duplicate LAUNCHes and a KILL", " ".join(after))
    assert before == ["TASK_STARTING", "TASK_RUNNING"], before
    assert after == ["TASK_KILLED"], after
    assert not live(pids)
    log = sim.executor_log()
    assert log.count("launch_duplicate") == 2, log[-3000:]



def test_a_launch_of_another_task_while_one_runs_fails_that_task_alone(sim, tmp_path):
    """docs/contract.md §6: "a second LAUNCH on the same executor": TASK_FAILED,
    REASON_TASK_INVALID, for the new task only, from the executor; the running one goes on."""
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(make_task_info("task-1", _sleeper(tmp_path)))
    sim.wait_for_state("task-1", "TASK_RUNNING", 20)
    sim.launch(make_task_info("task-2", _sleeper(tmp_path)))
    failed = sim.wait_for_state("task-2", "TASK_FAILED", 20)
    assert (failed.message, failed.reason, failed.source) == (
        "one task per executor: task task-1 is already running here", "REASON_TASK_INVALID", "SOURCE_EXECUTOR")
    assert sim.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]
    sim.kill("task-1", grace_secs=1.0)
    assert sim.wait_for_state("task-1", "TASK_KILLED", 20).message == "killed by the agent (KILL)"
    assert sim.wait_exit(15) == 0

# ---- #15: a huge LAUNCH costs no memory and is answered ----

MIB = 1024 * 1024
HUGE_DATA_BYTES = 40 * MIB  # TaskInfo.data as sent is its base64: 53 MiB
OVER_64_MIB_DATA_BYTES = 52 * MIB  # base64: 69 MiB, over the old 64 MiB record limit
RSS_GROWTH_LIMIT_BYTES = 24 * MIB


def _peak_rss(pid: int) -> int:
    """The most memory `pid` held (a process that has exited has no figure: the tests keep
    the executor alive, waiting for an ACK, until they have read it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.mark.parametrize("data_bytes", [HUGE_DATA_BYTES, OVER_64_MIB_DATA_BYTES],
                         ids=["40 MiB of data", "52 MiB of data (a 69 MiB record)"])
def test_a_huge_launch_is_refused_by_its_size_without_holding_it(sim, figures, data_bytes):
    # Made before the executor starts: its --launch-timeout (10 s from its start) ran out
    # while this process still encoded and measured 69 MiB on a loaded host, and it exited
    # before the LAUNCH came (the call took 10.4 s; 1.6 to 3.8 s in other runs).
    info = make_task_info("task-huge", b"\0" * data_bytes)
    record_bytes = len(json.dumps({"type": "LAUNCH", "launch": {"task": info}},
                                  separators=(",", ":")))
    proc = sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=15)
    sim.ack_mode = "hold"  # the executor waits for its TASK_FAILED's ACK: alive to be measured
    before = _peak_rss(proc.pid)
    sim.launch(info)
    failed = sim.wait_for_state("task-huge", "TASK_FAILED", 30)
    after = _peak_rss(proc.pid)
    sim.release_acks()
    del info
    figures.add(f"peak RSS of the executor, LAUNCH of {record_bytes / MIB:.0f} MiB",
                f"{before / 1e6:.0f} MB before, {after / 1e6:.0f} MB after")
    figures.add(f"answer to the {record_bytes / MIB:.0f} MiB LAUNCH", failed.message)
    assert sim.states("task-huge") == ["TASK_FAILED"]
    assert failed.reason == "REASON_TASK_INVALID"
    assert str(record_bytes) in failed.message, failed.message
    assert after - before <= RSS_GROWTH_LIMIT_BYTES, (before, after)
    assert len(sim.subscribes) == 1, "the executor dropped the stream and subscribed again"
    assert sim.wait_exit(15) == 0
    assert not (sim.sandbox / ".logs").exists()


def test_the_largest_launch_that_is_read_costs_a_bounded_amount_of_memory(sim, figures):
    # A task document one byte over its limit: the record (5.3 MiB) is read and parsed, and
    # the document refused by its size.
    proc = sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=15)
    sim.ack_mode = "hold"  # the executor waits for its TASK_FAILED's ACK: alive to be measured
    before = _peak_rss(proc.pid)
    info = make_task_info("task-big", b"\0" * (MAX_DOCUMENT_BYTES + 1))
    record_bytes = len(json.dumps({"type": "LAUNCH", "launch": {"task": info}},
                                  separators=(",", ":")))
    assert record_bytes <= MAX_RECORD_BYTES
    sim.launch(info)
    failed = sim.wait_for_state("task-big", "TASK_FAILED", 30)
    after = _peak_rss(proc.pid)
    sim.release_acks()
    figures.add(f"peak RSS of the executor, LAUNCH of {record_bytes / MIB:.1f} MiB (read, then "
                "refused)", f"{before / 1e6:.0f} MB before, {after / 1e6:.0f} MB after")
    assert f"over the {MAX_DOCUMENT_BYTES} byte limit" in failed.message, failed.message
    assert after - before <= 5 * record_bytes, (before, after, record_bytes)
    assert sim.wait_exit(15) == 0
