"""Fault 1: N agent restarts during a running, HTTP-health-checked task lose no update and
re-send none after its acknowledgement.

The real `stoker executor` runs a service health-checked over HTTP under the agent simulator.
Each cycle launches a probe task (the executor rejects it with TASK_FAILED at once, one more
update in flight), then disturbs the agent: a crash and a restart on the same port (with or
without a 503 recovery period, and a re-registration window that answers 503 to everything but
SUBSCRIBE) or a graceful EOF; acknowledgements are immediate, delayed or held in turns, and
some probes are launched while the agent is down. At the end every update the executor queued
(its DEBUG log) must have reached the agent exactly once as recorded, none may have been
POSTed or carried by a SUBSCRIBE after its ACK was provably delivered, and the task must
still be RUNNING and passing its health checks.
"""
from __future__ import annotations

import random
import sys
import time

import pytest

from config.document import encode
from config.loader import load_job
from tests.support import proc_scan
from tests.support.agent_sim import make_task_info as make_task
from tests.support.fault_sizes import size
from tests.support.ports import free_ports
from tests.support.recording_agent import (
    RecordingAgent,
    acknowledged_updates,
    audit_updates,
    produced_updates,
)
from tests.support.shellwords import fake_sh, in_aurora
from tests.support.stoker_proc import checkpoint_records, task_pids
from tests.support.waiting import wait_for

RESTARTS = size(8, 50)
pytestmark = [pytest.mark.faults, pytest.mark.timeout(60 + 3 * RESTARTS)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
ACK_MODES = ("immediate", "hold", "delay")




def service_config(tmp_path):
    path = tmp_path / "web.aurora"
    path.write_text(
        f"web = Process(name='web', cmdline='exec {in_aurora(fake_sh())} "
        "--serve-health {{thermos.ports[health]}}')\n"
        "jobs = [Service(cluster='local', role='me', environment='test', name='web',\n"
        "                task=Task(processes=[web], finalization_wait=1,\n"
        "                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),\n"
        # a grace that outlasts the server's start on a loaded machine
        "                health_check_config=HealthCheckConfig(initial_interval_secs=2.0,\n"
        "                    interval_secs=0.1, timeout_secs=0.5, max_consecutive_failures=2),\n"
        "                lifecycle=DisableLifecycle)]\n")
    return path


@pytest.fixture
def agent(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    sim = RecordingAgent(sandbox=sandbox)
    yield sim
    sim.close()
    pids = task_pids(sandbox)
    markers = {proc_scan.task_marker_of(p) for p in pids} - {None}
    proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={markers.pop()}" if markers else
                            b"STOKER_FAULTS_NOTHING=1", pids)


def queued_for(sim, task_id: str) -> bool:
    return any(tid == task_id for tid, _state in produced_updates(sim.executor_log()).values())


def unacknowledged(sim) -> dict[str, tuple[str, str]]:
    log = sim.executor_log()
    acked = acknowledged_updates(log)
    return {u.hex(): what for u, what in produced_updates(log).items() if u not in acked}


def health_outcomes(sandbox) -> list[str]:
    return [r["outcome"] for r in checkpoint_records(sandbox) if r.get("kind") == "health"]


def test_agent_restarts_lose_no_update_and_resend_none_after_ack(agent, tmp_path, figures):
    rng = random.Random(6)
    sim = agent
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, backoff_max="200ms", recovery_timeout="10secs",
                        env_overrides={"STOKER_LOG_LEVEL": "DEBUG"})
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(make_task("task-1", encode(load_job(service_config(tmp_path))), ports=free_ports(2)))
    running = sim.wait_for_state("task-1", "TASK_RUNNING", 20)
    assert running.healthy is True

    probes: list[str] = []
    crashes = eofs = 0
    for cycle in range(RESTARTS):
        previous = sim.ack_mode
        sim.ack_mode = ACK_MODES[cycle % len(ACK_MODES)]
        if previous == "hold" and sim.ack_mode != "hold":
            sim.release_acks()
        probes.append(f"probe-{cycle}")
        sim.launch(make_task(probes[-1], b"{}"))
        if rng.random() < 0.5:
            # Settled (and ACKed, unless held); a second probe on the same stream then proves
            # that ACK was delivered before the disturbance.
            sim.wait_for(lambda: sim.updates(probes[-1]), 10, f"the update of {probes[-1]}")
            probes.append(f"probe-{cycle}-after")
            sim.launch(make_task(probes[-1], b"{}"))
        # The latest probe's update is produced, and maybe still in flight.
        wait_for(lambda: queued_for(sim, probes[-1]), 10, message=f"the update of {probes[-1]} queued")
        if cycle % 3 == 2:
            eofs += 1
            sim.close_stream(graceful=True)
        else:
            crashes += 1
            sim.crash()
            time.sleep(rng.uniform(0.0, 0.15))  # the agent is down: connections refused
            if rng.random() < 0.5:
                probes.append(f"probe-{cycle}-down")
                sim.launch(make_task(probes[-1], b"{}"))  # delivered after the resubscription
            sim.restart(recovering_secs=rng.choice([0.0, 0.05, 0.15]), reregistration_window_secs=1.0)
        sim.wait_subscribed(timeout_secs=10, count=cycle + 2)

    # Settle: ACK everything from now on, resubscribe once so held ACKs lost in a crash are
    # re-earned, then check that the next SUBSCRIBE carries nothing.
    sim.ack_mode = "immediate"
    sim.release_acks()
    sim.close_stream(graceful=True)
    sim.wait_subscribed(timeout_secs=10, count=RESTARTS + 2)
    try:
        wait_for(lambda: not unacknowledged(sim), 15)
    except AssertionError:
        raise AssertionError(f"updates never acknowledged: {unacknowledged(sim)}; agent saw "
                             f"{[(r.task_id, r.uuid.hex()) for r in sim.dropped_updates + sim.unknown_updates]} "
                             f"dropped/unknown") from None
    probes.append("probe-final")  # proves the ACKs of the settled stream were delivered
    sim.launch(make_task(probes[-1], b"{}"))
    sim.wait_for(lambda: sim.updates(probes[-1]), 10, "the update of probe-final")
    wait_for(lambda: not unacknowledged(sim), 10)
    sim.close_stream(graceful=True)
    last = sim.wait_subscribed(timeout_secs=10, count=RESTARTS + 3)
    assert last["subscribe"].get("unacknowledged_updates", []) == [], "acknowledged updates carried again"
    assert not sim.reregistration_failed

    # Still RUNNING and healthy: no further update, and fresh health checks pass.
    checks = len(health_outcomes(sim.sandbox))
    wait_for(lambda: len(health_outcomes(sim.sandbox)) >= checks + 3, 10, message="3 more health checks")
    assert health_outcomes(sim.sandbox)[-3:] == ["passed"] * 3
    assert sim.states("task-1") == ["TASK_STARTING", "TASK_RUNNING"]
    assert sim.updates("task-1")[-1].healthy is True

    sim.kill("task-1", grace_secs=0.5)
    sim.wait_for_state("task-1", "TASK_KILLED", 15)
    assert sim.wait_exit(15) == 0
    audit = audit_updates(sim, ["task-1", *probes], probes)
    figures.add("agent restarts", f"{RESTARTS} ({crashes} crashes with restart, {eofs} graceful EOFs)")
    figures.add("updates produced", f"{audit.produced} ({len(probes)} probe tasks)")
    figures.add("updates lost", len(audit.lost))
    figures.add("duplicates after ack", f"{len(audit.after_ack)} ({audit.proven_acks} ACK deliveries proven)")
    figures.add("re-sent before their ack (allowed)", audit.duplicates_before_ack)
    assert audit.produced >= RESTARTS + 3
    assert not audit.lost, [u.hex() for u in audit.lost]
    assert not audit.unexpected, [u.hex() for u in audit.unexpected]
    assert not audit.twice_in_history
    assert not audit.after_ack, audit.after_ack[:5]
    assert audit.proven_acks > 0
    for probe in probes:
        states = [r.state for r in sim.updates(probe)]
        assert states in (["TASK_FAILED"], ["TASK_DROPPED"]), (probe, states)
    assert not sim.ignored_updates and not sim.unknown_updates



