"""A task of many processes under a low descriptor limit (`ulimit -n`): every run starts.

One supervisor holds the descriptors of every run it starts until the fork (a run's
directory and log files), and those of every piped run while it lives (a rotating log: two
pipes, two files, two directory descriptors). A start of N runs made every directory and
file first, so under the usual soft limit of 1,024 a task of about 340 plain processes, or
110 with rotating logs, failed at start with `Too many open files (EMFILE)`. Each test runs
`stoker run` under a limit its shell sets, small enough that a few dozen processes show it.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from config.spec import LogDestination, LoggerSpec, LogMode
from executor.procs import fdlimit
from tests.support.shellwords import python_sh
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def test_the_descriptors_a_task_needs_count_its_live_pipes_and_one_batch_starting():
    plain, rotate = LoggerSpec(), LoggerSpec(mode=LogMode.ROTATE)
    both = LoggerSpec(destination=LogDestination.BOTH)
    console = LoggerSpec(destination=LogDestination.CONSOLE)
    batch = fdlimit.SPAWN_BATCH
    assert fdlimit.needed([plain] * 1000) == fdlimit.OWN + batch * fdlimit.PLAIN_START
    assert fdlimit.needed([console] * 1000) == fdlimit.OWN
    assert fdlimit.needed([rotate] * 10 + [both] * 5 + [plain] * 200) == (
        fdlimit.OWN + 10 * fdlimit.ROTATING_RUN + 5 * fdlimit.COPIED_RUN
        + 10 * fdlimit.ROTATING_START + 5 * fdlimit.COPIED_START + (batch - 15) * fdlimit.PLAIN_START)


def start_under(tmp_path: Path, processes: str, count: int, soft: int, hard: int) -> tuple[subprocess.Popen, Path]:
    config = tmp_path / "many.aurora"
    config.write_text(
        f"procs = [Process(name='p%d' % i, cmdline='sleep 30'{processes}) for i in range({count})]\n"
        "jobs = [Job(task=Task(name='many', processes=procs, resources=Resources(cpu=1, ram=1*MB, "
        "disk=1*MB)), cluster='c', role='r', environment='e', name='many')]\n")
    sandbox = tmp_path / "sb"
    command = (f"ulimit -Sn {soft} && ulimit -Hn {hard} && "
               f"exec {python_sh('-m', 'executor', 'run', config, '--sandbox', sandbox, '--log-level', 'INFO')}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "STOKER_ROOT": str(tmp_path / "registry"),
           "STOKER_EARLY_START": "off", "STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    out = open(tmp_path / "out", "wb")
    proc = subprocess.Popen(["/bin/bash", "-c", command], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    out.close()
    return proc, sandbox


def started(tmp_path: Path, proc: subprocess.Popen, sandbox: Path, count: int) -> str:
    """The output once every run started or failed (or stoker ended); then the task stopped."""
    def output() -> str:
        return (tmp_path / "out").read_text(errors="replace")
    try:
        wait_for(lambda: output().count("WAITING → RUNNING") >= count or proc.poll() is not None,
                 20, message=f"{count} runs started")
        wait_for(lambda: "STARTING → RUNNING" in output() or proc.poll() is not None, 10,
                 message="the task RUNNING")
        return output()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        kill_leftovers(task_pids(sandbox))


def test_a_start_of_many_plain_processes_holds_one_batch_of_log_files_at_once(tmp_path):
    # 200 runs made ready before the first fork held 600 descriptors: over a limit of 500,
    # the last ~40 failed with EMFILE. Now 128 at a time; the limit needs no raising.
    count = 200
    proc, sandbox = start_under(tmp_path, "", count, soft=500, hard=500)
    out = started(tmp_path, proc, sandbox, count)
    assert "EMFILE" not in out, out[-3000:]
    assert out.count("WAITING → RUNNING") == count
    assert "descriptor_limit" not in out


def test_a_task_of_rotating_logs_raises_the_soft_limit_to_what_they_hold(tmp_path):
    # 40 rotating runs hold 240 descriptors while they live and 360 while they start: under a
    # soft limit of 256 the later ones failed with EMFILE, though the hard limit allowed more.
    count, soft = 40, 256
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    need = fdlimit.needed([LoggerSpec(mode=LogMode.ROTATE)] * count)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard descriptor limit here ({hard}) is below the {need} this test needs")
    proc, sandbox = start_under(tmp_path, ", logger=Logger(mode='rotate')", count, soft=soft,
                                hard=hard if hard != resource.RLIM_INFINITY else need)
    out = started(tmp_path, proc, sandbox, count)
    assert "EMFILE" not in out, out[-3000:]
    assert out.count("WAITING → RUNNING") == count
    assert f"descriptor_limit_raised task=many.0 soft={soft} to={need}" in out


def test_a_start_under_a_hard_limit_below_what_it_needs_leaves_the_supervisor_its_own(tmp_path):
    # 128 runs whose log files were made before the checkpoint was opened held ~390 of 400
    # descriptors: the checkpoint could not be opened and the task failed before its first
    # run ("no file descriptor is left"). Made ready only while OWN stay free, every run starts.
    count = 128
    proc, sandbox = start_under(tmp_path, "", count, soft=400, hard=400)
    out = started(tmp_path, proc, sandbox, count)
    assert "Too many open files" not in out, out[-3000:]  # (the limit's WARNING names EMFILE)
    assert out.count("WAITING → RUNNING") == count
