"""A job still not planned after a few seconds is said, once: `stoker run` and `stoker
inspect` of a config whose code never ends (a FIFO nobody writes to, `while True`) were
silent until the planning child's bound (60 s) stopped it. The real command line, with the
line's time (`planahead.SLOW_SECS`) lowered in its process: the text form while a first run's
child forked ahead plans (`run CONFIG --sandbox DIR`), the JSON event while `plan_apart`'s
child does (other flags), the job planned and run once the config ends after the line, and
the bound's error after it. Which of `PlanAhead`'s waits says it is test_planahead.py's."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.test_planning import held_config
from tests.support.stoker_proc import REPO, StokerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

JOB = """
jobs = [Job(name="slow", role="r", environment="devel", cluster="c",
            task=Task(name="t", processes=[Process(name="p", cmdline="echo planned")],
                      resources=Resources(cpu=1, ram=1*MB, disk=1*MB)))]
"""


def entry(slow_secs: float, bound_secs: float = 60.0) -> tuple[str, str]:
    """The `stoker` console script's entry, with the line's time and the planning bound set."""
    return ("-c", "import sys; from executor.local import planahead, planning; "
                  f"planahead.SLOW_SECS = {slow_secs}; planning.PLAN_TIMEOUT_SECS = {bound_secs}; "
                  "from executor.cli.start import run; sys.exit(run())")


def open_gate(gate: Path) -> None:
    with open(gate, "w") as held:
        held.write("go")


def warnings(proc: StokerProcess) -> list[str]:
    return [line for line in proc.stderr().splitlines() if "still not" in line]


def stoker_run(tmp_path: Path, *args: str, slow_secs: float, bound_secs: float = 60.0) -> StokerProcess:
    """`stoker run ARGS --sandbox tmp_path/sandbox`, registered under tmp_path/root."""
    return StokerProcess(["run", *args, "--sandbox", str(tmp_path / "sandbox")], tmp_path,
                         env={"STOKER_ROOT": str(tmp_path / "root")}, entry=entry(slow_secs, bound_secs))


def ended(proc: StokerProcess, code: int, gate: Path | None = None) -> StokerProcess:
    """`proc` waited for to its exit with status `code` (the gate opened first, once its
    slow line is said, when given), and closed either way."""
    try:
        if gate is not None:
            assert wait_for(lambda: warnings(proc), 20, message="the slow line")
            assert proc.proc.poll() is None, proc.stderr()
            open_gate(gate)
        assert proc.wait() == code, proc.stderr()
    finally:
        proc.close()
    return proc


def test_a_run_still_not_planned_says_so_once_and_runs_the_job_once_the_config_ends(tmp_path):
    gate, config = held_config(tmp_path, JOB)
    proc = ended(stoker_run(tmp_path, str(config), slow_secs=0.2), 0, gate)
    assert warnings(proc) == [f"stoker: warning: '{config}': the job is still not planned after 0.2 s; "
                              "planning is stopped at 60 s (Ctrl-C stops it now)"]
    assert "task finished successfully" in proc.stdout()


def test_the_line_is_a_json_event_with_log_format_json_and_the_bound_s_error_follows_it(tmp_path):
    fifo = tmp_path / "job.aurora"
    os.mkfifo(fifo)  # the config itself never ends: its read is stopped at the bound
    proc = ended(stoker_run(tmp_path, "--log-format", "json", str(fifo), slow_secs=0.1, bound_secs=2.0), 2)
    said = [(e["event"], e["level"], e["reason"]) for e in proc.events() if e["event"].startswith("stoker_")]
    assert said == [
        ("stoker_warning", "WARNING",
         f"'{fifo}': the job is still not planned after 0.1 s; planning is stopped at 2 s (Ctrl-C stops it now)"),
        ("stoker_error", "ERROR",
         f"'{fifo}': the job was still not planned after 2 s (a config file that never ends, such as a "
         "FIFO nobody writes to?), so planning was stopped")]


def test_inspect_still_not_loaded_says_so_once_and_prints_the_job_once_the_config_ends(tmp_path):
    gate, config = held_config(tmp_path, JOB)
    proc = ended(StokerProcess(["inspect", str(config)], tmp_path, entry=entry(0.2)), 0, gate)
    assert warnings(proc) == [f"stoker: warning: '{config}': the job is still not loaded after 0.2 s; "
                              "loading is stopped at 60 s (Ctrl-C stops it now)"]
    assert proc.stdout().startswith("job c/r/devel/slow\n"), proc.stdout()


def test_a_job_planned_in_time_says_nothing(tmp_path):
    config = tmp_path / "job.aurora"
    config.write_text(JOB)
    proc = ended(stoker_run(tmp_path, str(config), slow_secs=20.0), 0)
    assert warnings(proc) == [] and "task finished successfully" in proc.stdout()


def test_a_program_that_plans_without_the_command_line_gets_the_line_as_a_log_event(tmp_path):
    # `LocalRun` embedded: no `stoker: warning:` writer loaded (executor.local never imports it)
    gate, config = held_config(tmp_path, JOB)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import logging, sys
        from executor.local import planahead
        from executor.local.planahead import inputs_of
        from executor.local.planning import job_planner, plan_apart
        planahead.SLOW_SECS = 0.1

        class Opens(logging.Handler):  # the line said: the config may end
            def emit(self, record):
                print(record.name, record.stoker_event, record.levelname, record.stoker_fields["reason"],
                      flush=True)
                with open(sys.argv[2], "w") as gate:
                    gate.write("go")

        logging.getLogger().addHandler(Opens())
        plan, _, _ = plan_apart(job_planner(inputs_of(sys.argv[1], None, (), 0, (), "h", "u")), source="the job")
        print(plan.name, "executor.cli.logsetup" in sys.modules)
    """), str(config), str(gate)], cwd=REPO, capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.stdout.splitlines() == [
        "executor.local.planahead plan_slow WARNING the job: the job is still not planned after 0.1 s; planning is stopped at 60 s "
        "(Ctrl-C stops it now)", "slow False"], done.stderr
