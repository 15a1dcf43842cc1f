"""TaskOwner driven one event at a time with fake ports and a fake clock, by tables.

Each row is a story: the job, the events the test posts (exits, kills, health results, the
lifecycle's end, time passing), and everything the owner did as a result, stamped with the
fake clock ("6 SIGTERM a[0]": six seconds after the start). No process, thread or socket:
`tests/integration/test_owner.py` runs the same owner over real processes. After the table,
the stories one test each; the owner's checkpoint: test_owner_checkpoint.py.
"""
from __future__ import annotations

import attrs
import pytest

from config.spec import ProcessSpec
from executor.events import (
    ExitStatus,
    HealthChecked,
    KillRequested,
    KillStep,
    LifecycleProgress,
    ProcessExited,
    TaskState,
    TimerFired,
)
from healthcheck.policy import Attempt
from tests.support.owner_rig import HEALTH, KILL, LIFECYCLE, TERM, OwnerRig, job
from tests.support.owner_steps import (
    START,
    Daemons,
    Deadline,
    Exit,
    Harness,
    Health,
    Kill,
    LifecycleEnds,
    Wait,
)

pytestmark = pytest.mark.timeout(10)


def kill_before_start(h: Harness) -> None:
    h.owner.request_kill("killed during launch", 0.5)


def shutdown_over_before_start(h: Harness) -> None:
    """A SHUTDOWN handed to the owner as it is made, its grace's end past (a slow launch)."""
    h.owner.request_kill("executor shutting down (SHUTDOWN)", 0.0, use_lifecycle=False, kill_all_at=h.clock.now - 1.0)


HEALTH_START = ["0 update STARTING", "0 spawn a[0]", "0 health start"]
FAILS = ProcessSpec(name="a", cmdline="x", max_failures=1, min_duration_secs=0.0)  # fails for good
SERVES = ProcessSpec(name="b", cmdline="serve", min_duration_secs=0.0)
FINAL = ProcessSpec(name="f", cmdline="clean", final=True, min_duration_secs=0.0)
FAILS_START = ["0 update STARTING", "0 spawn a[0]", "0 spawn b[0]", "0 update RUNNING"]

