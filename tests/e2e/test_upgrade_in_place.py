"""Stoker upgraded in place: one checkout (or installation) path whose modules an upgrade
rewrote, run again with what the old code kept (the plan cache). Each old version is a copy
of Stoker's tree with a module edited as the old code had it; the upgrade writes the module
back as it is now. Nothing the old code made may serve the new one.
"""
from __future__ import annotations

import compileall
import os
import py_compile
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import cgroups as task_cgroups
from tests.support.executor_e2e import HELLO, agent_for, document, launch
from tests.support.stoker_proc import REPO, StokerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

PACKAGES = ("executor", "config", "healthcheck")
PORTMAP_JOB = textwrap.dedent("""\
    jobs = [Job(cluster='local', role='r', environment='test', name='pm',
                announce=Announcer(portmap={'http': 8080}),
                task=Task(processes=[Process(name='p', cmdline='echo port={{thermos.ports[http]}}')],
                          resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)))]
""")
# planfiles.py before d38c460 (`allocate_ports`, since in planning.py): a `--port` of a name of
# the job's portmap was dropped when the plan chose no port, and the portmap's number bound instead
OLD_ALLOCATE = textwrap.dedent("""

    _allocate_as_now = allocate_ports


    def allocate_ports(names, fixed):
        return _allocate_as_now(names, {name: fixed[name] for name in names if name in fixed})
""")


def tree(tmp_path: Path) -> Path:
    """A copy of Stoker's packages, as a checkout of its own."""
    where = tmp_path / "install"
    for package in PACKAGES:
        shutil.copytree(REPO / package, where / package, ignore=shutil.ignore_patterns("__pycache__"))
    return where


def run_once(tmp_path: Path, installed: Path, config: Path, name: str) -> str:
    """`stoker run CONFIG --port http=9999` of `installed`'s code, to its end: what its process printed."""
    work = tmp_path / name
    work.mkdir()
    env = {"PYTHONPATH": str(installed), "STOKER_PLAN_CACHE": str(tmp_path / "plans"),
           "STOKER_ROOT": str(tmp_path / "root")}
    StokerProcess(["run", str(config), "--port", "http=9999", "--sandbox", str(work / "sandbox")],
                  work, env=env).exited(0)
    return (work / "sandbox" / ".logs" / "p" / "0" / "stdout").read_text()


def test_a_plan_the_old_planning_code_kept_is_not_served_after_an_upgrade_of_that_code(tmp_path):
    """The plan's key stamped `config/` and pystachio only: an upgrade that fixed how a plan's
    ports are chosen (`executor/local/planning.py`) still served the plan the old code kept,
    with its wrong port, at every re-run until the config changed."""
    installed = tree(tmp_path)
    module = installed / "executor" / "local" / "planning.py"
    now = module.read_text()
    module.write_text(now + OLD_ALLOCATE)
    config = tmp_path / "pm.aurora"
    config.write_text(PORTMAP_JOB)
    assert run_once(tmp_path, installed, config, "old") == "port=8080\n"  # the old code's plan, kept
    module.write_text(now)  # the upgrade
    assert run_once(tmp_path, installed, config, "new") == "port=9999\n"


def sourceless(installed: Path) -> None:
    """`installed` as an installation without sources: each module's `.pyc` beside where its
    source was (`compileall -b`), as Python imports it when the `.py` is not there."""
    assert compileall.compile_dir(str(installed), legacy=True, quiet=1)
    for source in installed.rglob("*.py"):
        source.unlink()


def test_an_upgrade_in_place_of_an_installation_without_sources_plans_afresh(tmp_path):
    """The stamp named each module's `.py` alone: an installation of `.pyc` files beside
    where the sources were stamped nothing of Stoker's, so an upgrade that rewrote them
    (how a plan's ports are chosen) still served the plan the old code kept."""
    installed = tree(tmp_path)
    module = installed / "executor" / "local" / "planning.py"
    old = tmp_path / "old_planning.py"
    old.write_text(module.read_text() + OLD_ALLOCATE)
    sourceless(installed)
    compiled = installed / "executor" / "local" / "planning.pyc"
    now = compiled.read_bytes()
    py_compile.compile(str(old), cfile=str(compiled), dfile=str(module), doraise=True)
    config = tmp_path / "pm.aurora"
    config.write_text(PORTMAP_JOB)
    assert run_once(tmp_path, installed, config, "old") == "port=8080\n"  # the old code's plan, kept
    compiled.write_bytes(now)  # the upgrade
    assert run_once(tmp_path, installed, config, "new") == "port=9999\n"


