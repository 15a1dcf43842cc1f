"""Planning ahead (executor/local/planahead.py): a first run of a config is planned by a child
the entry point forks before `stoker run` loads itself; the run is the run it would have
been without (output, errors, exit status), a plan kept for the config forks no such child,
and the child never outlives the `stoker run` that forked it."""
from __future__ import annotations

import os
import re
import signal
import textwrap
import time
from pathlib import Path

import pytest

from executor.cli import launch, launchfirst
from executor.local import planfiles
from tests.support import pidnames
from tests.support.stoker_proc import StokerProcess, kill_leftovers, live
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

JOB = """
    jobs = [Job(cluster='local', role='me', environment='test', name='ahead',
                task=Task(processes=[Process(name='hello', cmdline='echo hello')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
# Whether the config runs in a process that has loaded the supervisor's modules: not when it
# was forked before `stoker run` loaded itself.
WHERE = """
    import sys
    print("planned", "ahead" if "executor.local.run" not in sys.modules else "late", flush=True)
"""
# Its pid in PIDFILE, then a wait, then a trace that it planned on.
SLOW = """
    import os, time
    open({pidfile!r}, "w").write(str(os.getpid()))
    time.sleep({secs})
    open({pidfile!r} + ".planned", "w").write("")
"""


@pytest.fixture
def run(tmp_path):
    """`stoker run CONFIG --sandbox NEW` with a plan cache of the test's; (process, sandbox).
    Every process the test started is gone after it."""
    cache = tmp_path / "plans"
    started: list[StokerProcess] = []
    pidfiles: list[Path] = []

    def start(config: Path, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> StokerProcess:
        work = tmp_path / f"work{len(started)}"
        work.mkdir()
        proc = StokerProcess(["run", str(config), "--sandbox", str(work / "sandbox"), *extra], work,
                             env={"STOKER_PLAN_CACHE": str(cache), **(env or {})})
        started.append(proc)
        return proc

    start.cache = cache  # type: ignore[attr-defined]
    start.pidfiles = pidfiles  # type: ignore[attr-defined]
    yield start
    for proc in started:
        proc.close()
    kill_leftovers(pid for p in pidfiles for pid in pidnames.pid_file(p))


def write(tmp_path: Path, head: str = "", name: str = "job.aurora") -> Path:
    config = tmp_path / name
    config.write_text(textwrap.dedent(head) + textwrap.dedent(JOB))
    return config


def finish(proc: StokerProcess, code: int = 0) -> StokerProcess:
    assert proc.wait() == code, proc.stdout() + proc.stderr()
    return proc


def console(proc: StokerProcess) -> list[str]:
    """stdout without times, sandbox paths and pids."""
    text = re.sub(r"\d\d:\d\d:\d\d\.\d+", "T", proc.stdout())
    text = re.sub(r"sandbox \S+", "sandbox S", text)
    return re.sub(r"pid \d+", "pid N", text).splitlines()


def test_a_first_run_is_planned_by_a_child_forked_before_stoker_loads(run, tmp_path):
    config = write(tmp_path, WHERE)  # reads more than its text: never kept, planned each run
    assert "planned ahead" in finish(run(config)).stdout()
    assert "planned ahead" in finish(run(config)).stdout()
    assert "planned late" in finish(run(config, {"STOKER_EARLY_START": "off"})).stdout()


def test_the_run_planned_ahead_is_the_one_planned_late(run, tmp_path):
    ahead = finish(run(write(tmp_path, name="a.aurora")))
    late = finish(run(write(tmp_path, name="b.aurora"), {"STOKER_EARLY_START": "off"}))
    assert console(ahead) == console(late)
    assert any("hello[0]" in line and "RUNNING → SUCCESS" in line for line in console(ahead))


@pytest.mark.parametrize("body, problem", [
    ("jobs = [Job(name='x')]\n", "task"),
    ("jobs = [\n", "syntax error"),
    ("raise ValueError('no such thing')\n", "no such thing"),
])
def test_a_config_error_reads_the_same_planned_ahead(run, tmp_path, body, problem):
    results = []
    for mode in ("on", "off"):
        config = tmp_path / mode / "bad.aurora"
        config.parent.mkdir()
        config.write_text(body)
        proc = run(config, {"STOKER_EARLY_START": mode})
        code = proc.wait()
        results.append((code, proc.stdout(), proc.stderr().replace(f"/{mode}/", "/MODE/")))
    assert results[0] == results[1]
    assert results[0][0] != 0 and problem in results[0][2]


def test_a_kept_plan_forks_no_planning_child(run, tmp_path):
    config = write(tmp_path)  # closed: its plan is kept
    finish(run(config))
    entry = planfiles.entry_path(str(run.cache), str(config), None, 0, "")
    environ = dict(os.environ, STOKER_PLAN_CACHE=str(run.cache))
    assert launch._kept(entry, str(config), environ)
    assert launchfirst._ahead_inputs(["run", str(config)], environ) is None  # nothing to plan ahead
    config.write_text(config.read_text() + "\n# edited\n")
    assert not launch._kept(entry, str(config), environ)


def test_the_planning_child_dies_with_a_killed_stoker_run(run, tmp_path):
    pidfile = tmp_path / "planner.pid"
    run.pidfiles.append(pidfile)
    proc = run(write(tmp_path, SLOW.format(pidfile=str(pidfile), secs=2)))
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), 20, message="the config planning")
    planner = pidnames.pid_in(pidfile)
    assert planner != proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not live([planner]), 5, message="the planning child gone")
    time.sleep(2.5)  # past the config's wait: a child still planning would have written its trace
    assert not Path(f"{pidfile}.planned").exists()


def test_the_child_planning_late_dies_with_a_killed_stoker_run_too(run, tmp_path):
    """With another flag (`--kill-grace`) nothing is forked ahead: the supervisor's own
    planning child dies with it too. Before, it ran the config's code to its end (30 s
    here, up to the 60 s planning limit)."""
    pidfile = tmp_path / "planner.pid"
    run.pidfiles.append(pidfile)
    proc = run(write(tmp_path, SLOW.format(pidfile=str(pidfile), secs=30)), extra=("--kill-grace", "1"))
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), 20, message="the config planning")
    planner = pidnames.pid_in(pidfile)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not live([planner]), 10, message="the planning child gone")


def test_a_run_that_ends_before_it_plans_cancels_the_planning_child(run, tmp_path):
    pidfile = tmp_path / "planner.pid"
    run.pidfiles.append(pidfile)
    config = write(tmp_path, SLOW.format(pidfile=str(pidfile), secs=2))
    proc = run(config, {"STOKER_LOG_LEVEL": "bogus"})  # a usage error, before the run begins
    assert proc.wait() == 2
    assert "STOKER_LOG_LEVEL" in proc.stderr()
    if pidfile.exists() and pidfile.read_text():  # it was planning when stoker run ended: its
        # SIGKILL (PR_SET_PDEATHSIG) came with that end, its death once the kernel runs it
        planner = pidnames.pid_in(pidfile)
        wait_for(lambda: not live([planner]), 5, message="the planning child gone")
    time.sleep(2.5)  # past the config's wait: a child still planning would have written its trace
    assert not Path(f"{pidfile}.planned").exists()


# Cyclic garbage that holds a file open, more of it than the descriptors the config's process
# may have: each cycle is closed only by the collector (as a caught exception kept in a
# variable keeps its frame's files open). The collector runs once its first threshold of new
# objects is reached (700 on Python 3.11 and 3.12, 2,000 on 3.13): the config may have that
# many descriptors and 256 more, and makes four times as many cycles.
CYCLES = """
    import gc
    import resource
    limit = gc.get_threshold()[0] + 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    for _ in range(4 * limit):
        cycle = [open({config!r})]
        cycle.append(cycle)
    del cycle
"""


@pytest.mark.parametrize("extra", [(), ("--kill-grace", "1")], ids=["ahead", "late"])
def test_the_configs_garbage_is_collected_in_the_planning_child(run, tmp_path, extra):
    """The planning child keeps Python's collector (the parent's objects frozen, not shared
    pages dirtied): with it off, a config whose cycles hold files ran out of descriptors."""
    config = tmp_path / "job.aurora"
    write(tmp_path, CYCLES.format(config=str(config)))
    assert "hello" in finish(run(config, extra=extra)).stdout()