# name: (job, owner kwargs, steps, effects, final (state, message))
CASES = {
    "a KILL before the start starts and signals nothing": (
        job(lifecycle=LIFECYCLE), {}, [kill_before_start],
        ["0 update STARTING", "0 update KILLED", "0 procs close"],
        (TaskState.KILLED, "killed during launch")),
    "a stop before the start of a task whose runs an early start forked stops them: SIGTERM": (
        # A Ctrl-C while `stoker run` loaded: they were given up, SIGKILLed, never reported.
        job(), {"running_early": True}, [kill_before_start, Exit(sig=TERM)],
        ["0 update STARTING", "0 spawn a[0]", "0 update RUNNING", "0 SIGTERM a[0]",
         "0 update KILLED", "0 procs close"],
        (TaskState.KILLED, "killed during launch")),
    "a KILL runs the lifecycle endpoints first; their end brings SIGTERM, the grace SIGKILL": (
        job(lifecycle=LIFECYCLE), {}, [Wait(1), Kill(), Wait(1), LifecycleEnds(), Deadline(),
                                       Exit(sig=KILL)],
        START + ["1 lifecycle start", "2 SIGTERM a[0]", "7 SIGKILL a[0]",
                 "7 lifecycle: regular processes gone", "7 update KILLED", "7 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "endpoints that never finish still get SIGTERM once their waits are over": (
        job(lifecycle=LIFECYCLE), {}, [Wait(1), Kill(), Deadline(), Exit(sig=TERM)],
        START + ["1 lifecycle start", "6 SIGTERM a[0]", "6 lifecycle: regular processes gone",
                 "6 update KILLED", "6 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "a SHUTDOWN skips the lifecycle endpoints": (
        job(lifecycle=LIFECYCLE), {}, [Wait(1), Kill("executor shutting down (SHUTDOWN)", 2.0, False),
                                       Deadline(), Exit(sig=KILL)],
        START + ["1 SIGTERM a[0]", "3 SIGKILL a[0]", "3 update KILLED", "3 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a SHUTDOWN during the lifecycle stage cuts it short": (
        job(lifecycle=LIFECYCLE), {}, [Wait(1), Kill(), Wait(1), Kill("SHUTDOWN", 1.0, False),
                                       Deadline(), Exit(sig=KILL)],
        START + ["1 lifecycle start", "2 lifecycle cancel", "2 SIGTERM a[0]", "3 SIGKILL a[0]",
                 "3 update KILLED", "3 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "a second KILL shortens the grace; a third cannot lengthen it": (
        job(), {}, [Wait(1), Kill(grace=10.0), Wait(1), Kill(grace=2.0), Kill(grace=60.0),
                    Deadline(), Exit(sig=KILL)],
        START + ["1 SIGTERM a[0]", "4 SIGKILL a[0]", "4 update KILLED", "4 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "a health failure during a kill changes nothing: the task ends KILLED": (
        job(health=True), {}, [Health(True), Wait(1), Kill(), Health(False), Exit(sig=TERM)],
        HEALTH_START + ["0 update RUNNING", "1 health stop", "1 SIGTERM a[0]",
                        "1 update KILLED", "1 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "a failed health check kills the task, with the default grace, and fails it": (
        job(health=True), {"kill_grace_secs": 4.0}, [Health(True), Wait(1), Health(False),
                                                     Deadline(), Exit(sig=KILL)],
        HEALTH_START + ["0 update RUNNING", "1 health stop", "1 SIGTERM a[0]", "5 SIGKILL a[0]",
                        "5 update FAILED", "5 procs close"],
        (TaskState.FAILED, "health check failed: 1 consecutive health check failed "
                           "(max_consecutive_failures=0): HTTP 503")),
    "a second Ctrl-C during the endpoints: SIGKILL at once, the final process skipped": (
        job(ProcessSpec(name="a", cmdline="serve"), ProcessSpec(name="f", cmdline="x", final=True),
            lifecycle=LIFECYCLE),
        {}, [Wait(1), Kill("stopped by SIGINT"), Wait(0.5), Kill("second stop signal (SIGINT)", now=True),
             Exit(sig=KILL)],
        START + ["1 lifecycle start", "1.5 lifecycle cancel", "1.5 SIGKILL a[0]",
                 "1.5 update KILLED", "1.5 procs close"],
        (TaskState.KILLED, "stopped by SIGINT")),
    "a second Ctrl-C while the final processes run kills them": (
        job(ProcessSpec(name="a", cmdline="serve"), ProcessSpec(name="f", cmdline="x", final=True)),
        {}, [Wait(1), Kill("stopped by SIGINT"), Exit(sig=TERM), Wait(1),
             Kill("second stop signal (SIGINT)", now=True), Exit("f", sig=KILL)],
        START + ["1 SIGTERM a[0]", "1 spawn f[0]", "2 SIGKILL f[0]", "2 update KILLED", "2 procs close"],
        (TaskState.KILLED, "stopped by SIGINT")),
    "a bound on the stop cuts the endpoints' waits and puts SIGKILL at the bound": (
        job(lifecycle=LIFECYCLE), {"stop_within_secs": 2.0},
        [Wait(1), Kill(grace=30.0), Deadline(), Deadline(), Exit(sig=KILL)],
        START + ["1 lifecycle start (within 1 s)", "2 SIGTERM a[0]", "3 SIGKILL a[0]",
                 "3 lifecycle: regular processes gone", "3 update KILLED", "3 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "the stop timeout SIGKILLs what still runs, the final processes too, that long after the kill": (
        job(ProcessSpec(name="a", cmdline="serve"), ProcessSpec(name="f", cmdline="x", final=True)),
        {"stop_timeout_secs": 3.0},
        [Wait(1), Kill(grace=30.0), Exit(sig=TERM), Deadline(), Exit("f", sig=KILL)],
        START + ["1 SIGTERM a[0]", "1 spawn f[0]", "4 SIGKILL f[0]", "4 update KILLED", "4 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "the stop timeout cuts a grace longer than itself": (
        job(), {"stop_timeout_secs": 2.0},
        [Wait(1), Kill(grace=30.0), Deadline(), Exit(sig=KILL)],
        START + ["1 SIGTERM a[0]", "3 SIGKILL a[0]", "3 update KILLED", "3 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "a KILL while a task that failed for good stops its other processes: KILLED, the kill's words": (
        # Its FAILED was not reported yet: as Aurora's kill manager beats a runner still alive.
        job(FAILS, SERVES), {}, [Exit(code=3), Kill(grace=2.0), Deadline(), Exit("b", sig=KILL)],
        FAILS_START + ["0 SIGTERM b[0]", "2 SIGKILL b[0]", "2 update KILLED", "2 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "a SHUTDOWN while the final process of a task that failed for good runs: KILLED": (
        job(FAILS, FINAL), {}, [Exit(code=3), Kill("executor shutting down (SHUTDOWN)", 2.0, False),
                                Exit("f", code=0)],
        ["0 update STARTING", "0 spawn a[0]", "0 update RUNNING", "0 spawn f[0]", "0 update KILLED",
         "0 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a SHUTDOWN's grace end SIGKILLs the final processes it started": (
        # Was a timer thread of the executor's: none when no thread could start (ulimit -v, a
        # full pids cgroup), and the final processes outlived the agent's grace.
        job(ProcessSpec(name="a", cmdline="serve"), FINAL),
        {}, [Wait(1), Kill("executor shutting down (SHUTDOWN)", 2.0, False, kill_all_in=2.0), Exit(sig=TERM),
             Deadline(), Exit("f", sig=KILL)],
        START + ["1 SIGTERM a[0]", "1 spawn f[0]", "3 SIGKILL f[0]", "3 update KILLED", "3 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a SHUTDOWN while the final processes of a task that ended run: SIGKILL at its grace's end": (
        job(ProcessSpec(name="a", cmdline="x", min_duration_secs=0.0), FINAL),
        {}, [Exit(code=0), Wait(1), Kill("executor shutting down (SHUTDOWN)", 2.0, False, kill_all_in=2.0),
             Deadline(), Exit("f", sig=KILL)],
        START + ["0 spawn f[0]", "3 SIGKILL f[0]", "3 update KILLED", "3 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a SHUTDOWN taken after its grace's end (it came before the owner): SIGKILL in the same step": (
        # the stop is decided (and said) first, then the bound's SIGKILL: no final process starts
        job(ProcessSpec(name="a", cmdline="serve"), FINAL),
        {}, [Wait(1), Kill("executor shutting down (SHUTDOWN)", 2.0, False, kill_all_in=-0.5), Exit(sig=KILL)],
        START + ["1 SIGTERM a[0]", "1 SIGKILL a[0]", "1 update KILLED", "1 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a SHUTDOWN taken after its grace's end while a run waits to restart: no final process starts": (
        # Was: the final process was forked, then SIGKILLed in the same step (the bound's kill
        # came after the stop's decision, which started it): a cleanup cut at its first line.
        job(ProcessSpec(name="a", cmdline="x", max_failures=0, min_duration_secs=5.0), FINAL),
        {}, [Exit(code=1), Wait(1), Kill("executor shutting down (SHUTDOWN)", 0.0, False, kill_all_in=0.0)],
        START + ["1 update KILLED", "1 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a SHUTDOWN that came before the owner, its grace over when it is taken: nothing starts": (
        job(ProcessSpec(name="a", cmdline="serve"), FINAL), {}, [shutdown_over_before_start],
        ["0 update STARTING", "0 update KILLED", "0 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a kill taken past its kill_all_at starts no lifecycle endpoints: they would be cancelled at once": (
        job(ProcessSpec(name="a", cmdline="serve"), FINAL, lifecycle=LIFECYCLE),
        {}, [Wait(1), Kill(grace=2.0, kill_all_in=-0.5), Exit(sig=KILL)],
        START + ["1 SIGTERM a[0]", "1 SIGKILL a[0]", "1 update KILLED", "1 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "a second SHUTDOWN's later grace end cannot put off the first's": (
        job(ProcessSpec(name="a", cmdline="serve"), FINAL),
        {}, [Wait(1), Kill("executor shutting down (SHUTDOWN)", 2.0, False, kill_all_in=2.0), Exit(sig=TERM),
             Wait(1), Kill("executor shutting down (SHUTDOWN)", 2.0, False, kill_all_in=2.0), Deadline(),
             Exit("f", sig=KILL)],
        START + ["1 SIGTERM a[0]", "1 spawn f[0]", "3 SIGKILL f[0]", "3 update KILLED", "3 procs close"],
        (TaskState.KILLED, "executor shutting down (SHUTDOWN)")),
    "a KILL while a failed health check stops the task changes nothing: the check's FAILED": (
        # Aurora's status manager stops polling at the check's verdict: a later kill is not seen.
        job(health=True), {}, [Health(True), Wait(1), Health(False), Kill(grace=1.0), Exit(sig=TERM)],
        HEALTH_START + ["0 update RUNNING", "1 health stop", "1 SIGTERM a[0]", "1 update FAILED",
                        "1 procs close"],
        (TaskState.FAILED, "health check failed: 1 consecutive health check failed "
                           "(max_consecutive_failures=0): HTTP 503")),
    "an exit restarts the process; its success ends the task": (
        job(ProcessSpec(name="a", cmdline="x", max_failures=2, min_duration_secs=0.0)), {},
        [Wait(1), Exit(code=1), Wait(1), Exit(code=0)],
        START + ["1 spawn a[1]", "2 update FINISHED", "2 procs close"],
        (TaskState.FINISHED, "the only regular process finished successfully")),
    "a loss restarts without counting; failures past max_failures end the task": (
        job(ProcessSpec(name="a", cmdline="x", max_failures=1, min_duration_secs=0.0)), {},
        [Exit(sig=KILL), Exit(code=3)],
        START + ["0 spawn a[1]", "0 update FAILED", "0 procs close"],
        (TaskState.FAILED, "process 'a' failed: exit status 3 after 1 of max_failures=1 runs")),
    "a stop SIGTERMs the daemons a run left with the runs, and waits for them": (
        job(ProcessSpec(name="a", cmdline="x"), ProcessSpec(name="l", cmdline="y")), {},
        [Daemons(True), Exit("l", code=0), Wait(1), Kill(), Exit(sig=TERM), Daemons(False)],
        ["0 update STARTING", "0 spawn a[0]", "0 spawn l[0]", "0 update RUNNING",
         "1 SIGTERM a[0]", "1 SIGTERM daemons", "1 update KILLED", "1 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
    "daemons that outlive the grace are SIGKILLed at its end": (
        job(ProcessSpec(name="a", cmdline="x"), ProcessSpec(name="l", cmdline="y")), {},
        [Daemons(True), Exit("l", code=0), Wait(1), Kill(grace=2.0), Exit(sig=TERM), Deadline(),
         Daemons(False)],
        ["0 update STARTING", "0 spawn a[0]", "0 spawn l[0]", "0 update RUNNING",
         "1 SIGTERM a[0]", "1 SIGTERM daemons", "3 SIGKILL daemons", "3 update KILLED",
         "3 procs close"],
        (TaskState.KILLED, "killed by the agent (KILL)")),
}


@pytest.mark.parametrize("spec, kwargs, steps, effects, final", CASES.values(), ids=CASES.keys())
def test_owner_story(spec, kwargs, steps, effects, final):
    h = Harness(spec, **kwargs)
    if steps and steps[0] in (kill_before_start, shutdown_over_before_start):
        steps[0](h)
        steps = steps[1:]
    h.owner.start()
    h.step()
    for step in steps:
        step(h)
    assert h.effects.lines == effects
    assert h.done, "the task did not end"
    assert (h.owner.final_update.state, h.owner.final_update.message) == final
    assert h.checkpoint.closed and h.procs.closed


def test_health_attempts_log_what_changed_at_info_and_the_rest_at_debug(caplog):
    """A tolerated failure is a WARNING; the pass that ends it says so at INFO (it was DEBUG:
    no line said the checks recovered); a snoozed attempt is DEBUG (it was INFO, one line
    per interval for as long as the snooze file stays: the loop says once that it began)."""
    h = Harness(attrs.evolve(job(health=True), health=attrs.evolve(HEALTH, max_consecutive_failures=2)))
    h.owner.start()
    h.step()
    caplog.set_level("DEBUG", logger="executor.task.journal")
    for attempt in (Attempt.passed(), Attempt.failed("HTTP 503"), Attempt.passed(), Attempt.passed(),
                    Attempt.snoozed(), Attempt.snoozed()):
        h.post(HealthChecked(attempt, 0.001, h.clock.now))
    levels = [(r.levelname, r.getMessage().split(" result=")[1].split()[0]) for r in caplog.records
              if r.getMessage().startswith("health_check ")]
    assert levels == [("DEBUG", "passed"), ("WARNING", "failed"), ("INFO", "passed"),
                      ("DEBUG", "passed"), ("DEBUG", "snoozed"), ("DEBUG", "snoozed")], levels


@pytest.mark.parametrize("lifecycle", [None, LIFECYCLE], ids=["no lifecycle", "during the endpoints"])
def test_a_health_result_that_arrives_during_a_stop_is_not_recorded_as_a_verdict(caplog, lifecycle):
    # The attempt in flight when an operator's kill began ends against a service that is
    # being stopped (with a lifecycle, /quitquitquit has just made it exit). It used to be
    # judged: a WARNING "health_check ... state=FAILED" and a FAILED health record in the
    # checkpoint (`stoker status`: health FAILED) for a task the operator killed, whose
    # health check never failed it.
    h = Harness(job(health=True, lifecycle=lifecycle))
    h.owner.start()
    h.step()
    Health(True)(h)
    Kill("killed by the operator (stoker kill)")(h)
    caplog.set_level("DEBUG", logger="executor.task.journal")
    Health(False)(h)
    if lifecycle is not None:
        LifecycleEnds()(h)
    Exit(sig=TERM)(h)
    health = [r for r in h.checkpoint.records if r.get("kind") == "health"]
    assert [r["state"] for r in health] == ["RUNNING"], health
    assert not [r for r in caplog.records if "health_check" in r.getMessage()], caplog.text
    assert not [t for t in h.reporter.transitions if type(t).__name__ == "HealthTransition"
                and t.to.value == "FAILED"]
    assert h.owner.final_update.state is TaskState.KILLED


def test_the_owner_wakes_when_the_process_port_asks_to_be_idle_again():
    """The supervisor looks for orphans at fixed times after a run starts (a daemon's
    adoption wakes nothing): the owner's next deadline is the earlier of its own and that."""
    h = Harness(job(ProcessSpec(name="a", cmdline="x")))
    asks: list[float | None] = [0.05, None]
    h.procs.idle = lambda: asks.pop(0) if asks else None  # type: ignore[method-assign]
    h.owner.start()
    h.step()
    assert h.owner.next_deadline_at == pytest.approx(h.clock.now + 0.05)
    h.clock.advance_to(h.owner.next_deadline_at)
    h.post(TimerFired(at=h.clock.now))
    assert h.owner.next_deadline_at is None and not asks


def test_a_spawn_failure_is_a_failed_run_and_the_reason_reaches_the_update():
    """No process started, so no RUNNING (it was reported between the failed spawn and the
    FAILED: a full disk's `.logs`, a fork refused)."""
    h = Harness(job())
    h.procs._fail = ("a",)
    h.owner.start()
    h.step()
    assert h.done and h.effects.lines == ["0 update STARTING", "0 spawn a[0] failed", "0 update FAILED",
                                          "0 procs close"]
    assert h.owner.final_update.state is TaskState.FAILED
    assert "could not start: cannot start /bin/bash" in h.owner.final_update.message


def test_after_a_spawn_failure_the_run_that_starts_is_what_makes_the_task_running():
    h = Harness(job(ProcessSpec(name="a", cmdline="serve", max_failures=3, min_duration_secs=0.0)))
    failing = {"a"}
    h.procs._fail = failing  # (FakeProcs asks `name in` it at each spawn)
    spawn_many = h.procs.spawn_many

    def fails_once(runs):
        try:
            return spawn_many(runs)
        finally:
            failing.clear()

    h.procs.spawn_many = fails_once  # type: ignore[method-assign]
    h.owner.start()
    h.step()
    assert not h.done and h.effects.lines == ["0 update STARTING", "0 spawn a[0] failed", "0 spawn a[1]",
                                              "0 update RUNNING"]


def test_after_the_early_runs_first_step_a_kill_queued_as_a_restart_came_due_starts_no_run():
    """The early runs are adopted by a decision before the first step's events; every later
    step handles its events first: a kill queued as the back-off ran out ends the task with
    no new run started and SIGTERMed."""
    h = Harness(job(ProcessSpec(name="a", cmdline="serve", max_failures=0, min_duration_secs=5.0)),
                running_early=True)
    h.owner.start()
    h.step()
    Exit(code=1)(h)  # shorter than min_duration: its restart is due in 5 s
    assert h.owner.next_deadline_at == h.clock.now + 5.0
    h.clock.advance_to(h.owner.next_deadline_at)
    h.owner.post(KillRequested("killed by the agent (KILL)", 5.0, h.clock.now))
    h.step()
    assert h.done and h.effects.lines == ["0 update STARTING", "0 spawn a[0]", "0 update RUNNING",
                                          "5 update KILLED", "5 procs close"]


def test_an_unknown_event_is_logged_and_ignored(caplog):
    h = Harness(job())
    h.owner.start()
    h.step()
    h.post("not an event")
    assert "owner_event_ignored task=t.0 event_type=str" in caplog.text
    assert not h.done


def test_the_steps_of_a_stop_reach_the_reporter():
    """The console shows what a stop waits for: each endpoint's answer, then the signals."""
    h = Harness(job(lifecycle=LIFECYCLE))
    h.owner.start()
    h.step()
    Kill("stopped by SIGINT", grace=4.0)(h)
    h.post(LifecycleProgress("POST http://localhost:31000/quitquitquit answered HTTP 501; "
                             "not waiting: HTTP 501 says the service does not implement it", h.clock.now))
    LifecycleEnds()(h)
    steps = [(t.stage, t.reason) for t in h.reporter.transitions if isinstance(t, KillStep)]
    assert steps == [
        ("lifecycle", "POST http://localhost:31000/quitquitquit answered HTTP 501; not waiting: "
                      "HTTP 501 says the service does not implement it"),
        ("signals", "processes still running after /abortabortabort: SIGTERM now, SIGKILL in 4 s "
                    "unless every process has exited"),
    ]
    Kill("second stop signal (SIGINT)", now=True)(h)
    assert (h.reporter.transitions[-1].stage, h.reporter.transitions[-1].reason) == (
        "now", "second stop signal (SIGINT): SIGKILL to every process now; the waits left and the "
               "final processes are skipped")


@pytest.mark.parametrize("health", [True, False], ids=["shell check", "no check"])
def test_health_commands_are_killed_as_the_stop_begins_and_waited_for_before_the_end_is_reported(health):
    """A check under way when the task stops would decide nothing: the process port kills
    the checks' commands as the stop begins, before any signal, waiting for nothing; the
    owner waits for them (COMMAND_GONE_SECS at most) once, before it reports the terminal
    update, since nothing of the task may run once that is out. Without a check: neither."""
    from executor.task.checks import COMMAND_GONE_SECS

    h = Harness(job(health=health))
    h.owner.start()
    h.step()
    if health:
        Health(True)(h)
    Kill(grace=1.0)(h)
    Exit(sig=TERM)(h)
    assert h.reporter.updates[-1].state is TaskState.KILLED
    asked = [(within, lines[-1]) for within, lines in h.procs.commands_stopped]  # the wait, the latest act
    if not health:
        assert asked == []
        return
    assert asked[0] == (0.0, "0 health stop")  # before the SIGTERM
    waits = [n for n, (within, _) in enumerate(asked) if within > 0]
    assert len(waits) == 1 and asked[waits[0]] == (COMMAND_GONE_SECS, "0 SIGTERM a[0]")
    assert h.procs.commands_stopped[waits[0] + 1][1][-1] == "0 update KILLED"  # reported after it


def test_a_kill_after_a_failed_task_s_end_was_reported_changes_nothing():
    """The KILL came once the task's FAILED was out (every process gone), before the owner
    closed: the agent hears nothing more, and the end stays FAILED."""
    h = Harness(job(FAILS))
    h.owner.start()
    h.step()
    h.owner.post(ProcessExited("a", 0, pid=0, status=ExitStatus(exit_code=3), at=h.clock.now))
    assert h.owner.step(), "the failure did not end the task"
    h.owner.request_kill("killed by the agent (KILL)", 1.0)
    h.owner.close()
    assert [u.state for u in h.reporter.updates] == [TaskState.STARTING, TaskState.RUNNING, TaskState.FAILED]
    assert h.owner.final_update.message == "process 'a' failed: exit status 3 after 1 of max_failures=1 runs"
    assert not [line for line in h.effects.lines if "SIGTERM" in line or "SIGKILL" in line]


@pytest.mark.parametrize("beat_in, idle_in, due_in", [
    (0.5, None, 0.5),  # the heartbeat's first
    (10.0, None, 1.0),  # the kill's SIGKILL first
    (10.0, 5.0, 1.0),  # the process port's ask later than the SIGKILL
])
def test_the_owner_wakes_by_the_first_of_its_own_deadline_the_heartbeat_s_and_the_process_port_s(
        beat_in, idle_in, due_in):
    rig = OwnerRig()
    rig.own(job(), heartbeat=lambda: rig.clock.now + beat_in)
    rig.procs.idle = lambda: idle_in  # type: ignore[method-assign]
    rig.owner.start()
    rig.step()
    rig.owner.request_kill("stopped", 1.0, use_lifecycle=False)  # SIGTERM now, SIGKILL 1 s later
    rig.step()
    assert rig.owner.next_deadline_at == pytest.approx(rig.clock.now + due_in)