BROKEN_MODULE = 'raise ImportError("the upgrade\'s module, written while the old supervisor ran")\n'
SLEEPER = textwrap.dedent("""\
    jobs = [Job(cluster='local', role='r', environment='test', name='long',
                task=Task(processes=[Process(name='p', cmdline='sleep 600')],
                          resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)))]
""")


def run_then_upgrade(tmp_path: Path, job: str, modules: tuple[str, ...]) -> tuple[StokerProcess, Path, dict[str, str]]:
    """`stoker run` of `job` from a copy of the tree, its `modules` (paths in it) then rewritten
    as an upgrade in place that cannot load, once the supervisor has run its first second;
    the running `stoker run`, its sandbox and environment (the caller closes the process)."""
    installed = tree(tmp_path)
    config = tmp_path / "job.aurora"
    config.write_text(job)
    env = {"PYTHONPATH": str(installed), "STOKER_PLAN_CACHE": str(tmp_path / "plans"),
           "STOKER_ROOT": str(tmp_path / "root")}
    sandbox = tmp_path / "sandbox"
    proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], tmp_path, env=env)
    try:
        proc.wait_output("WAITING → RUNNING")
        time.sleep(1.5)  # the looks after the start step the owner at 0.05, 0.2 and 0.8 s
        for module in modules:
            (installed / module).write_text(BROKEN_MODULE)  # the upgrade
            for stale in installed.rglob(f"{Path(module).stem}*.pyc"):
                stale.unlink()
    except BaseException:
        proc.sigterm_and_close()
        raise
    return proc, sandbox, env


def killed_cleanly(proc: StokerProcess, sandbox: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """`stoker kill` of the upgraded run: both exit 0, and the run printed no traceback."""
    try:
        StokerProcess(["kill", str(sandbox)], tmp_path, env=env).exited(0)
        proc.exited(0)
    finally:
        proc.sigterm_and_close()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-3000:]


@pytest.mark.parametrize("how", ["kill", "ctrl-c"])
def test_a_supervisor_running_through_an_upgrade_kills_with_the_code_it_started_with(tmp_path, how):
    """A task's first kill loaded the kill's machine (`executor/task/kill.py`) then, weeks
    after the start: after an upgrade in place, the new version's file into the old
    supervisor (here one that cannot load at all: the kill failed, a traceback, the task not
    KILLED). The supervisor now loads it within its first second, as it started."""
    # (healthcheck/base.py: a killed run's words)
    proc, sandbox, env = run_then_upgrade(tmp_path, SLEEPER, ("executor/task/kill.py", "healthcheck/base.py"))
    try:
        if how == "kill":
            StokerProcess(["kill", str(sandbox)], tmp_path, env=env).exited(0)
            proc.exited(0)
        else:
            proc.stop(signal.SIGINT, 130)
    finally:
        proc.sigterm_and_close()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-3000:]
    assert "task             RUNNING → KILLING" in proc.stdout() and "KILLING → KILLED" in proc.stdout(), proc.stdout()[-2000:]


def test_a_supervisor_running_through_an_upgrade_leaves_its_cgroup_to_the_watchdog_when_the_walk_does_not_load(tmp_path):
    """A task cgroup whose removal fails (EBUSY: a cgroup a run made below it) loads the walk
    (`executor/procs/cgroupwalk.py`) then, long after the start: after an upgrade in place that
    cannot load it, the stop ended in a traceback. Now the close names it and lets the
    watchdog, which needs no module, remove what is left."""
    if os.geteuid() != 0 or (why := task_cgroups.unavailable()) is not None:
        pytest.skip("a task cgroup and one made below it need root" if os.geteuid() else why)
    proc, sandbox, env = run_then_upgrade(tmp_path, SLEEPER, ("executor/procs/cgroupwalk.py",))
    [directory] = task_cgroups.stoker_cgroups_of(proc.proc.pid) or [None]
    try:
        assert directory is not None, "the supervisor is in no task cgroup"
        os.mkdir(os.path.join(directory, "a-run-s-own"))
        killed_cleanly(proc, sandbox, tmp_path, env)
        assert "cgroup_remove_failed" in proc.stderr() and "cgroupwalk" in proc.stderr(), proc.stderr()[-3000:]
        wait_for(lambda: not os.path.exists(directory), 10, message=f"the watchdog removes {directory}")
    finally:
        if directory is not None and os.path.exists(directory):
            task_cgroups.remove(directory)


