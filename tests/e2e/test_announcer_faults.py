"""Service discovery under ZooKeeper's failures, end to end: `stoker executor` under the
agent simulator and `stoker run --announce`, against a real ZooKeeper server
(tests/support/zookeeper.py) that is stalled (SIGSTOP), gone, or a socket that never
answers. What must hold: the kill's and the close's waits stay within the agent's shutdown
grace, and the task's state is never held by ZooKeeper.
"""
from __future__ import annotations

import pytest

from tests.e2e.test_service_discovery import launch, readers, root, write_job  # noqa: F401
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


def running_and_announced(private_zk, readers, agent, tmp_path, **launch_args) -> None:  # noqa: F811
    """ZooKeeper started, `stoker executor` launched by `agent` with a task of one `sleep`
    that announces, the task RUNNING and its member listed."""
    private_zk.start()
    top = root()
    path = f"{top}/www-data/prod/hello"
    launch(agent, write_job(tmp_path, private_zk.ensemble, path, health=None, cmdline="sleep 60"),
           private_zk.ensemble, top, **launch_args)
    agent.wait_for_state("task-1", "TASK_RUNNING", 20)
    reader = readers(private_zk.ensemble)
    wait_for(lambda: reader.members(path), 10, message="the member")
    reader.close()


def test_executor_a_shutdown_while_zookeeper_is_stalled_ends_within_the_agents_grace(
        private_zk, readers, agent, tmp_path):  # noqa: F811
    """SHUTDOWN with a 3 s grace while ZooKeeper answers nothing: the leave takes a quarter
    of the time left (it took 2 s, the processes' whole SIGTERM grace), the close what is
    left at most (it took 3 s more: the agent destroyed the executor)."""
    running_and_announced(private_zk, readers, agent, tmp_path)
    with private_zk.stalled():
        agent.shutdown()  # the simulator destroys the executor 3 s later, as an agent would
        assert agent.wait_exit(20) == 0
    log = agent.executor_log()
    assert not agent.destroyed_after_grace, log[-3000:]
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert "announcer_leave_timeout" in log and "its grace is over" not in log, log[-3000:]


def test_executor_a_kill_then_a_shutdown_while_zookeeper_is_stalled_keep_the_grace_end(
        private_zk, readers, agent, tmp_path):  # noqa: F811
    """KILL, its leave waiting on a stalled ZooKeeper, then SHUTDOWN with a 2.5 s grace: the
    leave ends a quarter of what is left later (0.5 s), and the processes' SIGTERM comes
    well before the grace end (1.5 s). Was: the leave, begun with no exit time, ran on to
    it (2 s), past the grace end: every process SIGKILLed ("its grace is over")."""
    running_and_announced(private_zk, readers, agent, tmp_path, shutdown_grace="2500ms")
    with private_zk.stalled():
        agent.kill("task-1", grace_secs=10.0)
        wait_for(lambda: "to=LEAVING" in agent.executor_log(), 10, message="the KILL's leave")
        agent.shutdown()
        assert agent.wait_exit(20) == 0
    log = agent.executor_log()
    assert not agent.destroyed_after_grace, log[-3000:]
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    assert "its grace is over" not in log, log[-3000:]


def test_executor_a_shutdown_with_a_short_grace_leaves_before_the_grace_end(
        private_zk, readers, agent, tmp_path):  # noqa: F811
    """SHUTDOWN with a 1.1 s grace while ZooKeeper answers nothing: the processes' grace ends
    0.1 s after it (1 s before the agent's), and the leave takes a quarter of that at most
    (0.025 s), so the SIGTERM comes before the grace end. Was: a quarter of what was left
    of the exit time (0.6 s), 0.15 s, past it (under ~1.17 s of grace it always was)."""
    import re

    running_and_announced(private_zk, readers, agent, tmp_path, shutdown_grace="1100ms")
    with private_zk.stalled():
        agent.shutdown()
        assert agent.wait_exit(20) == 0
    log = agent.executor_log()
    [within] = re.findall(r"the member was not deleted within ([0-9.e+-]+) s", log) or [None]
    assert within is not None and float(within) <= 0.25 * (1.1 - 1.0) + 1e-4, log[-3000:]


