"""The early start's tests' job (tests/e2e/test_early_start*.py): a config of the given
processes, `stoker run` of it with the test's plan cache, what a run printed, and a hook that
holds `stoker run` for a kill."""
from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

JOB = """
    jobs = [Job(cluster='local', role='me', environment='test', name='early',
                task=Task(processes=[{processes}], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                          finalization_wait=2))]
"""


def write(tmp_path: Path, *processes: str) -> Path:
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(JOB.format(processes=", ".join(processes))))
    return config


def early_run(tmp_path: Path, config: Path, name: str = "sandbox", env: dict[str, str] | None = None,
              launcher: tuple[str, ...] = ()) -> tuple[StokerProcess, Path]:
    """`stoker run CONFIG --sandbox TMP/NAME` in TMP/work-NAME, with a plan cache of the
    test's (TMP/plans) and DEBUG logs: the run and its sandbox."""
    sandbox = tmp_path / name
    work = tmp_path / f"work-{name}"
    work.mkdir()
    env = {"STOKER_PLAN_CACHE": str(tmp_path / "plans"), "STOKER_LOG_LEVEL": "DEBUG", **(env or {})}
    return StokerProcess(["run", str(config), "--sandbox", str(sandbox)], work, env=env, launcher=launcher), sandbox


def run_to_success(tmp_path: Path, config: Path, env: dict[str, str] | None = None) -> tuple[StokerProcess, Path]:
    """`early_run` waited for: it must exit 0 (its output says why not); closed, and what its
    task left killed."""
    proc, sandbox = early_run(tmp_path, config, env=env)
    try:
        proc.exited(0)
    finally:
        kill_leftovers(task_pids(sandbox))
    return proc, sandbox


def stdout_of(sandbox: Path, process: str, run: int = 0) -> str:
    return (sandbox / ".logs" / process / str(run) / "stdout").read_text()


# Holds `stoker run` between taking its sandbox (its control socket serving) and making its
# task's owner until the run's `stoker kill` is answered: the kill lands while it prepares,
# every time (a test-only `sitecustomize`, on the PYTHONPATH of this test's runs alone).
HOLD_FOR_KILL = patched_at_load("executor.local.run", """
    def _patch(module):
        real = module.hold_sandbox

        def hold(sandbox, *args, **kwargs):
            session = real(sandbox, *args, **kwargs)
            answer, deadline = os.path.join(sandbox, "killed"), time.monotonic() + 10
            while time.monotonic() < deadline and not _answered(answer):
                time.sleep(0.01)
            return session

        module.hold_sandbox = hold

    def _answered(path):
        # the supervisor's answer, not the line `stoker kill` prints while it waits for a
        # supervisor that has not opened its socket yet (a kill that ran early, under load)
        try:
            with open(path) as lines:
                return any(line.strip() and not line.rstrip().endswith("waiting for it") for line in lines)
        except FileNotFoundError:
            return False
    """)


def planned(tmp_path: Path, config: Path, env: dict[str, str] | None = None,
            launcher: tuple[str, ...] = ()) -> Path:
    """`stoker run CONFIG` in TMP/planned (`early_run`) until its first RUNNING line, then
    stopped and what it left killed: its plan is kept for the early start of the next. Its
    sandbox."""
    proc, sandbox = early_run(tmp_path, config, "planned", env=env, launcher=launcher)
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
    finally:
        proc.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))
    return sandbox


def kept_then_hooked(tmp_path: Path, config: Path, sitecustomize: str, env: dict[str, str]) -> tuple:
    """`stoker run CONFIG` once (its plan kept), then again (an early start) with
    `sitecustomize` on its PYTHONPATH: the second run, started, and its sandbox."""
    planned(tmp_path, config, env)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(sitecustomize)
    return early_run(tmp_path, config, "again", env={"PYTHONPATH": f"{hook}:{REPO}", **env})
