"""How a run ends (`executor/procs/draining.py`), with real runs in a supervisor of this
process: its exit posted with its run and time, one DEBUG line, or one ERROR line when the
owner's queue refuses it; a SIGKILL named the OOM killer's only when the count grew during
the run and the task did not send it; what an exit left and killed counted in a line; one
run's drain holding up no other's end; and a run that ended, drained or not, the
supervisor's no more once its exit is posted."""
from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.procs import oomcount
from tests.support.logevents import records
from tests.support.supervision import Harness, alive
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)
# a process that stays SIGTERM-deaf for 4 s, its pid written once it is: a run's long drain
LINGERS = "sh -c 'trap \"\" TERM; echo $$ > {file}; sleep 4' & wait"
# one that ends 0.2 s after its SIGTERM: a run's short drain
DRAINS = "sh -c 'trap \"sleep 0.2; exit 0\" TERM; echo $$ > {file}; while :; do sleep 0.05; done' & wait"
# a leftover out of its run's group (which the exit's first SIGKILL takes, uncounted), its pid
# written once it is
LEFT = "setsid sh -c 'echo $$ >> left; exec sleep 100'"


def pid_in(harness: Harness, name: str) -> int:
    path = harness.sandbox / name
    pid = wait_for(lambda: path.exists() and path.read_text().strip(), 5, message=f"{name} written")
    harness.tracker.add(int(pid))
    return int(pid)


def counted(harness: Harness, tmp_path: Path, kills: int) -> Path:
    """The supervisor's OOM counter on a file of the test's (`kills` so far); the file."""
    events = tmp_path / "memcg"
    events.mkdir()
    (events / "memory.events").write_text(f"oom {kills}\noom_kill {kills}\n")
    harness.sup._post_exit.oom = oomcount.OomCounter(str(events), "/t", v2=True, top=str(events))
    return events / "memory.events"