@pytest.mark.timeout(60)
def test_an_update_answered_not_subscribed_is_carried_by_the_next_subscribe(agent, tmp_path):
    sim = agent
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox, backoff_max="200ms", recovery_timeout="10secs",
                        env_overrides={"STOKER_LOG_LEVEL": "DEBUG"})
    sim.wait_subscribed(timeout_secs=15)
    sim.launch(make_task("task-1", encode(load_job(service_config(tmp_path))), ports=free_ports(2)))
    sim.wait_for_state("task-1", "TASK_RUNNING", 20)
    sim.answer_as_unsubscribed()
    sim.launch(make_task("probe", b"{}"))  # rejected at once: its TASK_FAILED is POSTed, gets 403
    sim.wait_for(lambda: any(r.status == 403 for r in sim.calls("UPDATE")), 10, "a 403 to an UPDATE")
    # The sender handles one update at a time: once the next probe's update was POSTed, the
    # executor has finished with the first one's 403.
    sim.launch(make_task("probe-2", b"{}"))
    sim.wait_for(lambda: len([r for r in sim.calls("UPDATE") if r.status == 403]) >= 2, 10,
                 "a 403 to the second probe's UPDATE")
    sim.close_stream(graceful=True)  # the executor resubscribes
    body = sim.wait_subscribed(timeout_secs=10, count=2)
    carried = [u["status"]["task_id"]["value"] for u in body["subscribe"].get("unacknowledged_updates", [])]
    assert "probe" in carried, f"the 403'd update was dropped; the SUBSCRIBE carried {carried}"
    assert sim.states("probe") == ["TASK_FAILED"]
    sim.kill("task-1", grace_secs=0.5)
    sim.wait_for_state("task-1", "TASK_KILLED", 15)
