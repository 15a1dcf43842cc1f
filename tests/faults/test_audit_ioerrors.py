"""Stoker when the sandbox's file system fails under a running task: it turns read-only
(ext4's `errors=remount-ro` after a disk fault), every I/O fails with EIO (a dead disk), or
a sync fails once and works again (after a failed fsync, Linux may drop the dirty pages,
and a later fsync reports success for what never reached the disk).

Each fault is real where the kernel can make it: a small ext4 of the test's own
(`tests/support/faultyfs.py`: root and the loop driver, a skip otherwise), turned read-only
or shut down while the task runs. The supervision goes on (the agent hears every update,
a KILL kills everything), one ERROR line names each thing that fails (not one per record),
the executor does not spin, and no traceback is logged.

- The checkpoint when its syncs fail (a directory's, a file's; injected and on a real
  device): `test_audit_ioerrors_sync.py`. Stoker's own log and `stoker run`'s output in a
  file that fails for a while, and a rotating log at the file size limit:
  `test_audit_ioerrors_logs.py`.
- Pinned, no change: the sandbox read-only or dead under `stoker executor` and `stoker run`
  (the second and its re-run after a repair: FULL only).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from config.document import encode
from config.loader import load_job
from executor.task.checkpoint import read_records
from tests.support import faultyfs, pidnames
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.fault_sizes import FULL
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO, kill_leftovers, live
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

# ---- the sandbox's file system fails under a running task (a real ext4) ----

# `web` prints through a rotating logger (its output goes through Stoker's log pump), 40
# lines a second; `flap` fails and is restarted every 0.2 s (a checkpoint step each time).
JOB = """
web = Process(name='web', cmdline='while true; do echo hello; sleep 0.025; done',
              logger=Logger(mode='rotate', rotate=RotatePolicy(log_size=65536, backups=1)))
flap = Process(name='flap', cmdline='sleep 0.1; exit 1', max_failures=0, min_duration=0.2)
jobs = [Service(cluster='local', role='me', environment='test', name='web',
                task=Task(processes=[web, flap], finalization_wait=1,
                          resources=Resources(cpu=0.1, ram=1*MB, disk=64*MB)))]
