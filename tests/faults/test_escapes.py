"""Faults 8 and 9: processes that shed every handle Stoker had on them, on a busy host.

Fault 8 (a daemon that leaves its process group with `setsid` and its marker with `env -i`)
and fault 9 (a fork-hopper: a process that forks a child and exits, again and again, each
generation in a new session, so no pid it ever had stays alive long enough to be signalled
from a slow scan) are played against the real `stoker run` and `stoker executor`, with
1,000 unrelated idle processes on the host, on every kill path:

- a run's exit (the leftover kill), and a shell health check's exit;
- the task's kill (SIGTERM of `stoker run`, KILL from the agent);
- `kill -9` of the Stoker process (the watchdog).

Each runs with the task's own cgroup (STOKER_CGROUPS=auto; skipped, with the reason, where
the host cannot make one) and without (off). Without a cgroup, a process that left both its
group and its marker and whose parent is gone, or one that hops, is out of reach once Stoker
itself is dead: the kill -9 cases run only with a cgroup (README, "Containment").

Every process a test learns of (pid files, the task marker) is killed at teardown, hoppers
are told to stop, and every task cgroup is removed, also when the test fails.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from tests.support import cgroups, cloneparent, proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.background import Background
from tests.support.fault_sizes import size
from tests.support.shellwords import fake_sh, python_sh
from tests.support.stoker_proc import StokerProcess, checkpoint_records
from tests.support.waiting import wait_for

# serial: its fork-hoppers on a host of BACKGROUND other processes are timed by generations
# written, which another worker's load stalled past their bound once (docs/testing.md §13).
pytestmark = [pytest.mark.faults, pytest.mark.serial, pytest.mark.timeout(120)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
BACKGROUND = size(1000, 1000)
MODES = {"cgroup": "auto", "fallback": "off"}
# A bound on each wait for a kill's effect (an event: the pids gone, a hopper quiet), not a
# speed target (how fast is test_kill9's figure): at 1.0 s (1.5 for a hopper after kill -9:
# the watchdog's shell woken, cgroup.kill written, the checker scheduled) it failed once at
# load 15 on 2 cores.
GONE_WITHIN_SECS = 15.0
# A daemon that leaves its group and its marker; the shell waits until it has (it runs
# `sleep` with an empty environ: during an exec the environ reads empty too), so that it has
# escaped before the run or check that started it ends.
ESCAPE = ("setsid env -i sleep 1000 & d=$!; echo $d >> {file}; "
          "until [ \"$(head -c5 /proc/$d/cmdline 2>/dev/null)\" = sleep ] && "
          "[ \"$(head -c1 /proc/$d/environ 2>/dev/null | wc -c)\" = 0 ]; do sleep 0.01; done")


def _hopper(name: str, *flags: object) -> str:
    return fake_sh("--fork-hop", 120, "--hop-pid-file", f"{name}.pid", "--hop-stop-file",
                 f"{name}.stop", *flags)


# name -> (cmdline, extra Process fields, the pid file it writes)
PROCESSES = {
    # A run that leaves a daemon behind and fails; restarted: fault 8, a failed run's exit.
    "spawner": (ESCAPE.format(file="spawned.pids") + "; sleep 0.3; exit 1",
                "max_failures=0, min_duration=0.5", "spawned.pids"),
    # A daemonizer: it leaves a daemon that keeps its marker and exits 0, which hands the
    # daemon to the task (as Thermos does): it lives until the task's stop, or kill -9.
    "launcher": ("setsid sleep 1000 & d=$!; echo $d >> launched.pids; "
                 "until [ \"$(head -c5 /proc/$d/cmdline 2>/dev/null)\" = sleep ]; do sleep 0.01; done",
                 "", "launched.pids"),
    # A run whose daemon is orphaned while the run lives: fault 8, the task's kill.
    "keeper": (f"({ESCAPE.format(file='kept.pids')}); exec sleep 1000", "", "kept.pids"),
    # A classic daemon that keeps its marker, and a tree: today's guarantees, unchanged.
    "marked": (fake_sh("--daemonize-child", "--daemon-pid-file", "marked.pids"), "", "marked.pids"),
    "tree": (fake_sh("--children", 2, "--children-pid-file", "tree.pids"), "", "tree.pids"),
}
HEALTH = ESCAPE.format(file="checked.pids") + "; exit 0"  # fault 8, shell health checks


def config_text(processes: dict[str, tuple[str, str, str]], health: str | None) -> str:
    procs = "".join(f"  Process(name={n!r}, cmdline={c!r}{', ' + extra if extra else ''}),\n"
                    for n, (c, extra, _) in processes.items())
    check = ""
    if health is not None:
        check = (f"  health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig("
                 f"shell=ShellHealthChecker(shell_command={health!r})), interval_secs=0.2, "
                 f"initial_interval_secs=0.2, timeout_secs=5),\n")
    return (f"procs = [\n{procs}]\n"
            "jobs = [Service(cluster='local', role='me', environment='test', name='escapes',\n"
            "  task=Task(processes=procs, resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),\n"
            "            finalization_wait=2),\n"
            f"{check}"
            "  lifecycle=DisableLifecycle)]\n")


def setting_for(mode: str) -> str:
    setting = MODES[mode]
    if mode == "cgroup":
        why = cgroups.unavailable(setting)
        if why is not None:
            pytest.skip(f"no task cgroup on this host: {why}")
    return setting


@pytest.fixture(scope="module")
def busy_host():
    """BACKGROUND unrelated idle processes for the whole module."""
    with Background(BACKGROUND) as bg:
        yield bg


class Task:
    """One task's sandbox: its pid files, hoppers, marker and cgroups, all cleaned up."""

    def __init__(self, sandbox: Path) -> None:
        self.sandbox = sandbox
        self.pids: set[int] = set()
        self.marker: str | None = None
        self.groups = cgroups.CgroupTracker()

    def pids_in(self, name: str, count: int = 1) -> list[int]:
        path = self.sandbox / name
        wait_for(lambda: len(proc_scan.read_pid_files([path])) >= count, 20,
                 message=f"{count} pids in {path}")
        found = sorted(proc_scan.read_pid_files([path]))
        self.pids.update(found)
        return found

    def learn(self, stoker_pid: int) -> None:
        """The task marker and the cgroups, while Stoker and its first run are alive."""
        tops = wait_for(lambda: {r["pid"] for r in checkpoint_records(self.sandbox)
                                 if r.get("kind") == "process" and r.get("pid")} or None, 20,
                        message="a run's pid in the checkpoint")
        self.pids.update(tops)
        self.marker = next((m for m in map(proc_scan.task_marker_of, tops) if m), None)
        self.groups.add_of(stoker_pid)

    def alive(self) -> set[int]:
        found = proc_scan.live(self.pids)
        if self.marker:
            found |= proc_scan.task_pids_by_marker(self.marker)
        return found

    def hopper_stopped(self, name: str, quiet_secs: float = 0.2, within_secs: float = 0.0) -> bool:
        return proc_scan.hopper_quiet(self.sandbox / f"{name}.pid", quiet_secs, within_secs)

    def hopper_hops(self, name: str) -> bool:
        return proc_scan.hopper_hops(self.sandbox / f"{name}.pid")

    def cleanup(self) -> None:
        for pid_file in self.sandbox.glob("hop*.pid"):
            proc_scan.stop_hopper(pid_file, pid_file.with_suffix(".stop"))
        entry = f"{proc_scan.TASK_MARKER}={self.marker}" if self.marker else b"STOKER_FAULTS_NOTHING=1"
        proc_scan.kill_carrying(entry, self.pids)
        self.groups.cleanup()