SERVICE = textwrap.dedent("""\
    jobs = [Service(cluster='local', role='r', environment='test', name='svc',
                    task=Task(processes=[Process(name='p', cmdline='echo {{thermos.ports[health]}}; exec sleep 600')],
                              resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)),
                    lifecycle=LifecycleConfig(http=HttpLifecycleConfig(graceful_shutdown_wait_secs=0.1,
                                                                       shutdown_wait_secs=0.1)))]
""")


def test_a_supervisor_running_through_an_upgrade_calls_the_lifecycle_endpoints_it_started_with(tmp_path):
    """A kill of a task with lifecycle endpoints loaded their caller (`executor/task/lifecycle.py`,
    `healthcheck.loopback`, `healthcheck.http_check`) at the kill: after an upgrade in place
    the new version's files (here ones that cannot load: a traceback, the task never KILLED).
    The supervisor now loads them with the kill's machine, within its first second."""
    proc, sandbox, env = run_then_upgrade(
        tmp_path, SERVICE, ("executor/task/lifecycle.py", "healthcheck/loopback.py", "healthcheck/http_check.py"))
    killed_cleanly(proc, sandbox, tmp_path, env)
    assert "lifecycle" in proc.stdout(), proc.stdout()[-2000:]
    assert "KILLING → KILLED" in proc.stdout(), proc.stdout()[-2000:]


WRITE_PAST_COMPACTION = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from executor.task import checkpoint
    sandbox, module = Path(sys.argv[1]), Path(sys.argv[2])
    writer = checkpoint.CheckpointWriter(sandbox, label="t", compact_min_bytes=400)
    writer.append_many([{"type": "header", "n": 0}])
    module.write_text(sys.argv[3])  # the upgrade, while this writer runs
    for stale in module.parent.rglob("checkpointcompact*.pyc"):
        stale.unlink()
    writer.append_many([{"type": "state", "n": n} for n in range(1, 40)])
    writer.append_many([{"type": "state", "n": 40}])
    writer.close()
    print(len(checkpoint.checkpoint_path(sandbox).read_text().splitlines()))
""")


def test_a_checkpoint_writer_running_through_an_upgrade_keeps_writing_when_its_compaction_does_not_load(tmp_path):
    """The first compaction loads `checkpointcompact.py`, maybe weeks after the start (a
    kill's last records may be the ones that pass the threshold): after an upgrade in place
    one that does not load raised out of the write, the task's end lost. The records are in
    the file already: the compaction is said not loaded and tried again at twice the size."""
    installed = tree(tmp_path)
    script = tmp_path / "write.py"
    script.write_text(WRITE_PAST_COMPACTION)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    done = subprocess.run([sys.executable, str(script), str(sandbox),
                           str(installed / "executor" / "task" / "checkpointcompact.py"), BROKEN_MODULE],
                          env={"PYTHONPATH": str(installed), "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["41"], done.stdout
    assert "checkpoint_compaction_not_loaded" in done.stderr, done.stderr[-3000:]


STUBBORN = textwrap.dedent("""\
    jobs = [Job(cluster='local', role='r', environment='test', name='stubborn',
                task=Task(processes=[Process(name='p', cmdline="trap '' TERM; sleep 600 & wait; wait")],
                          resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB), finalization_wait=0.2))]
""")


def test_a_supervisor_running_through_an_upgrade_sigkills_a_run_that_ignores_its_sigterm(tmp_path):
    """A run that outlived its SIGTERM's grace was SIGKILLed with the words of
    `executor/procs/unsignalled.py` (a debugger holding it), loaded at that SIGKILL: after an
    upgrade in place the new version's file (here one that cannot load: the kill failed, a
    traceback, the task not KILLED). It is loaded with the kill's machine now."""
    proc, sandbox, env = run_then_upgrade(tmp_path, STUBBORN, ("executor/procs/unsignalled.py",))
    killed_cleanly(proc, sandbox, tmp_path, env)
    assert "SIGKILL" in proc.stdout() and "KILLING → KILLED" in proc.stdout(), proc.stdout()[-2000:]


FAILS_AFTER_THE_UPGRADE = textwrap.dedent("""\
    jobs = [Service(cluster='local', role='r', environment='test', name='svc',
                    task=Task(processes=[Process(name='p', cmdline='while [ ! -e go ]; do sleep 0.05; done; exit 1')],
                              resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)))]
""")