"""


class LogBeside(AgentSimulator):
    """The simulator, with the executor's log kept off the sandbox's file system (under
    Mesos it is SANDBOX/stderr, which fails with the sandbox: here the test reads it)."""

    def __init__(self, log: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self._log = log

    @property
    def log_path(self) -> Path:
        return self._log


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _lines(log: Path, event: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if f" {event} " in line]


@contextmanager
def _executor_on(tmp_path: Path, fs: faultyfs.Ext4) -> Iterator[tuple[LogBeside, psutil.Process, set[int]]]:
    """`stoker executor` running JOB in a sandbox on `fs`, its task RUNNING; afterwards the
    simulator is closed and every process the task had is killed, failed test or not."""
    job = tmp_path / "job.aurora"
    job.write_text(textwrap.dedent(JOB))
    sandbox = fs.path / "sandbox"
    sandbox.mkdir()
    sim = LogBeside(tmp_path / "executor.log", sandbox=sandbox)
    pids: set[int] = set()
    try:
        proc = sim.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=sandbox,
                                   env_overrides={"PYTHONPATH": str(REPO)})
        sim.wait_subscribed(timeout_secs=10)
        sim.launch(make_task_info("t1", encode(load_job(job)), ports=free_ports(2)))
        sim.wait_for_state("t1", "TASK_RUNNING", 10)
        executor = psutil.Process(proc.pid)
        pids |= {pidnames.named(c.pid) for c in executor.children(recursive=True)}
        yield sim, executor, pids
    finally:
        sim.close()
        kill_leftovers(pids)


def _faulted(sim: LogBeside, executor: psutil.Process, pids: set[int], fault) -> float:
    """Make the fault once the task has run a little; the executor's CPU seconds in the
    0.4 s that follow its first ERROR line about it."""
    wait_for(lambda: len(_lines(sim.log_path, "process_state")) >= 6, 10)  # flap restarted
    fault()
    wait_for(lambda: _lines(sim.log_path, "checkpoint_write_failed"), 10)
    before = _cpu(executor)
    time.sleep(0.4)
    pids |= {pidnames.named(c.pid) for c in executor.children(recursive=True)}
    return _cpu(executor) - before


def _killed(sim: LogBeside, pids: set[int]) -> list[str]:
    """KILL; the updates the agent heard, once the executor has exited and every process
    the task had (and the executor's watchdog) is gone."""
    sim.kill("t1", grace_secs=1.0)
    sim.wait_for_state("t1", "TASK_KILLED", 10)
    sim.wait_exit(10)
    wait_for(lambda: not live(pids), 5, message=f"left running: {live(pids)}")
    return sim.states("t1")


def test_the_executor_goes_on_when_the_sandbox_turns_read_only(tmp_path):
    with faultyfs.ext4(tmp_path / "fs") as fs, _executor_on(tmp_path, fs) as (sim, executor, pids):
        cpu = _faulted(sim, executor, pids, fs.fail_read_only)
        states = _killed(sim, pids)
        log = sim.log_path
        written = read_records(fs.path / "sandbox")
    assert states == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"], states
    assert cpu < 0.2, f"the executor used {cpu:.2f} s of CPU in 0.4 s after the fault"
    # As the file system turns read-only, a sync in flight fails with EIO (its journal is
    # aborted); later writes with EROFS.
    failed = _lines(log, "checkpoint_write_failed")
    assert len(failed) == 1 and ("EROFS" in failed[0] or "EIO" in failed[0]), failed  # not one per step
    pump = _lines(log, "log_write_failed")
    assert len(pump) == 1 and "process=web" in pump[0], pump
    lost = _lines(log, "checkpoint_records_lost")
    assert len(lost) == 1, lost
    assert "Traceback" not in log.read_text()
    assert written and written[-1].get("to") != "KILLED", "the checkpoint was written after the fault"


@pytest.mark.skipif(not FULL, reason="about 2 s: STOKER_FAULTS_FULL=1 only")
def test_the_executor_goes_on_when_every_io_of_the_sandbox_fails(tmp_path):
    with faultyfs.ext4(tmp_path / "fs") as fs, _executor_on(tmp_path, fs) as (sim, executor, pids):
        cpu = _faulted(sim, executor, pids, fs.shut_down)
        states = _killed(sim, pids)
        log = sim.log_path
    assert states == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"], states
    assert cpu < 0.2, f"the executor used {cpu:.2f} s of CPU in 0.4 s after the fault"
    failed = _lines(log, "checkpoint_write_failed")
    assert len(failed) == 1 and "EIO" in failed[0], failed
    assert len(_lines(log, "log_write_failed")) == 1
    assert "Traceback" not in log.read_text()


# ---- `stoker run` on a sandbox whose disk dies, then again once it is repaired ----


def _stoker_run(sandbox: Path, job: Path, out: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    env.update(PYTHONPATH=str(REPO), STOKER_ROOT=str(out.parent / "registry"), STOKER_PLAN_CACHE="off")
    with open(out, "w") as stdout, open(out.with_suffix(".err"), "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "executor", "run", "--sandbox", str(sandbox),
                                 "--log-level", "INFO", str(job)], stdout=stdout, stderr=stderr,
                                env=env, start_new_session=True)


def _rerun(sandbox: Path, job: Path, out: Path) -> None:
    """`stoker run` again in `sandbox`, until flap's second run; its SIGTERM ends it (143)."""
    rerun = _stoker_run(sandbox, job, out)
    try:
        wait_for(lambda: "flap[1]" in out.read_text(), 10)
        rerun.send_signal(signal.SIGTERM)
        assert rerun.wait(10) == 143
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)


@pytest.mark.skipif(not FULL, reason="about 4 s: STOKER_FAULTS_FULL=1 only")
def test_stoker_run_goes_on_when_its_sandbox_dies_and_a_rerun_starts_from_what_was_written(tmp_path):
    job = tmp_path / "job.aurora"
    job.write_text(textwrap.dedent(JOB))
    first, again = tmp_path / "first.out", tmp_path / "again.out"
    with faultyfs.ext4(tmp_path / "fs") as fs:
        sandbox = fs.path / "sandbox"
        run = _stoker_run(sandbox, job, first)
        pids: set[int] = set()
        try:
            wait_for(lambda: first.read_text().count("flap[") >= 6, 10)
            supervisor = psutil.Process(run.pid)
            pids |= {pidnames.named(c.pid) for c in supervisor.children(recursive=True)}
            fs.shut_down()
            wait_for(lambda: "checkpoint_write_failed" in first.with_suffix(".err").read_text(), 5)
            before = _cpu(supervisor)
            time.sleep(0.6)
            cpu = _cpu(supervisor) - before
            pids |= {pidnames.named(c.pid) for c in supervisor.children(recursive=True)}
            run.send_signal(signal.SIGTERM)
            code = run.wait(10)
            wait_for(lambda: not live(pids), 10, message=f"left running: {live(pids)}")
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
            kill_leftovers(pids)
        fs.repaired()
        _rerun(sandbox, job, again)
        attempts = [r for r in read_records(sandbox) if r.get("kind") == "header"]
    err = first.with_suffix(".err").read_text()
    assert code == 143 and "task KILLED (exit 143)" in first.read_text(), first.read_text()[-2000:]
    assert cpu < 0.3, f"stoker run used {cpu:.2f} s of CPU in 0.6 s after the fault"
    assert err.count("checkpoint_write_failed") == 1 and "EIO" in err, err[-3000:]
    assert err.count("checkpoint_records_lost") == 1 and "Traceback" not in err, err[-3000:]
    assert len(attempts) == 2, attempts  # the re-run read what the first one wrote, and went on
    assert "Traceback" not in again.with_suffix(".err").read_text()
