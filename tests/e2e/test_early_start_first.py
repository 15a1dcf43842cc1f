"""A first run's early start (executor/cli/launchfirst.py, `start_first`): a config run for the
first time has its first processes started from the plan the child forked ahead made, as
soon as `stoker run` has read its settings, before its supervisor's own start (session,
cgroup, watchdog, checkpoint), and the supervisor adopts them; a config that fails to
load, or a run that fails on its settings, never started a process."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from executor.local import planfiles
from tests.support.earlyjob import early_run, run_to_success, stdout_of, write
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess, checkpoint_records, kill_leftovers, live
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

# Writes a file once it runs: a run started by mistake leaves it behind.
TOUCH = "Process(name='first', cmdline='touch {path}; echo {{{{thermos.task_id}}}}')"


def adopted(proc: StokerProcess) -> list[str]:
    return re.findall(r"process_adopted task=\S+ process=(\S+) run=0", proc.stderr())


def test_a_first_run_starts_the_plan_made_aheads_first_runs_and_adopts_them(tmp_path):
    config = write(tmp_path, TOUCH.format(path="ran"), "Process(name='second', cmdline='echo second')",
                   "Process(name='after', cmdline='echo after')")
    config.write_text(config.read_text().replace("finalization_wait=2)", "finalization_wait=2, "
                                                 "constraints=[Constraint(order=['first', 'after'])])"))
    proc, sandbox = run_to_success(tmp_path, config)
    assert sorted(adopted(proc)) == ["first", "second"]  # `after` waits for `first`: the supervisor's
    task = stdout_of(sandbox, "first").strip()
    header = next(r for r in checkpoint_records(sandbox) if r.get("kind") == "header")
    assert re.fullmatch(r"early-0-[0-9a-f]{8}", task) and header["task_id"] == task
    assert stdout_of(sandbox, "after") == "after\n"
    # the plan is kept as after any first run: the next run starts from it
    entry = planfiles.entry_path(str(tmp_path / "plans"), str(config), None, 0, "")
    assert (tmp_path / "plans" / (entry.rsplit("/", 1)[1] + planfiles.START_SUFFIX)).exists()


@pytest.mark.parametrize("later, problem", [
    ("Process(name='other', cmdline='echo {{nope}}')", "nope"),
    ("Process(name='first', cmdline='echo twice')", "first"),
    ("Process(name='other', cmdline='echo', max_failures=-1)", "max_failures"),
])
def test_a_config_that_fails_to_load_after_its_first_process_never_started_it(tmp_path, later, problem):
    marker = tmp_path / "ran"
    config = write(tmp_path, TOUCH.format(path=marker), later)
    proc, sandbox = early_run(tmp_path, config)
    try:
        code = proc.wait()
    finally:
        proc.close()
    assert code != 0 and problem in proc.stderr(), proc.stderr()
    assert not marker.exists() and not (sandbox / ".logs").exists()
    assert "process_adopted" not in proc.stderr()


def test_a_run_that_fails_on_its_settings_never_started_the_plan_made_ahead(tmp_path):
    marker = tmp_path / "ran"
    proc, sandbox = early_run(tmp_path, write(tmp_path, TOUCH.format(path=marker)),
                              env={"STOKER_LOG_LEVEL": "bogus", "PYTHONPROFILEIMPORTTIME": "1"})
    try:
        assert proc.wait() == 2
    finally:
        proc.close()
    assert "STOKER_LOG_LEVEL" in proc.stderr() and not marker.exists() and not sandbox.exists()
    # its settings are read before the supervisor loads (a first run's early start comes
    # between, `launchfirst.start_first`): a usage error ends it without loading the supervisor
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", proc.stderr(), re.MULTILINE)
    assert "executor.cli.main" in imported and "executor.local.run" not in imported


def test_a_supervisor_killed_before_it_adopts_a_first_runs_early_runs_leaves_nothing(tmp_path):
    config = write(tmp_path, "Process(name='killer', cmdline='setsid sleep 1000 & echo $$ $! > pids; "
                             "kill -9 $PPID; exec sleep 1000')")
    proc, sandbox = early_run(tmp_path, config)
    pids: list[int] = []
    try:
        assert proc.wait() == -signal.SIGKILL
        pids = [int(p) for p in wait_for(lambda: (sandbox / "pids").exists() and (sandbox / "pids").read_text().split(),
                                         10, message="the run's pids")]
        wait_for(lambda: not live(pids), 10, message=f"the task's processes {pids} killed")
    finally:
        proc.close()
        kill_leftovers(pids)


# A module of the supervisor that fails as it loads while the child plans (a broken install;
# here once, a test-only `sitecustomize`), which also lets the child answer only then: it
# reads a FIFO first, which the failed load writes.
FAILS_ONCE_WHILE_PLANNING = patched_at_load("executor.task.wiring", """
    def _patch(module):
        with open(os.environ["PLAN_GATE"], "w") as gate:
            gate.write("go")
        raise ImportError("executor.task.wiring: a broken install")
    """)


def gated_run(tmp_path: Path, hook_text: str) -> tuple[StokerProcess, Path]:
    """A first run of a config that touches `ran`, planned behind a FIFO the `hook_text`
    sitecustomize opens (PLAN_GATE); waited for to its end (exit 0), its leftovers killed."""
    hook, gate = tmp_path / "hook", tmp_path / "gate"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hook_text)
    os.mkfifo(gate)
    config = write(tmp_path, TOUCH.format(path="ran"))
    config.write_text(f"open({str(gate)!r}).read()\n" + config.read_text())
    return run_to_success(tmp_path, config, env={"PYTHONPATH": f"{hook}:{REPO}", "PLAN_GATE": str(gate)})


def test_a_supervisors_module_that_fails_to_load_while_the_child_plans_starts_no_run_early(tmp_path):
    # its runs might never be adopted (the supervisor's import fails again): started early,
    # the user's command ran and was killed again
    proc, sandbox = gated_run(tmp_path, FAILS_ONCE_WHILE_PLANNING)
    # loaded the second time, the supervisor started it (the plan made ahead's, not early)
    assert adopted(proc) == [] and (sandbox / "ran").exists()


# The child answers while the supervisor's modules load (launchfirst's LOAD_WHILE_PLANNING):
# as `executor.task.checks` loads (within `executor.task.owner`'s import, one of them), the
# gate the config waits on is opened and the child is waited for (its answer is in the pipe
# once it has ended); then the next module of Stoker's about to load is looked up, and
# whether the first run had started before and after it is noted.
ANSWERS_MID_IMPORT = patched_at_load("executor.task.checks", """
    def _patch(module):
        with open(os.environ["PLAN_GATE"], "w") as gate:
            gate.write("go")
        deadline = time.monotonic() + 60
        while not _child_ended() and time.monotonic() < deadline:
            time.sleep(0.005)
        before = (_child_ended(), _started())
        importlib.util.find_spec("executor.no_such_module")  # the next module of Stoker's to load
        with open(os.environ["SEEN"], "w") as seen:
            seen.write(f"{before} {_started()}")

    def _child_ended():  # the planning child, this process's only child yet, a zombie
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == str(os.getpid()) and fields[0] == "Z":
                return True
        return False

    def _started():
        return os.path.exists(os.path.join(os.environ["SANDBOX"], ".logs", "first", "0", "stdout"))
    """)


def test_the_first_run_starts_as_soon_as_the_answer_is_seen_between_two_modules(tmp_path):
    # not once the whole import in progress has ended (`launchfirst._AnswerWatch`): then the
    # run started only after `executor.task.owner` and its ten-odd modules had loaded
    hook, gate, seen = tmp_path / "hook", tmp_path / "gate", tmp_path / "seen"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(ANSWERS_MID_IMPORT)
    os.mkfifo(gate)
    config = write(tmp_path, TOUCH.format(path="ran"))
    config.write_text(f"open({str(gate)!r}).read()\n" + config.read_text())
    proc, sandbox = run_to_success(tmp_path, config, env={"PYTHONPATH": f"{hook}:{REPO}", "PLAN_GATE": str(gate),
                                                    "SEEN": str(seen), "SANDBOX": str(tmp_path / "sandbox")})
    assert seen.read_text() == "(True, False) True"  # answered, not started; started at the next module
    assert adopted(proc) == ["first"] and (sandbox / "ran").exists()


# The config's own code running after its plan was made (a thread it started, a finalizer):
# here, deterministically, in place of the judgement whether its files are closed, which the
# child makes after it sent the plan the early start starts the runs from.
AFTER_THE_PLAN = {
    "ends its process": "os._exit(3)",
    "raises": "raise RecursionError('maximum recursion depth exceeded')",
}


@pytest.mark.parametrize("after", sorted(AFTER_THE_PLAN))
def test_a_child_that_fails_after_it_sent_the_plan_leaves_the_started_runs_to_the_run(tmp_path, after):
    # the runs started from the plan it sent first: the run goes on with them, the plan not
    # kept, rather than failing the config it had run (the early start's runs killed again)
    config = write(tmp_path, TOUCH.format(path="ran"))
    config.write_text("import os\nimport config.purity\n\ndef judged(*args):\n"
                      f"    {AFTER_THE_PLAN[after]}\n\nconfig.purity.closed_problem = judged\n" + config.read_text())
    proc, sandbox = run_to_success(tmp_path, config)
    assert adopted(proc) == ["first"] and (sandbox / "ran").exists()
    assert "plan_cache_not_kept" in proc.stderr() and "not judged" in proc.stderr(), proc.stderr()
    assert not list((tmp_path / "plans").glob("*" + planfiles.PLAN_SUFFIX))


# once `executor.local.run`, the last of the supervisor's modules `start_first` loads while
# the child plans, has loaded, the gate the config waits on is opened: the child answers only
# after they all loaded
OPENS_THE_GATE_LAST = patched_at_load("executor.local.run", """
    def _patch(module):
        with open(os.environ["PLAN_GATE"], "w") as gate:
            gate.write("go")
    """)


def test_a_plan_that_comes_once_the_supervisor_s_modules_all_loaded_still_starts_its_first_runs(tmp_path):
    # the wait for the plan outlasted the imports it does meanwhile: the runs start from it all the same
    proc, sandbox = gated_run(tmp_path, OPENS_THE_GATE_LAST)
    assert adopted(proc) == ["first"] and (sandbox / "ran").exists()