def test_a_service_running_through_an_upgrade_restarts_when_its_between_record_does_not_load(tmp_path):
    """`stoker run` loads `executor/task/checkpointbetween.py` at a service's first restart,
    maybe weeks after its start: after an upgrade in place one that cannot load raised out of
    the run (a traceback, the service never restarted). Its record (RESTARTING) is said lost,
    as one the checkpoint refuses, and the service restarts."""
    proc, sandbox, env = run_then_upgrade(tmp_path, FAILS_AFTER_THE_UPGRADE, ("executor/task/checkpointbetween.py",))
    try:
        (sandbox / "go").touch()
        proc.wait_output("restarting in", timeout_secs=30)  # the record's turn has passed
        StokerProcess(["kill", str(sandbox)], tmp_path, env=env).exited(0)
        proc.wait(30)
    finally:
        proc.sigterm_and_close()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-3000:]
    assert "checkpoint_between_not_loaded" in proc.stderr(), proc.stderr()[-3000:]


FAILS_ONCE_AFTER_THE_UPGRADE = textwrap.dedent("""\
    jobs = [Job(cluster='local', role='r', environment='test', name='twice',
                task=Task(processes=[Process(name='p', max_failures=2, min_duration=0,
                                             cmdline='while [ ! -e go ]; do sleep 0.05; done; rm go; exit 1')],
                          resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)))]
""")


def test_a_supervisor_running_through_an_upgrade_restarts_a_process_when_its_log_bookkeeping_does_not_load(tmp_path):
    """A process's first restart (a failure retried, `stoker restart`) loads the run-log
    bookkeeping (`executor/procs/runprune.py`, `logstage.py`) at the owner's next idle turn:
    after an upgrade in place files that cannot load raised out of the owner's step (a
    traceback, the task FAILED, exit 70). They are said not loaded and tried again at the
    next restart; the task runs on, and its stop ends it KILLED."""
    proc, sandbox, _ = run_then_upgrade(tmp_path, FAILS_ONCE_AFTER_THE_UPGRADE,
                                        ("executor/procs/runprune.py", "executor/procs/logstage.py"))
    try:
        (sandbox / "go").touch()
        proc.wait_output("WAITING → RUNNING", count=2, timeout_secs=10)
        wait_for(lambda: "run_logs_not_loaded" in proc.stderr() or proc.proc.poll() is not None, 10,
                 message="run_logs_not_loaded in stoker's log")
        proc.stop(signal.SIGINT, 130)
    finally:
        proc.sigterm_and_close()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-3000:]
    assert "run_logs_not_loaded" in proc.stderr(), proc.stderr()[-3000:]
    assert "KILLING → KILLED" in proc.stdout(), proc.stdout()[-2000:]


@pytest.fixture
def agent(tmp_path):
    yield from agent_for(tmp_path)


def nothing_loads(installed: Path) -> None:
    """An upgrade in place that left no module of `installed` loadable: each source one that
    raises, each compiled file (and the start's bundles) gone."""
    for source in installed.rglob("*.py"):
        source.write_text(BROKEN_MODULE)
    for compiled in (*installed.rglob("*.pyc"), *installed.rglob("*.codebundle")):
        compiled.unlink()


def test_an_executor_running_through_an_upgrade_reports_its_task_s_end_with_the_code_it_started_with(agent, tmp_path):
    """`stoker executor`'s paths after its first second, traced: the agent gone and back
    (resubscribed with the updates not acknowledged), its stream ended, a KILL, the task's
    last update kept until acknowledged, the exit. None loads a module: with no module of
    its installation loadable any more, the task still ends KILLED at the agent, exit 0."""
    installed = tree(tmp_path)
    launch(agent, document(tmp_path, HELLO), env_overrides={"PYTHONPATH": str(installed)},
           backoff_max="200ms", recovery_timeout="10secs")
    agent.wait_for_state("task-1", "TASK_RUNNING", 10)
    time.sleep(1.5)  # the kill's machine loaded at the owner's first step after 0.5 s
    nothing_loads(installed)
    agent.ack_mode = "hold"
    agent.crash()
    agent.restart(recovering_secs=0.1, reregistration_window_secs=2.0)
    agent.wait_subscribed(timeout_secs=5, count=2)
    agent.close_stream(graceful=True)  # an EOF: the executor subscribes again
    agent.wait_subscribed(timeout_secs=5, count=3)
    agent.kill("task-1", grace_secs=0.5)
    agent.wait_for_state("task-1", "TASK_KILLED", 10)
    agent.ack_mode = "immediate"
    agent.release_acks()
    assert agent.wait_exit(10) == 0, agent.executor_log()[-3000:]
    assert "ImportError" not in agent.executor_log(), agent.executor_log()[-3000:]


