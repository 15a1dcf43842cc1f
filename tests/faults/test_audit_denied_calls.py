"""Hosts and containers that deny system calls: the real `stoker run` and `stoker executor`
under a real seccomp filter (`tests/support/seccomp.py`), the whole process tree under it.

What each host denies: an older Docker or Podman profile (pidfd_open, pidfd_send_signal,
pidfd_getfd EPERM: the profile predates them; clone3 ENOSYS so that glibc uses clone), a
kernel before 5.3 (ENOSYS for every pidfd call, clone3 and close_range), a runtime that
denies prctl (no subreaper, no PR_SET_DUMPABLE, no PR_SET_PDEATHSIG), close_range alone.

In CI (short): the executor's LAUNCH → RUNNING → KILL → KILLED cycle without pidfds, with
one warning naming them; and `kill -9` of `stoker run` without pidfds and without prctl
(no subreaper), no task cgroup: the watchdog still leaves no process of the task 1 s later.
Under STOKER_FAULTS_FULL=1: every call denied alone and every profile, each `stoker run`
of a health-checked service that must reach RUNNING, restart a killed process, stop on
SIGTERM with its final process and leave nothing, and leave nothing after `kill -9`; the
figures are the restart latency and the idle supervisor's CPU (/proc/PID/stat) over 2 s.
tests/integration/test_denied_calls.py holds the bugs this audit found.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support import seccomp
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.denied_calls import CONFIG, kill9_gone_secs, runs, seccomp_required  # noqa: F401  (fixtures)
from tests.support.fault_sizes import FULL
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO, kill_leftovers, live, task_pids

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

SINGLE = ["pidfd_open=EPERM", "pidfd_open=ENOSYS", "pidfd_send_signal=EPERM", "pidfd_send_signal=ENOSYS",
          "pidfd_getfd=EPERM",
          "clone3=ENOSYS", "close_range=ENOSYS", f"prctl:{seccomp.PR_SET_CHILD_SUBREAPER}=EINVAL", "prctl=EPERM"]
MATRIX = [[]] + [[rule] for rule in SINGLE] + [[profile] for profile in seccomp.PROFILES]


def test_the_executor_launches_and_kills_a_task_without_pidfds(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    config = tmp_path / "web.aurora"
    config.write_text(CONFIG)
    with AgentSimulator(sandbox=sandbox) as sim:
        try:
            sim.launch_executor([*seccomp.launcher(["no-pidfds"]), sys.executable, "-m", "executor", "executor"],
                                cwd=sandbox, env_overrides={"PYTHONPATH": str(REPO)})
            sim.wait_subscribed(timeout_secs=15)
            sim.launch(make_task_info("task-1", encode(load_job(config)), ports=free_ports(1)))
            sim.wait_for_state("task-1", "TASK_RUNNING", 20)
            pids = task_pids(sandbox)
            sim.kill("task-1", grace_secs=0.3)  # the daemon ignores SIGTERM: SIGKILL after 0.3 s
            sim.wait_for_state("task-1", "TASK_KILLED", 20)
            assert sim.wait_exit(10) == 0
            assert not live(pids | task_pids(sandbox))
        finally:
            sim.close()
            kill_leftovers(task_pids(sandbox))
        log = sim.executor_log()
    lines = [line for line in log.splitlines() if "pidfds_unavailable" in line]
    assert len(lines) == 1 and "Function not implemented" in lines[0], log[-3000:]
    assert "Traceback" not in log


def test_kill9_of_stoker_run_without_pidfds_or_a_subreaper_leaves_nothing(runs, figures):  # noqa: F811
    run = runs(["no-pidfds", "no-prctl"])
    run.wait_healthy()
    gone_after, alive = kill9_gone_secs(run)
    figures.add("alive 1 s after kill -9", f"{len(alive)} (all gone after "
                f"{'-' if gone_after is None else f'{gone_after * 1000:.0f} ms'})")
    assert not alive, f"{sorted(alive)} alive 1 s after kill -9 of stoker run\n{run.log()[-3000:]}"


@pytest.mark.skipif(not FULL, reason="a dozen stoker runs, 5 s each: STOKER_FAULTS_FULL=1 only")
@pytest.mark.parametrize("rules", MATRIX, ids=lambda rules: "+".join(rules) or "nothing-denied")
def test_stoker_run_under_each_denial(runs, figures, rules):  # noqa: F811
    run = runs(rules)
    run.wait_healthy()
    restarts = [run.restart_secs() for _ in range(3)]
    idle_cpu = run.cpu_secs(2.0)
    status, final_ran, left = run.stop()
    figures.add("restart latency", ", ".join(f"{secs * 1000:.0f} ms" for secs in restarts))
    figures.add("idle supervisor CPU over 2 s", f"{idle_cpu:.2f} s")
    log = run.log()
    warnings = [line for line in log.splitlines() if "pidfds_unavailable" in line or "subreaper_failed" in line]
    figures.add("warnings", "; ".join(line.split(": ", 1)[-1][:60] for line in warnings) or "none")
    assert (status, final_ran, left) == (143, True, set()), log[-3000:]
    assert "Traceback" not in log
    assert idle_cpu < 0.5, f"the idle supervisor used {idle_cpu:.2f} s of CPU in 2 s: a busy loop"
    assert len(warnings) == len({line.split()[3] for line in warnings}), f"a warning said twice:\n{warnings}"
    run9 = runs(rules)
    run9.wait_healthy()
    gone_after, alive = kill9_gone_secs(run9)
    figures.add("alive 1 s after kill -9", len(alive))
    assert not alive, f"{sorted(alive)} alive 1 s after kill -9\n{run9.log()[-3000:]}"


CONTAINMENT = ["tests/integration/test_containment.py", "tests/integration/test_supervisor_kills.py",
               "tests/integration/test_hostile_procs.py", "tests/integration/test_supervisor.py"]


@pytest.mark.skipif(not FULL, reason="four integration files, 10 s each: STOKER_FAULTS_FULL=1 only")
@pytest.mark.parametrize("rules", [["pidfd_send_signal=EPERM"], ["old-docker"], ["no-pidfds"]],
                         ids=lambda rules: "+".join(rules))
def test_the_containment_suites_pass_without_pidfds(rules):
    """The supervisor's own containment tests (in-process: the supervisor is the test's
    process) run under the filter. Not under no-prctl: they assume the subreaper, whose
    absence design.md §5 names as a limit."""
    result = subprocess.run([*seccomp.launcher(rules), sys.executable, "-m", "pytest", "-q",
                             *CONTAINMENT], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:]


def test_the_matrix_names_real_calls():
    """Every rule of the matrix is in this machine's table (a typo would deny nothing)."""
    arch = seccomp.machine()
    for rules in MATRIX:
        for name, _, _ in seccomp.parse(rules):
            assert name in seccomp.SYSCALLS[arch], name
    assert Path(seccomp.__file__).exists()
