"""A child `stoker run` inherited through `exec` (a shell's `sleep 1000 & exec stoker run
CONFIG`: the sleep is a child of stoker run after the exec) is not Stoker's: an early start
given up (executor/host/early.py, `EarlyStart.abandon`) kills its own runs and whatever they
started, and leaves the inherited child running (the supervisor's reaper reaps it once it
ends, as any child of its process: `executor/procs/reaper.py`). A first run that inherited
more descriptors than select() takes still starts early."""
from __future__ import annotations

import psutil
import pytest

from executor.local import planfiles
from tests.support import pidnames
from tests.support.earlyjob import early_run, stdout_of, write
from tests.support.stoker_proc import StokerProcess, kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

# The shell that execs stoker run, its child's pid written first.
LAUNCHER = ("/bin/sh", "-c", 'sleep 1000 & echo $! > inherited; exec "$@"', "sh")


def run(tmp_path, config, name: str) -> tuple[StokerProcess, object]:
    return early_run(tmp_path, config, name, launcher=LAUNCHER)


def inherited(tmp_path, name: str) -> list[int]:
    """The pid the launcher of run `name` wrote: its `sleep 1000`, stoker run's inherited child."""
    return sorted(pidnames.pid_file(tmp_path / f"work-{name}" / "inherited"))


def test_an_early_start_given_up_leaves_the_children_stoker_run_inherited(tmp_path):
    # The kept plan is damaged after its launch record was read (the launch record is
    # read first): the early start is given up before the supervisor exists.
    config = write(tmp_path, "Process(name='first', cmdline='exec sleep 1000')")
    proc, sandbox = run(tmp_path, config, "planned")
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
    finally:
        proc.sigterm_and_close()
        kill_leftovers([*task_pids(sandbox), *inherited(tmp_path, "planned")])  # the first run's inherited sleep too
    [plan] = [p for p in (tmp_path / "plans").iterdir() if p.name.endswith(planfiles.PLAN_SUFFIX)]
    plan.write_bytes(b"damaged")
    proc, sandbox = run(tmp_path, config, "again")
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
        assert "early start given up" in proc.stderr(), proc.stderr()
        pids = inherited(tmp_path, "again")
        assert live(pids) == set(pids), "the inherited sleep was killed"
        assert psutil.Process(pids[0]).ppid() == proc.pid  # stoker run's child all along
    finally:
        proc.sigterm_and_close()
        kill_leftovers([*task_pids(sandbox), *inherited(tmp_path, "again")])


def cgroups_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


@pytest.mark.parametrize("runs", [1, 2], ids=["first-run", "re-run"])
def test_an_adopted_early_start_leaves_the_inherited_children_out_of_the_task(tmp_path, runs):
    """The supervisor that adopts an early start's runs takes into the task's cgroup the
    daemons they left, never a child it inherited (was: moved in with them, and killed with
    the task at its stop)."""
    config = write(tmp_path, "Process(name='first', cmdline='exec sleep 1000')")
    for attempt in range(runs):
        proc, sandbox = run(tmp_path, config, f"run{attempt}")
        try:
            proc.wait_output("WAITING → RUNNING", timeout_secs=30)
            wait_for(lambda p=proc: "process_adopted" in p.stderr(), timeout_secs=30)  # the early start's run
            [sleep] = inherited(tmp_path, f"run{attempt}")
            # the console's line is logged as the change is made, the checkpoint written at the step's end
            [task] = wait_for(lambda s=sandbox: task_pids(s), timeout_secs=30)
            if "/stoker-" in cgroups_of(task):  # the task's cgroup (not as a user without one)
                assert "/stoker-" not in cgroups_of(sleep), cgroups_of(sleep)
        finally:
            proc.sigterm_and_close()
            kill_leftovers(task_pids(sandbox))
            pids = inherited(tmp_path, f"run{attempt}")
            alive = live(pids)  # after the task's stop
            kill_leftovers(pids)
        assert alive == set(pids), "the inherited sleep was killed with the task"


def test_a_first_run_that_inherited_a_thousand_descriptors_starts_early(tmp_path):
    # Was: its planning child's pipe past select()'s FD_SETSIZE (1024), the check whether the
    # child had answered (`PlanAhead.answered`) raised ValueError: a traceback, nothing ran.
    config = write(tmp_path, "Process(name='first', cmdline='echo ran')")
    work = tmp_path / "work"
    work.mkdir()
    opens = 'for fd in $(seq 3 1100); do eval "exec $fd</dev/null"; done; exec "$@"'
    proc = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sandbox")], work,
                         launcher=("/bin/bash", "-c", opens, "bash"),
                         env={"STOKER_PLAN_CACHE": str(tmp_path / "plans"), "STOKER_LOG_LEVEL": "DEBUG"})
    try:
        assert proc.wait() == 0, proc.stderr()
    finally:
        proc.close()
        kill_leftovers(task_pids(tmp_path / "sandbox"))
    assert "process_adopted task=" in proc.stderr() and "ran" in stdout_of(tmp_path / "sandbox", "first")