@pytest.fixture
def task(tmp_path):
    made = Task(tmp_path / "sandbox")
    yield made
    made.cleanup()
    assert not made.groups.left(), f"task cgroups left behind: {made.groups.left()}"


def _dead_but_the_latest(task: Task, name: str, count: int) -> None:
    """Of the daemons in `name`, every one but the latest must die (its run or check ended)."""
    pids = task.pids_in(name, count)
    wait_for(lambda: not proc_scan.live(pids[:-1]), GONE_WITHIN_SECS,
             message=f"the daemons of ended runs or checks ({name}) gone")


def _stoker_run(tmp_path: Path, task: Task, processes: dict, health: str | None, mode: str) -> StokerProcess:
    """`stoker run` of a job of `processes` in the task's sandbox, its cgroups as `mode` says."""
    config = tmp_path / "escapes.aurora"
    config.write_text(config_text(processes, health))
    return StokerProcess(["run", str(config), "--sandbox", str(task.sandbox)], tmp_path,
                         env={"STOKER_CGROUPS": setting_for(mode)})


# ---- fault 8: setsid + env -i ----


@pytest.mark.parametrize("mode", list(MODES))
def test_unmarked_daemons_die_with_runs_checks_and_the_task_under_stoker_run(tmp_path, task, busy_host, figures, mode):
    run = _stoker_run(tmp_path, task, PROCESSES, HEALTH, mode)
    try:
        task.learn(run.pid)
        _dead_but_the_latest(task, "spawned.pids", 3)  # two runs failed, each with a daemon
        _dead_but_the_latest(task, "checked.pids", 4)  # three health checks ended
        # The keeper's daemon cannot be traced to its run (orphaned, no group, no marker): it
        # goes at the next exit of a run or check, or with the task, whichever comes first.
        for name in ("kept.pids", "marked.pids", "tree.pids"):
            task.pids_in(name)
        assert proc_scan.live(task.pids_in("launched.pids")), "the launcher's daemon outlives it"
        _stopped_all_gone(run, task)
        figures.add(f"stoker run ({mode}): unmarked daemons started by runs and checks, all "
                    f"killed", len(task.pids))
        assert not task.groups.left(), "stoker run left its cgroup behind"
    finally:
        run.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_unmarked_daemons_die_with_the_task_under_stoker_executor(tmp_path, task, busy_host, mode):
    task.sandbox.mkdir()
    config = tmp_path / "escapes.aurora"
    config.write_text(config_text(PROCESSES, None))
    with AgentSimulator(sandbox=task.sandbox) as sim:
        proc = sim.launch_executor(EXECUTOR, cwd=task.sandbox,
                                   env_overrides={"STOKER_CGROUPS": setting_for(mode)})
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", encode(load_job(config))))
        sim.wait_for_state("task-1", "TASK_RUNNING", 20)
        task.learn(proc.pid)
        _dead_but_the_latest(task, "spawned.pids", 2)
        task.pids_in("kept.pids")
        sim.kill("task-1")
        sim.wait_for_state("task-1", "TASK_KILLED", 20)
        wait_for(lambda: not task.alive(), GONE_WITHIN_SECS, message="every task process gone")


