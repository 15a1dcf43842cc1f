"""Runs readied ahead (`RunLogs.ready_ahead`) that a supervisor killed -9 before its first
step left behind: no reader lists them as runs (`stoker tail`, the observer), and the next
`stoker run` in the sandbox removes them rather than keeping them as an earlier attempt's
logs. Real processes: the readying one killed -9, the real CLI after it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor.observe.reader import _runs
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

READY_AND_WAIT = """
import sys, time
from pathlib import Path
from config.spec import ProcessSpec
from executor.procs.runlogs import RunLogs

RunLogs(Path(sys.argv[1]), "once.0").ready_ahead([(ProcessSpec(name="a", cmdline="true"), 0)], 1 << 20)
print("readied", flush=True)
time.sleep(60)
"""


def _killed_after_readying(sandbox: Path) -> None:
    """A real process readies run 0 of `a` in `sandbox`, as a supervisor waiting for its
    task's cgroup does, and is killed -9 there."""
    sandbox.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", READY_AND_WAIT, str(sandbox)], stdout=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"readied\n"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert (sandbox / ".logs/a/0/stdout").exists()


def _stoker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), STOKER_ROOT=str(tmp_path / "registry"))
    return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)


def test_a_run_readied_and_never_started_is_no_run_to_a_reader(tmp_path):
    sandbox = tmp_path / "sb"
    _killed_after_readying(sandbox)
    tail = _stoker(tmp_path, "tail", str(sandbox), "a")
    assert (tail.returncode, tail.stdout) == (1, "")
    assert tail.stderr == f"stoker: error: process 'a' has no log of any run in {sandbox}/.logs\n"
    pdir = os.open(sandbox / ".logs/a", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _runs(pdir) == ()  # the observer's: no latest run to show, none to follow into
    finally:
        os.close(pdir)


def test_the_next_run_in_the_sandbox_removes_runs_readied_and_never_started(tmp_path):
    """Was: kept as `.logs.attempt-0`, an attempt whose run 0 (`stoker tail --attempt 0`)
    never ran, and the attempts' numbers one past what the operator counted."""
    sandbox = tmp_path / "sb"
    _killed_after_readying(sandbox)
    job = tmp_path / "once.aurora"
    job.write_text(textwrap.dedent("""
        jobs = [Job(cluster='local', role='me', environment='test', name='once',
                    task=Task(processes=[Process(name='a', cmdline='echo ran')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    done = _stoker(tmp_path, "run", str(job), "--sandbox", str(sandbox))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in sandbox.iterdir() if p.name.startswith(".logs")) == [".logs"]
    assert (sandbox / ".logs/a/0/stdout").read_text() == "ran\n"
    assert not os.stat(sandbox / ".logs/a/0/stdout").st_mode & 0o1000  # its mark cleared as it started
    assert _stoker(tmp_path, "tail", str(sandbox), "a").stdout == "ran\n"


@pytest.mark.parametrize("output", ["echo precious; echo also >&2", ":"])
def test_a_run_whose_task_set_the_sticky_bit_on_its_logs_is_a_run(tmp_path, output):
    """A task may chmod what is in its sandbox (`chmod -R 1777 .`, a shared scratch area made
    world-writable): its run's stdout then carries the sticky bit, the readied mark. Was: its
    run hidden from `stoker tail`, and removed with its output by the next `stoker run` in the
    sandbox (attempt 0's logs gone). A readied run's files are empty, its stderr unmarked."""
    sandbox = tmp_path / "sb"
    job = tmp_path / "once.aurora"
    job.write_text(textwrap.dedent(f"""
        jobs = [Job(cluster='local', role='me', environment='test', name='once',
                    task=Task(processes=[Process(name='a', cmdline='{output}; chmod -R 1777 .logs')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    done = _stoker(tmp_path, "run", str(job), "--sandbox", str(sandbox))
    assert done.returncode == 0, done.stderr
    assert os.stat(sandbox / ".logs/a/0/stdout").st_mode & 0o1000  # the task's chmod, as it ran
    wrote = "precious\n" if output != ":" else ""
    tail = _stoker(tmp_path, "tail", str(sandbox), "a")
    assert (tail.returncode, tail.stdout) == (0, wrote), tail.stderr
    again = _stoker(tmp_path, "run", str(job), "--sandbox", str(sandbox))
    assert again.returncode == 0, again.stderr
    assert (sandbox / ".logs.attempt-0/a/0/stdout").read_text() == wrote
    assert (sandbox / ".logs.attempt-0/a/0/stderr").read_text() == ("also\n" if wrote else "")