def test_a_supervisor_running_through_an_upgrade_that_left_nothing_loadable_still_ends_its_task(tmp_path):
    """`stoker run`'s stop after its first second (a Ctrl-C, the grace, a SIGKILL for the run
    that ignores its SIGTERM, the checkpoint's last records, the exit) with no module of its
    installation loadable any more: the task ends KILLED, exit 130, no traceback."""
    proc, _, _ = run_then_upgrade(tmp_path, STUBBORN, ())
    try:
        nothing_loads(tmp_path / "install")
        proc.stop(signal.SIGINT, 130)
    finally:
        proc.sigterm_and_close()
    assert "Traceback" not in proc.stderr(), proc.stderr()[-3000:]
    assert "SIGKILL" in proc.stdout() and "KILLING → KILLED" in proc.stdout(), proc.stdout()[-2000:]


MAKE_SUB_CGROUP = textwrap.dedent("""\
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from tests.support.cgroups import stoker_cgroups_of
    os.unlink("go")
    for directory in stoker_cgroups_of(os.getpid()):
        os.mkdir(os.path.join(directory, "a-run-s-own"))
        print(directory, flush=True)
""")
ENDS_AT_ONCE = textwrap.dedent("""\
    jobs = [Service(cluster='local', role='r', environment='test', name='quick',
                    task=Task(processes=[Process(name='p', cmdline='if [ -e go ]; then {make}; fi; exit 1')],
                              resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)))]
""")


def test_a_service_whose_attempts_end_at_once_closes_a_later_attempt_with_the_code_it_started_with(tmp_path):
    """A service whose attempts each end within their first half second never stepped its
    owner late enough to load the close's words for what it could not end (`unsignalled.py`,
    loaded with the kill's machine): an attempt that left its cgroup, hours of restarts
    after an upgrade in place, loaded the new file at its close (here one that cannot load,
    with the walk's: a traceback, exit 70). They load as an attempt ends, before the restart's
    wait, and the later attempt's cgroup is the watchdog's to remove."""
    if os.geteuid() != 0 or (why := task_cgroups.unavailable()) is not None:
        pytest.skip("a task cgroup and one made below it need root" if os.geteuid() else why)
    installed = tree(tmp_path)
    script = tmp_path / "make_sub.py"
    script.write_text(MAKE_SUB_CGROUP)
    config = tmp_path / "job.aurora"
    config.write_text(ENDS_AT_ONCE.format(make=f"{sys.executable} {script} {REPO}"))
    env = {"PYTHONPATH": str(installed), "STOKER_PLAN_CACHE": str(tmp_path / "plans"),
           "STOKER_ROOT": str(tmp_path / "root")}
    sandbox = tmp_path / "sandbox"
    proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox), "--restart-backoff", "0.5"], tmp_path, env=env)
    made: list[str] = []
    try:
        proc.wait_output("restarting in")  # the first attempt ended at once
        for module in ("executor/procs/unsignalled.py", "executor/procs/cgroupwalk.py"):
            (installed / module).write_text(BROKEN_MODULE)  # the upgrade
            for stale in installed.rglob(f"{Path(module).stem}*.pyc"):
                stale.unlink()
        (sandbox / "go").touch()
        proc.wait_output("restarting in", count=3, timeout_secs=30)  # the one that made a cgroup, and the next
        made = [line for path in sandbox.rglob("stdout") for line in path.read_text().split()]  # each attempt's
        StokerProcess(["kill", str(sandbox)], tmp_path, env=env).exited(0)
        proc.wait(30)
    finally:
        proc.sigterm_and_close()
    try:
        assert "Traceback" not in proc.stderr(), proc.stderr()[-3000:]
        assert made, proc.stdout()[-2000:]
        assert "cgroup_remove_failed" in proc.stderr() and "cgroupwalk" in proc.stderr(), proc.stderr()[-3000:]
        for directory in made:
            wait_for(lambda d=directory: not os.path.exists(d), 10, message=f"the watchdog removes {directory}")
    finally:
        for directory in made:
            if os.path.exists(directory):
                task_cgroups.remove(directory)
