"""A task's processes against their supervisor.

A process that Stoker may not signal: under a `stoker run` of an ordinary user
(nobody) without a cgroup, a run starts a setuid-root program that takes root's real user id
too (as `su` and `sudo` do), so every SIGTERM and SIGKILL of the staged kill is refused.

Before, nothing said so: the run ended `did not exit 1 s after SIGKILL; given up on` and the
process ran on unnamed (`Containment.pids` left out a draining run's group, so the close's
last look found nothing), and the watchdog, handed the process, spent two seconds of passes
on it and was logged as stuck (`watchdog_stuck`). Now one ERROR line, `close_incomplete`,
names it with its command and user id, and the watchdog leaves alone what it may not
signal.

Needs root (a setuid copy of Python, Stoker as nobody) and a Python nobody may run; two
seconds, so STOKER_FAULTS_FULL=1 only.

A stray signal to `stoker executor` from its task (`kill -USR1 $PPID`: a daemon telling its
parent it is ready; or `kill -HUP $PPID`, `kill -QUIT $PPID`: the executor has no terminal
they could come from) ended the executor on the spot: the agent reported TASK_FAILED
`Executor terminated`. Now it is ignored, with one WARNING line, and the task runs on.
`stoker run`'s side is tests/e2e/test_run_signals.py's.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import pidnames, proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.fault_sizes import FULL
from tests.support.ports import free_ports
from tests.support.stoker_proc import kill_leftovers, live, task_pids
from tests.support.users import needs_root, open_sandbox, stoker_as
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

NOBODY = 65534


def job(rootpy: Path, *, daemon: bool = False) -> str:
    """A task whose run starts a setuid-root program that takes root's real id: a service's
    run that goes on, or (`daemon`) a job's run that exits 0 at once, leaving it as a daemon."""
    hold = "import os, time; os.setresuid(0, 0, 0); open('held.pid', 'w').write(str(os.getpid())); time.sleep(60)"
    rest = "while [ ! -s held.pid ]; do sleep 0.02; done; exit 0" if daemon else "while :; do sleep 0.05; done"
    cmdline = f"{rootpy} -I -S -c \"{hold}\" & {rest}"
    kind, wait = ("Job", "finalization_wait=20, ") if daemon else ("Service", "")
    return textwrap.dedent(f"""
        jobs = [{kind}(cluster='local', role='nobody', environment='test', name='setuid',
            task=Task(processes=[Process(name='p', cmdline={cmdline!r})], {wait}
                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)


def _as_nobody(top: Path, config: str, stoker: list[str], *args: str) -> tuple[subprocess.Popen, Path, Path]:
    """`stoker run` as nobody in `top`, with a setuid-root copy of its Python as `rootpy`:
    the process, its sandbox and its stderr's file."""
    python = stoker[stoker.index("-m") - 1]
    os.chmod(top, 0o755)
    rootpy = top / "rootpy"
    shutil.copy(os.path.realpath(python), rootpy)
    os.chmod(rootpy, 0o4755)  # root's, setuid
    (top / "job.aurora").write_text(config.replace("ROOTPY", str(rootpy)))
    sandbox, root = top / "sandbox", top / "registry"
    for directory in (sandbox, root):
        directory.mkdir(mode=0o700)
        os.chown(directory, NOBODY, NOBODY)
    err = top / "stoker.stderr"
    with open(err, "wb") as stderr:
        run = subprocess.Popen([*stoker, "run", str(top / "job.aurora"), "--sandbox", str(sandbox),
                                "--cgroups", "off", "--root", str(root), *args],
                               cwd=top, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=stderr, start_new_session=True)
    return run, sandbox, err


def _held(sandbox: Path) -> int:
    wait_for(lambda: (sandbox / "held.pid").exists() and (sandbox / "held.pid").read_text(), 15,
             message="the setuid program's pid file")
    (pid,) = proc_scan.read_pid_files([sandbox / "held.pid"])
    if os.stat(f"/proc/{pid}").st_uid != 0:
        pytest.skip("the setuid bit was not honoured (a nosuid /tmp)")
    return pid


def _nobody_s_stoker() -> list[str]:
    stoker = stoker_as(NOBODY, NOBODY)
    if stoker is None:
        pytest.skip("no Python an unprivileged user may run this checkout with")
    return stoker


@needs_root
@pytest.mark.skipif(not FULL, reason="two seconds: STOKER_FAULTS_FULL=1 only")
def test_a_process_that_refuses_every_signal_is_named_at_the_end(figures):
    stoker = _nobody_s_stoker()
    with open_sandbox() as top:
        run, sandbox, err = _as_nobody(top, job(Path("ROOTPY")), stoker, "--kill-grace", "0.1")
        held: set[int] = set()
        try:
            pid = _held(sandbox)
            held = {pid}
            stopped_at = time.monotonic()
            run.send_signal(signal.SIGTERM)
            assert run.wait(15) == 128 + signal.SIGTERM
            figures.add("stop with a process it may not signal (s)", f"{time.monotonic() - stopped_at:.3f}")
            text = err.read_text(errors="replace")
            assert "close_incomplete" in text and f"pid {pid} ({top / 'rootpy'} -I -S -c" in text, text
            assert "uid 0)" in text, text
            assert "watchdog_stuck" not in text, text
            assert proc_scan.live(held) == held  # it is root's: out of Stoker's reach, as said
        finally:
            _end(run, held)


@needs_root
@pytest.mark.skipif(not FULL, reason="a setuid Python, Stoker as nobody: STOKER_FAULTS_FULL=1 only")
def test_a_daemon_that_refuses_its_sigterm_is_named_then_and_not_waited_for(figures):
    # A job's run exits 0, leaving a setuid program's daemon that took root's id: the task's
    # natural end SIGTERMs it, which is refused, and waited the whole grace (20 s of
    # finalization_wait here) and 1 s more for it to end, before `close_incomplete` named it.
    # Now the refused SIGTERM names it at once, and the end waits for it no more.
    stoker = _nobody_s_stoker()
    with open_sandbox() as top:
        run, sandbox, err = _as_nobody(top, job(Path("ROOTPY"), daemon=True), stoker)
        held: set[int] = set()
        try:
            pid = _held(sandbox)
            held = {pid}
            ran_at = time.monotonic()
            assert run.wait(15) == 0  # not after the 20 s grace
            figures.add("natural end with a daemon it may not signal (s)", f"{time.monotonic() - ran_at:.3f}")
            text = err.read_text(errors="replace")
            said = [line for line in text.splitlines() if "daemons_unsignalled" in line]
            assert len(said) == 1 and "signal=SIGTERM" in said[0] and f"pid {pid} (" in said[0], text
            assert "uid 0)" in said[0] and "does not wait for them" in said[0], said
            assert "watchdog_stuck" not in text, text
            assert proc_scan.live(held) == held
        finally:
            _end(run, held)


def _end(run: subprocess.Popen, held: set[int]) -> None:
    if run.poll() is None:
        run.kill()
        run.wait(5)
    for pid in held:
        pidnames.kill(pid)


def test_a_stray_signal_from_its_task_leaves_the_executor_running(tmp_path):
    from config.document import encode
    from config.loader import load_job

    (tmp_path / "job.aurora").write_text(textwrap.dedent("""
        p = Process(name='web', cmdline='kill -USR1 $PPID; kill -ALRM $PPID; kill -HUP $PPID; kill -QUIT $PPID; kill -RTMIN+3 $PPID; kill -TRAP $PPID; touch sent; sleep 1000')
        jobs = [Service(cluster='local', role='me', environment='test', name='web',
                        task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                                  finalization_wait=1))]
    """))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    sim = AgentSimulator(sandbox=sandbox)
    try:
        sim.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=sandbox)
        sim.wait_subscribed(timeout_secs=10)
        sim.launch(make_task_info("task-1", encode(load_job(tmp_path / "job.aurora")), ports=free_ports(2)))
        sim.wait_for_state("task-1", "TASK_RUNNING", 10)
        wait_for(lambda: (sandbox / "sent").exists(), 10, message="the stray signals sent")
        wait_for(lambda: sim.executor_log().count("signal_ignored") >= 6, 5, message="a line for each")
        pids = task_pids(sandbox)
        assert live(pids) == pids  # the task runs on, under its executor
        sim.kill("task-1")
        sim.wait_for_state("task-1", "TASK_KILLED", 10)
        assert sim.wait_exit(10) == 0
        assert sim.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"]
    finally:
        sim.close()
        kill_leftovers(task_pids(sandbox))