def _announced_run(private_zk, readers, tmp_path):  # noqa: F811
    """`stoker run --announce` of a `sleep 60` job, its member listed in ZooKeeper."""
    from tests.support.stoker_proc import StokerProcess

    private_zk.start()
    path = f"{root()}/www-data/prod/hello"
    job = write_job(tmp_path, private_zk.ensemble, path, health=None, cmdline="sleep 60",
                    announce=f"Announcer(zk_path='{path}')")
    run = StokerProcess(["run", str(job), "--announce", private_zk.ensemble, "--sandbox", str(tmp_path / "sb")],
                        tmp_path)
    try:
        reader = readers(private_zk.ensemble)
        wait_for(lambda: reader.members(path), 20, message="the member")
        reader.close()
    except BaseException:
        run.close()
        raise
    return run


def test_run_a_stop_while_zookeeper_is_stalled_says_what_it_waits_for(private_zk, readers, tmp_path):  # noqa: F811
    """`stoker run --announce` stopped (SIGTERM) while ZooKeeper answers nothing: the leave
    waits up to 2 s and the close up to 3 s more, each said on a line as the wait begins
    (docs/contract.md §1: while a stop waits, a line says for what and how long)."""
    import re
    import signal
    import time

    from tests.support.stoker_proc import kill_leftovers, task_pids

    run = _announced_run(private_zk, readers, tmp_path)
    try:
        with private_zk.stalled():
            asked_at = time.monotonic()
            run.signal(signal.SIGTERM)
            assert run.wait(20) == 128 + signal.SIGTERM
            took = time.monotonic() - asked_at
        out = run.stdout()
    finally:
        run.close()
        kill_leftovers(task_pids(tmp_path / "sb"))
    assert took >= 1.5, out  # (the leave waited: ZooKeeper did not answer)
    assert "stop             announcer: leaving the ServerSet: waiting up to " in out, out
    lines = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3}  ", line)]
    for said, after in zip(lines, lines[1:]):  # every silence of the stop over 1 s follows a line saying why
        gap = _secs(after) - _secs(said)
        assert gap < 1.0 or "stop             announcer: " in said, out


def _secs(line: str) -> float:
    hours, minutes, secs = line.split()[0].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def test_run_a_second_stop_signal_during_a_stalled_leave_skips_the_leave_and_the_close(
        private_zk, readers, tmp_path):  # noqa: F811
    """A second Ctrl-C while the stop's leave waits on a stalled ZooKeeper: every process is
    SIGKILLed at once and the waits left are skipped, the leave's and the close's, as the
    hint says (was: the leave waited on to its 2 s, the SIGKILL after it, then the close
    3 s more: 5 s in all for "kill every process at once")."""
    import signal

    from tests.support.stoker_proc import kill_leftovers, task_pids

    run = _announced_run(private_zk, readers, tmp_path)
    try:
        with private_zk.stalled():
            run.signal(signal.SIGINT)
            run.wait_output("announcer: leaving the ServerSet: waiting up to ")  # 0.2 s in; 1.8 s left
            run.signal(signal.SIGINT)
            assert run.wait(20) == 128 + signal.SIGINT
        out, err = run.stdout(), run.stderr()
    finally:
        run.close()
        kill_leftovers(task_pids(tmp_path / "sb"))
    leave_said = out.index("announcer: leaving the ServerSet: waiting up to ")
    assert "stop             now: second stop signal (SIGINT)" in out[leave_said:], out
    assert "the member was not deleted within" not in err, err  # the leave did not wait to its end
    assert "a kill at once skipped the wait for ZooKeeper" in err, err
    assert "ending the ZooKeeper session: waiting" not in out, out  # nor did the close wait