def test_kill9_of_stoker_run_on_a_busy_host_leaves_no_escaped_daemon(tmp_path, task, busy_host, figures):
    run = _stoker_run(tmp_path, task, PROCESSES, HEALTH, "cgroup")
    try:
        task.learn(run.pid)
        for name in ("spawned.pids", "kept.pids", "marked.pids", "tree.pids", "checked.pids",
                     "launched.pids"):
            task.pids_in(name)
        assert task.groups.seen, "stoker run made no cgroup"
        killed_at = time.monotonic()
        os.kill(run.pid, signal.SIGKILL)
        wait_for(lambda: not task.alive(), GONE_WITHIN_SECS, message="every task process gone")
        figures.add(f"kill -9 of stoker run with {BACKGROUND} other processes: all gone after",
                    f"{(time.monotonic() - killed_at) * 1000:.0f} ms")
        wait_for(lambda: not task.groups.left(), 10, message="the watchdog removed the cgroup")
    finally:
        run.close()


# ---- a run's sibling: clone(CLONE_PARENT), then setsid + env -i ----


def _zombie_of(pid: int, parent: int) -> bool:
    """Whether `pid` is a zombie `parent` has not reaped."""
    stat = proc_scan.read_bytes(f"/proc/{pid}/stat")
    fields = stat[stat.rfind(b")") + 2:].split()
    return len(fields) > 1 and fields[0] == b"Z" and int(fields[1]) == parent


