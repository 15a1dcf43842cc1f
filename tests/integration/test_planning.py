"""`executor/local/planning.py`: `stoker run` plans its job in a child process, in fresh
interpreters (single-threaded, as `stoker run` is when it plans): the plan and the files'
text come back, errors come back as the same ConfigError, output is neither lost nor
doubled, and nothing of the planning stays in (or leaks into) the supervisor."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

EXAMPLE = REPO / "examples" / "hello_world.aurora"
PRELUDE = """
import os, sys, threading
from config.plan import open_problem, plan_job
from executor.local.planning import plan_apart
from executor.local.planning import allocate_ports

def real(sources):
    plan = plan_job(sys.argv[1], None, (), instance=0, fixed_ports={}, hostname="h", user="u",
                    allocate=allocate_ports, sources=sources)
    return plan, open_problem(sources)
"""


def held_config(tmp_path: Path, text: str | None = None) -> tuple[Path, Path]:
    """A FIFO, and a config (`text`, the example's by default) that reads it first: its load
    waits until the test writes the FIFO (a plan held for the test)."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    config = tmp_path / "held.aurora"
    config.write_text(f"open({str(gate)!r}).read()\n" + (EXAMPLE.read_text() if text is None else text))
    return gate, config


def python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(code), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_the_plan_comes_back_from_a_child_and_the_supervisor_loads_no_pystachio():
    done = python("""
        sys.stdout.write("before\\n")  # still buffered (a pipe) at the fork: it comes out once
        plan, sources, problem = plan_apart(real)
        print(plan.name, [p.name for p in plan.spec.task.processes], list(sources) == [sys.argv[1]],
              problem, "pystachio" in sys.modules, "config.loader" in sys.modules)
    """, str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "before\nhello ['hello'] True None False False\n"


def test_what_ran_in_the_child_is_the_childs():
    done = python("""
        def probe(sources):
            print("planning in", os.getpid())  # as a config prints: the child flushes it at its end
            os.environ["LEAK"] = "1"
            return real(sources)
        plan_apart(probe)
        print("supervisor", os.getpid(), os.environ.get("LEAK"))
    """, str(EXAMPLE))
    child, parent = (line.split() for line in done.stdout.splitlines())
    assert child[2] != parent[1] and parent[2] == "None"


def test_the_child_runs_the_config_with_the_collector_on_and_the_schema_frozen(tmp_path):
    """The config modules are loaded with the collector off and frozen (no young collection
    walks them); the config's own code runs with the collector on, its garbage collected."""
    config = tmp_path / "probe.aurora"
    config.write_text("import gc, config.schema\n"
                      "print('collector', gc.isenabled(), any(o is config.schema.Job for o in gc.get_objects()))\n"
                      + EXAMPLE.read_text())
    done = python("""
        plan, sources, problem = plan_apart(real)
        print(plan.name, "pystachio" in sys.modules)
    """, str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "collector True False\nhello False\n"


def test_a_config_error_comes_back_as_the_same_error(tmp_path):
    bad = tmp_path / "bad.aurora"
    bad.write_text("jobs = [Job(name='x')]\n")
    done = python("""
        from config.errors import ConfigError
        try:
            plan_apart(real)
        except ConfigError as exc:
            print(repr(str(exc)), len(exc.problems))
        try:
            plan_job(sys.argv[1], None, (), instance=0, fixed_ports={}, hostname="h", user="u",
                     allocate=allocate_ports)
        except ConfigError as exc:
            print(repr(str(exc)), len(exc.problems))
    """, str(bad))
    apart, here = done.stdout.splitlines()
    assert apart == here and "bad.aurora" in apart


def test_a_bug_in_planning_and_a_killed_child_are_errors_that_say_so():
    # A bug is a RuntimeError with its traceback; a child that ended without an answer is the
    # config's doing (os._exit, a signal, a KeyboardInterrupt): a ConfigError naming it.
    done = python("""
        from config.errors import ConfigError
        def bug(sources):
            raise ZeroDivisionError("no")
        def killed(sources):
            os.kill(os.getpid(), 9)
        def exits(sources):
            os._exit(3)
        for plan in (bug, killed, exits):
            try:
                plan_apart(plan, source="job.aurora")
            except (RuntimeError, ConfigError) as exc:
                print(type(exc).__name__, str(exc).splitlines()[0], str(exc).splitlines()[-1])
    """)
    ended = ("job.aurora: the process running the config ended ({}) before the job was planned: does "
             "its code call os._exit(), kill its own process or raise KeyboardInterrupt?")
    assert done.stdout.splitlines() == [
        "RuntimeError planning the job failed in its process: ZeroDivisionError: no",
        f"ConfigError {ended.format('killed by signal 9')} {ended.format('killed by signal 9')}",
        f"ConfigError {ended.format('exit status 3')} {ended.format('exit status 3')}"]


@pytest.mark.parametrize("kind", ["endless loop", "fifo"])
def test_a_config_that_never_finishes_is_stopped_with_the_line_it_was_running(tmp_path, kind):
    # `while True: pass`, or a FIFO nobody writes to, hung `stoker run` for ever, silently; the
    # child now has a time bound. The loop's bound is 5 s: the line is named only once the
    # child has reached the config's code (its imports took over 0.3 s at a load of 15).
    bound = 5 if kind == "endless loop" else 0.3
    endless = tmp_path / "endless.aurora"
    if kind == "fifo":
        os.mkfifo(endless)
    else:
        endless.write_text("x = 1\nwhile True: x += 1\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent("""
            from config.errors import ConfigError
            from executor.local import planning
            planning.PLAN_TIMEOUT_SECS = float(sys.argv[2])
            try:
                plan_apart(real, source=sys.argv[1])
            except ConfigError as exc:
                print(exc)
        """), str(endless), str(bound)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    finally:  # a child still looping (the bug) goes with its session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    expected = {"endless loop": f"{endless}:2: the config's code was still running after 5 s (an "
                                "endless loop?), so it was stopped",
                "fifo": f"{endless}: the job was still not planned after 0.3 s (a config file that never "
                        "ends, such as a FIFO nobody writes to?), so planning was stopped"}
    assert out == expected[kind] + "\n", err


@pytest.mark.parametrize("start", ["threading.Thread(target=runs, daemon=True).start()",
                                   # not among threading.active_count()'s: was forked beside it
                                   "_thread.start_new_thread(runs, ())"])
def test_with_another_thread_running_it_plans_in_this_process(start):
    done = python(f"""
        import _thread
        running, stop = threading.Event(), threading.Event()
        def runs():
            running.set()
            stop.wait()
        {start}
        assert running.wait(30)  # (`_thread`'s returns before its thread runs)
        def probe(sources):
            print(os.getpid(), flush=True)
            return real(sources)
        plan_apart(probe)
        print(os.getpid(), "pystachio" in sys.modules)
        stop.set()
    """, str(EXAMPLE))
    first, second = done.stdout.splitlines()
    assert second == f"{first} True"


def test_a_plan_made_ahead_is_the_plan_made_late():
    done = python("""
        from executor.cli import launchfirst
        from executor.local.planning import job_planner
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], dict(os.environ, STOKER_PLAN_CACHE="off")))
        child = ahead.pid
        early, early_sources, early_problem = plan_apart(job_planner(ahead.inputs), ahead)
        late, late_sources, late_problem = plan_apart(job_planner(ahead.inputs))
        same = early.spec_for("T") == late.spec_for("T") and early.stand_in != late.stand_in  # a fresh one each
        print(same, early_sources == late_sources, early_problem == late_problem, child > 0, ahead.pid)
    """, str(EXAMPLE))
    assert done.stdout.split() == ["True", "True", "True", "True", "-1"], done.stderr


def test_a_run_with_other_settings_than_the_plan_made_ahead_cancels_it():
    done = python("""
        from config.settings import RunSettings
        from executor.cli import launchfirst
        from executor.local.planahead import inputs_of
        from executor.local.runstart import RunStart
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        for instance in (0, 1):
            ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
            child = ahead.pid
            start = RunStart(RunSettings(config=sys.argv[1], instance=instance), environ, None, ahead)
            taken = start._ahead_for(inputs_of(sys.argv[1], None, (), instance, (), *ahead.inputs[5:]))
            try:
                os.waitpid(child, os.WNOHANG)
                print(taken is ahead, "unreaped")
            except ChildProcessError:
                print(taken is ahead, "reaped")
            if taken is not None:
                taken.cancel()
    """, str(EXAMPLE))
    assert done.stdout.splitlines() == ["True unreaped", "False reaped"], done.stderr


def test_the_supervisor_loads_its_own_modules_while_the_child_plans_and_stops_once_it_answered(tmp_path):
    # The child's config waits on a FIFO: until the test's process writes it, the child has not
    # answered, and `start_first`'s wait loads the supervisor's modules (launchfirst's
    # LOAD_WHILE_PLANNING) instead of only waiting; once the child answered, it loads none.
    gate, config = held_config(tmp_path)
    done = python(f"""
        from executor.cli import launchfirst
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        held = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        print(held.answered(), flush=True)  # the child waits on the gate
        launchfirst._load_while_planning(held)
        print(all(name in sys.modules for name in launchfirst.LOAD_WHILE_PLANNING), held.answered(), flush=True)
        with open({str(gate)!r}, "w") as gate:
            gate.write("go")
        data, status = held.answer()
        print(held.answered(), data[:20].count(b"plan"), status, flush=True)
    """, str(config))
    assert done.stdout.splitlines() == ["False", "True False", "True 1 0"], done.stderr
    answered_first = python("""
        from executor.cli import launchfirst
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        ahead.answer()
        before = set(sys.modules)
        launchfirst._load_while_planning(ahead)
        print(ahead.answered(), sorted(set(sys.modules) - before), "executor.local.run" in sys.modules)
    """, str(EXAMPLE))
    assert answered_first.stdout == "True [] False\n", answered_first.stderr


@pytest.mark.parametrize("portmap, fixed, expected", [
    ("{'http': 8080}", "{'http': 9999}", "9999"),  # a number the portmap gives, overridden
    ("{'http': 'health'}", "{'health': 9000, 'http': 9001}", "9001"),  # an alias, given its own
])
def test_a_port_given_with_port_is_the_job_s_when_none_is_left_to_choose(tmp_path, portmap, fixed, expected):
    """`--port NAME=NUM` for a name of the job's portmap, where no port needs choosing: it was
    dropped (the portmap's number or alias bound instead) when a plan that chooses none
    returned before adding the given ports that are not among those chosen for."""
    config = tmp_path / "portmap.aurora"
    config.write_text(textwrap.dedent(f"""\
        jobs = [Job(cluster='local', role='r', environment='test', name='pm',
                    announce=Announcer(portmap={portmap}),
                    task=Task(processes=[Process(name='p', cmdline='echo {{{{thermos.ports[http]}}}}')],
                              resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB)))]
    """))
    done = python(f"""
        plan = plan_job(sys.argv[1], None, (), instance=0, fixed_ports={fixed}, hostname="h", user="u",
                        allocate=allocate_ports)
        print(plan.spec.task.processes[0].cmdline, plan.allocated)
    """, str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"echo {expected} ()\n"


def test_the_child_forked_ahead_sends_the_plan_before_it_judges_the_config_closed(tmp_path):
    # the early start starts the runs from the plan sent first (`PlanAhead.early_plan`), while
    # the child still runs `open_problem` (held here on a gate) and before it answers and ends
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    done = python("""
        import marshal
        import config.purity
        from executor.cli import launchfirst
        from executor.local import planform
        judge = config.purity.closed_problem
        def held(*args, **kwargs):
            open(sys.argv[2]).read()
            return judge(*args, **kwargs)
        config.purity.closed_problem = held
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        plan = planform.decode(marshal.loads(ahead.early_plan()))
        print(plan.name, ahead.answered(), flush=True)  # the child waits on the gate: no answer yet
        with open(sys.argv[2], "w") as gate:
            gate.write("go")
        data, status = ahead.answer()
        answer = marshal.loads(data)
        # the answer leaves the plan out: the parent has it (and the plan cache keeps its bytes)
        print(answer[0], answer[1], answer[3], status, planform.decode(marshal.loads(ahead.early_plan())) == plan)
    """, str(EXAMPLE), str(gate))
    assert done.stdout.splitlines() == ["hello False", "plan None None 0 True"], done.stderr


def test_a_child_forked_ahead_that_fails_to_plan_sends_no_plan_first(tmp_path):
    config = tmp_path / "broken.aurora"
    config.write_text("jobs = [Job(\n")
    done = python("""
        import marshal
        from executor.cli import launchfirst
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        print(ahead.early_plan(), marshal.loads(ahead.answer()[0])[0])  # the whole answer, its start included
    """, str(config))
    assert done.stdout == "None error\n", done.stderr


def test_the_bound_on_the_config_s_code_ends_once_the_child_forked_ahead_sent_the_plan(tmp_path):
    # runs may have started from that plan: a timeout raised into the judgement after it (or
    # into the plan's own write) would answer against it (here the bound ends while the judge
    # runs, when it is still set)
    done = python("""
        import signal
        import config.purity
        from executor.cli import launchfirst
        from executor.local import planning
        planning.PLAN_TIMEOUT_SECS = 5.0
        judge = config.purity.closed_problem
        def judged(*args, **kwargs):
            if signal.getitimer(signal.ITIMER_REAL)[0]:
                signal.pause()  # until the bound's SIGALRM
            return judge(*args, **kwargs)
        config.purity.closed_problem = judged
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        plan, sources, problem = plan_apart(None, ahead, source=sys.argv[1])
        print(plan.name, sorted(sources) == [sys.argv[1]], problem)
    """, str(EXAMPLE))
    assert done.stdout == "hello True None\n", done.stderr


def test_words_that_may_not_start_early_start_nothing_and_load_nothing_while_the_child_plans(tmp_path):
    # a sandbox from the environment: the plan is made ahead, but no run starts from it, and
    # `start_first` neither waits for it nor loads the supervisor's modules meanwhile
    gate, config = held_config(tmp_path)
    done = python(f"""
        from executor.cli import launchfirst
        environ = dict(os.environ, STOKER_PLAN_CACHE="off", STOKER_SANDBOX={str(tmp_path / "sb")!r})
        launchfirst.note((sys.argv[1], None), ["run", sys.argv[1]], environ)
        launchfirst.fork_ahead()
        ahead = launchfirst.take_ahead()
        before = set(sys.modules)
        print(launchfirst.start_first(ahead), sorted(set(sys.modules) - before), ahead.answered(), flush=True)
        ahead.cancel()
    """, str(config), timeout=30)  # (waiting for the held child instead never ends)
    assert done.stdout == "None [] False\n", done.stderr


def test_with_another_thread_running_no_child_is_forked_ahead():
    # (a fork copies this thread alone: one holding a lock would leave it held in the child)
    done = python("""
        from executor.cli import launchfirst
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        stop = threading.Event()
        waiting = threading.Thread(target=stop.wait)
        waiting.start()
        launchfirst.note((sys.argv[1], None), ["run", sys.argv[1]], environ)
        launchfirst.fork_ahead()
        print(launchfirst.take_ahead(), flush=True)
        stop.set()
    """, str(EXAMPLE))
    assert done.stdout == "None\n", done.stderr


def test_with_no_descriptor_left_for_its_pipe_no_child_is_forked_ahead():
    # the run plans when the plan is needed, as ever (a child it could not fork is no child)
    done = python("""
        import resource
        import executor.local.planning
        from executor.cli import launchfirst
        environ = dict(os.environ, STOKER_PLAN_CACHE="off")
        launchfirst.note((sys.argv[1], None), ["run", sys.argv[1]], environ)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        launchfirst.fork_ahead()
        print(launchfirst.take_ahead(), flush=True)
    """, str(EXAMPLE))
    assert done.stdout == "None\n", done.stderr
