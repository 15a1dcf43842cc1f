"""A Ctrl-C at a given moment of `stoker`'s start (docs/contract.md §9): the process sends
itself a real SIGINT as it starts to import a given module (the test-only hook in
tests/support/signal_at_import/), and ends as a Ctrl-C once running ends it: exit 130, no
traceback, nothing of the run left, and the next run of the same config works."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, live, task_pids

HOOK = REPO / "tests/support/signal_at_import"
CONFIG = """
main = Process(name='main', cmdline='sleep 600')
jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                task=Task(processes=[main], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
# Moments of the start, in order: before the entry point's first `try` was entered (where a
# Ctrl-C was a traceback), the early start's module, the code cache's, the command's
MOMENTS = ("executor.nodocs", "executor.cli.launch", "executor.codecache", "executor.cli.main")


def interrupted(args: list[str], workdir: Path, module: str, signum: int = signal.SIGINT) -> StokerProcess:
    """`stoker ARGS` sent `signum` by itself as it looks for `module`; ended."""
    env = {"PYTHONPATH": f"{HOOK}{os.pathsep}{REPO}", "STOKER_TEST_SIGNAL_AT": f"{module}:{int(signum)}"}
    proc = StokerProcess(args, workdir, env=env)
    try:
        proc.wait()
    finally:
        proc.close()
    return proc


def assert_ended_by(proc: StokerProcess, module: str, signum: int = signal.SIGINT) -> None:
    """Ended by `signum` as `module` was looked for: 128 + its number as a shell reports it
    (a SIGTERM or SIGHUP while loading ends the process at their default), no traceback."""
    err = proc.stderr()
    assert f"signal-at-import: {int(signum)} at {module}" in err, err  # the moment came
    assert "Traceback" not in err, err
    status = proc.proc.returncode
    assert (128 - status if status < 0 else status) == 128 + signum, err


@pytest.mark.parametrize(("module", "signum"), [*((m, signal.SIGINT) for m in MOMENTS),
                                                ("executor.nodocs", signal.SIGHUP),
                                                ("executor.cli.main", signal.SIGTERM)])
def test_a_stop_as_stoker_run_loads_ends_it_as_later_and_the_next_run_works(tmp_path, module, signum):
    config, sandbox = tmp_path / "job.aurora", tmp_path / "sb"
    config.write_text(CONFIG)
    args = ["run", str(config), "--sandbox", str(sandbox), "--root", str(tmp_path / "root")]
    first = interrupted(args, tmp_path, module, signum)
    assert_ended_by(first, module, signum)
    assert not live(task_pids(sandbox))
    again = StokerProcess(args, tmp_path)
    try:
        again.wait_output("main", timeout_secs=30)
        again.wait_output("RUNNING", timeout_secs=30)
        pids = task_pids(sandbox)
        again.signal(signal.SIGINT)
        assert again.wait() == 130, again.stderr()
        assert "Traceback" not in again.stderr()
        assert not live(pids)
    finally:
        again.close()
        kill_leftovers(task_pids(sandbox))


@pytest.mark.parametrize("command", [["status", "."], ["ps", "--root", "root"], ["executor"]])
@pytest.mark.parametrize("module", ["executor.nodocs", "executor.cli.main"])
def test_a_ctrl_c_as_a_command_loads_exits_130(tmp_path, command, module):
    proc = interrupted(command, tmp_path, module)
    assert_ended_by(proc, module)