def _sibling(pid_file: str, code: str) -> str:
    return "exec " + python_sh(Path(cloneparent.__file__), pid_file, code)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_sibling_a_failed_run_cloned_dies_with_it(tmp_path, task, mode):
    """A process a run made with clone(CLONE_PARENT) is a child of the Stoker thread that
    forked the run, not an orphan on the main thread's list: found at the run's exit too (a
    failed run restarts clean), with a cgroup and without."""
    processes = {"sibling": (_sibling("siblings.pids", "1"), "max_failures=0, min_duration=0.5",
                             "siblings.pids"),
                 "stay": (fake_sh(), "", "")}
    run = _stoker_run(tmp_path, task, processes, None, mode)
    try:
        task.learn(run.pid)
        _dead_but_the_latest(task, "siblings.pids", 3)  # two runs failed, each with a sibling
        dead = task.pids_in("siblings.pids", 3)[:-1]
        wait_for(lambda: not any(_zombie_of(pid, run.pid) for pid in dead), 10,
                 message="the killed siblings reaped by Stoker (their parent)")
        _stopped_all_gone(run, task)
    finally:
        run.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_a_sibling_a_live_run_cloned_dies_with_the_task(tmp_path, task, mode):
    run = _stoker_run(tmp_path, task, {"stay": (_sibling("stayed.pids", "stay"), "", "")}, None, mode)
    try:
        task.learn(run.pid)
        assert proc_scan.live(task.pids_in("stayed.pids")), "a live run's sibling lives"
        _stopped_all_gone(run, task)
    finally:
        run.close()


def _stopped_all_gone(run, task) -> None:
    """`stoker run` stopped by SIGTERM, and every process the task ever had gone after it."""
    run.signal(signal.SIGTERM)
    run.wait(30)
    wait_for(lambda: not task.alive(), GONE_WITHIN_SECS, message="every task process gone")


# ---- fault 9: fork-hoppers ----


@pytest.mark.parametrize("mode", list(MODES))
def test_a_fork_hopper_dies_with_its_failed_run_on_a_busy_host(tmp_path, task, busy_host, mode):
    processes = {"hop": (_hopper("hop", "--exit-after", 0.5, "--exit-code", 1),
                         "max_failures=0, min_duration=60", ""),  # no second run meanwhile
                 "stay": (fake_sh(), "", "")}  # keeps the task running after the hopper's run
    run = _stoker_run(tmp_path, task, processes, None, mode)
    try:
        task.learn(run.pid)
        wait_for(lambda: any(r.get("process") == "hop" and r.get("outcome") == "FAILED"
                             for r in checkpoint_records(task.sandbox)), 20,
                 message="the hopper's run failed")
        assert task.hopper_stopped("hop", within_secs=10), "the fork-hopper outlived its run"
    finally:
        run.close()


def test_a_fork_hopper_a_run_that_exited_0_left_dies_with_the_task(tmp_path, task, busy_host):
    processes = {"hop": (_hopper("hop", "--exit-after", 0.3), "", ""),
                 "stay": (fake_sh(), "", "")}
    run = _stoker_run(tmp_path, task, processes, None, "cgroup")
    try:
        task.learn(run.pid)
        wait_for(lambda: any(r.get("process") == "hop" and r.get("to") == "SUCCESS"
                             for r in checkpoint_records(task.sandbox)), 20,
                 message="the hopper's run ended")
        # kept: each generation carries the run's marker. New generations written, not a fixed
        # quiet time: on the busy host a generation that just exited may wait longer than any
        # such time for its child to write the next pid (CI saw a kept hopper called stopped).
        assert task.hopper_hops("hop"), "kept: each generation carries the run's marker"
        run.signal(signal.SIGTERM)
        run.wait(30)
        wait_for(lambda: task.hopper_stopped("hop", 0.05), GONE_WITHIN_SECS + 0.5,
                 message="the kept fork-hopper gone with the task")
    finally:
        run.close()


def test_a_fork_hopper_dies_when_stoker_is_killed_on_a_busy_host(tmp_path, task, busy_host):
    processes = {"hop": (_hopper("hop"), "", "")}
    run = _stoker_run(tmp_path, task, processes, None, "cgroup")
    try:
        task.learn(run.pid)
        wait_for(lambda: (task.sandbox / "hop.pid").exists(), 20, message="the hopper hopping")
        assert task.hopper_hops("hop")
        os.kill(run.pid, signal.SIGKILL)
        wait_for(lambda: task.hopper_stopped("hop", 0.05), GONE_WITHIN_SECS + 0.5,
                 message="the fork-hopper gone after kill -9")
        wait_for(lambda: not task.groups.left(), 10, message="the watchdog removed the cgroup")
    finally:
        run.close()