def test_a_run_s_end_is_posted_with_its_run_and_time_and_one_debug_line(harness, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.procs.supervisor")
    before = time.monotonic()
    pid = harness.spawn("short", "exit 3", run=2)
    ended = harness.next_exit()
    assert (ended.process, ended.run, ended.pid, ended.status.exit_code) == ("short", 2, pid, 3)
    assert before < ended.at < time.monotonic()
    (line,) = records(caplog, "process_exited")
    assert (line.name, line.levelno) == ("executor.procs.supervisor", logging.DEBUG)
    assert line.getMessage() == f'process_exited task=test.0 process=short run=2 pid={pid} status="exit status 3"'


def test_an_exit_the_owner_s_queue_refused_is_one_error_line_and_the_next_is_posted(harness, caplog):
    def refused(event: object) -> None:
        raise RuntimeError("the queue is gone")

    posts, harness.sup._post_exit._post = harness.sup._post_exit._post, refused
    pid = harness.spawn("lost", "exit 3", run=4)
    (line,) = wait_for(lambda: records(caplog, "post_failed"), 5, message="the ERROR line")
    assert (line.name, line.levelno) == ("executor.procs.supervisor", logging.ERROR)
    assert line.getMessage() == (f'post_failed task=test.0 process=lost run=4 pid={pid} '
                                 'error="RuntimeError: the queue is gone"')
    harness.sup._post_exit._post = posts
    harness.spawn("next", "exit 5")
    assert (harness.next_exit().process, harness.events.empty()) == ("next", True)


def test_an_oom_kill_counted_before_the_run_was_forked_is_not_its(harness, tmp_path):
    """The count had grown before the supervisor's counter first looked at it for this run
    (as it was forked): the run's own SIGKILL, with no kill counted since, is no OOM kill."""
    counted(harness, tmp_path, kills=1)
    harness.spawn("later", "kill -9 $$")
    assert harness.next_exit().status.describe() == "killed by SIGKILL"


@pytest.mark.parametrize("signals", [(signal.SIGKILL,), (signal.SIGTERM, signal.SIGKILL)],
                         ids=["sigkill", "sigterm-then-sigkill"])
def test_the_task_s_own_sigkill_is_never_the_oom_killer_s_though_the_count_grew(harness, tmp_path, signals):
    """The memory cgroup's OOM kill count grew during the run (another process's kill), and
    the task SIGKILLed it: its end is the task's SIGKILL, not named the OOM killer's."""
    events = counted(harness, tmp_path, kills=0)
    harness.spawn("victim", f"trap '' TERM; printf 'oom 1\\noom_kill 1\\n' > {events}; "
                            "echo up > up; exec sleep 100")
    wait_for(lambda: (harness.sandbox / "up").exists(), 5, message="the count grown")
    for sig in signals:
        assert harness.sup.signal_run("victim", 0, sig) >= 1
    ended = harness.next_exit()
    assert ended.status.signal == signal.SIGKILL
    assert ended.status.describe() == "killed by SIGKILL"


def test_a_drain_that_lingers_holds_up_no_other_run_s_end(harness):
    """Two runs SIGTERMed together, each top ending at once: the first one's leftover
    ignores SIGTERM (its run drains until the grace's SIGKILL), the second one's ends 0.2 s
    later. The second run's exit is posted then, while the first still drains (was it
    looked at first, its wait would hold up every run after it)."""
    harness.spawn("slow", LINGERS.format(file="slow.pid"))
    harness.spawn("quick", DRAINS.format(file="quick.pid"))
    lingering, draining = pid_in(harness, "slow.pid"), pid_in(harness, "quick.pid")
    signalled = time.monotonic()
    assert harness.sup.signal_runs([("slow", 0), ("quick", 0)], signal.SIGTERM) >= 4
    ended = harness.next_exit(3)
    assert (ended.process, ended.status.signal) == ("quick", signal.SIGTERM)
    assert time.monotonic() - signalled < 3 and alive(lingering) and not alive(draining)
    assert harness.events.empty(), "the lingering run's drain ended"
    assert harness.sup.signal_run("slow", 0, signal.SIGKILL) >= 1  # the grace's end
    assert harness.next_exit().process == "slow"
    wait_for(lambda: not alive(lingering), 5, message="the lingering leftover gone")


def test_a_drained_run_is_the_supervisor_s_no_more_once_its_exit_is_posted(harness):
    """The run ended by its drain is not running: the same run may be started again (the
    supervisor refuses a run it still holds: "already running")."""
    harness.spawn("d", DRAINS.format(file="d.pid"))
    leftover = pid_in(harness, "d.pid")
    harness.sup.signal_run("d", 0, signal.SIGTERM)
    assert harness.next_exit().status.signal == signal.SIGTERM
    assert not alive(leftover)
    again = harness.sup.spawn(ProcessSpec("d", "exit 3"), 0)
    harness.tracker.add(again)
    assert harness.next_exit().status.exit_code == 3


def test_a_run_that_ended_is_the_supervisor_s_no_more_once_its_exit_is_posted(harness):
    harness.spawn("once", "exit 4")
    assert harness.next_exit().status.exit_code == 4
    harness.tracker.add(harness.sup.spawn(ProcessSpec("once", "exit 5"), 0))
    assert harness.next_exit().status.exit_code == 5


def test_what_an_exit_left_and_killed_is_one_debug_line_and_nothing_left_none(harness, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.procs.draining")
    harness.spawn("tidy", "exit 0")
    assert harness.next_exit().process == "tidy"
    assert records(caplog, "leftovers_killed") == []
    pid = harness.spawn("leaky", f"{LEFT} & {LEFT} & until [ \"$(wc -l < left)\" = 2 ]; do sleep 0.01; done; exit 1",
                        run=3)
    assert harness.next_exit().process == "leaky"
    (line,) = records(caplog, "leftovers_killed")
    assert (line.name, line.levelno) == ("executor.procs.draining", logging.DEBUG)
    assert line.getMessage() == f"leftovers_killed task=test.0 process=leaky run=3 pid={pid} processes=2"
