"""`executor/local/planning.py`'s answers read whole, in fresh interpreters as in
test_planning.py: the job key a planner is given, a judgement that fails, a fork that fails,
a child that fails before it plans, the plan bundle its child installs and the damaged one it
names, and the child forked ahead whose answer after the plan never came."""
from __future__ import annotations

import textwrap

from tests.integration.test_planning import EXAMPLE, python

TWO_JOBS = textwrap.dedent("""\
    jobs = [Job(cluster='local', role='me', environment='test', name=name,
                task=Task(processes=[Process(name='p', cmdline='true')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))
            for name in ('a', 'b')]
""")
AHEAD = """
import marshal
import config.purity
from executor.cli import launchfirst
from executor.local import planform
environ = dict(os.environ, STOKER_PLAN_CACHE="off")
"""


def ahead_python(code: str, *args: str):
    """`python(code)` after AHEAD: the child forked ahead at hand."""
    return python(AHEAD + textwrap.dedent(code), *args)


ENDED = ("{}: the process running the config ended ({}) before the job was planned: does its code "
         "call os._exit(), kill its own process or raise KeyboardInterrupt?")


def test_the_planner_plans_the_job_its_key_names(tmp_path):
    config = tmp_path / "two.aurora"
    config.write_text(TWO_JOBS)
    done = python("""
        from executor.local.planahead import inputs_of
        from executor.local.planning import job_planner
        for key in ("local/me/test/a", "local/me/test/b"):
            plan, sources, problem = plan_apart(job_planner(inputs_of(sys.argv[1], key, (), 0, (), "h", "u")))
            print(plan.name, problem)
    """, str(config))
    assert done.stdout.splitlines() == ["a None", "b None"], done.stderr


def test_files_that_could_not_be_judged_say_why_and_keep_the_plan():
    # the config's code may patch the judge or lower the recursion limit: the plan stands
    done = python("""
        from executor.local import planning
        from executor.local.planahead import inputs_of
        def broken(sources):
            raise ValueError("patched")
        planning.open_problem = broken
        plan, sources, problem = plan_apart(planning.job_planner(inputs_of(sys.argv[1], None, (), 0, (), "h", "u")))
        print(plan.name, problem)
    """, str(EXAMPLE))
    assert done.stdout == "hello its files were not judged: ValueError: patched\n", done.stderr


def test_a_fork_that_fails_plans_here_and_leaves_no_descriptor_and_no_signal_blocked():
    done = python("""
        import signal
        def fds():
            return sorted(os.listdir("/proc/self/fd"))
        before, blocked = fds(), signal.pthread_sigmask(signal.SIG_BLOCK, [])
        def refused():
            raise OSError(11, "Resource temporarily unavailable")
        os.fork = refused
        plan, sources, problem = plan_apart(real)
        print(plan.name, problem, fds() == before, signal.pthread_sigmask(signal.SIG_BLOCK, []) == blocked)
    """, str(EXAMPLE))
    assert done.stdout == "hello None True True\n", done.stderr


def test_a_child_that_fails_before_it_plans_ends_with_status_1_and_the_default_source_named():
    done = python("""
        from config.errors import ConfigError
        from executor.local import planning
        def failing(parent):
            raise RuntimeError("no parent watch")
        planning.die_with = failing
        try:
            plan_apart(real)
        except ConfigError as exc:
            print(exc)
        print("after")  # once: the child never returns into the caller's code
    """, str(EXAMPLE))
    assert done.stdout.splitlines() == [ENDED.format("the config", "exit status 1"), "after"], done.stderr


def test_a_ctrl_c_raised_in_the_child_ends_it_with_status_1():
    done = python("""
        from config.errors import ConfigError
        def interrupted(sources):
            raise KeyboardInterrupt
        try:
            plan_apart(interrupted, source="job.aurora")
        except ConfigError as exc:
            print(exc)
    """)
    assert done.stdout == ENDED.format("job.aurora", "exit status 1") + "\n", done.stderr


def test_the_supervisor_s_planning_child_installs_the_plan_bundle_even_when_that_fails():
    done = python("""
        from executor import codebundle
        def install(name=codebundle.NAME):
            print("install", name == codebundle.PLAN, flush=True)
            raise MemoryError  # a file's cost, not the plan's
        codebundle.install = install
        plan, sources, problem = plan_apart(real)
        print(plan.name)
    """, str(EXAMPLE))
    assert done.stdout.splitlines() == ["install True", "hello"], done.stderr


def test_the_bundle_the_child_found_damaged_is_named_by_the_parent_and_none_is_not():
    done = python("""
        from executor import codebundle
        named = []
        codebundle.found_damaged = named.append
        for damaged in ("/cache/nodoc/plan.codebundle", ""):
            codebundle.forget = lambda: damaged  # what the child found, as it ends
            plan, sources, problem = plan_apart(real)
            print(plan.name, named)
    """, str(EXAMPLE))
    assert done.stdout.splitlines() == ["hello ['/cache/nodoc/plan.codebundle']",
                                        "hello ['/cache/nodoc/plan.codebundle']"], done.stderr


def test_a_child_forked_ahead_that_ends_after_the_plan_gives_that_plan_unjudged():
    # the config's own code (a thread, a finalizer) may end the child once the plan went first
    done = ahead_python("""
        config.purity.closed_problem = lambda *args, **kwargs: os._exit(7)
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        plan, sources, problem = plan_apart(None, ahead, source=sys.argv[1])
        print(plan.name, sources, problem)
    """, str(EXAMPLE))
    assert done.stdout == ("hello {} the process planning it gave no answer after the plan (exit status 7), "
                           "so the files it read were not judged\n"), done.stderr


def test_the_plan_the_early_start_decoded_is_the_plan_the_run_gets():
    done = ahead_python("""
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        ahead.plan = planform.decode(marshal.loads(ahead.early_plan()))  # as `start_first` does
        plan, sources, problem = plan_apart(None, ahead)
        print(plan is ahead.plan, sorted(sources) == [sys.argv[1]], problem)
    """, str(EXAMPLE))
    assert done.stdout == "True True None\n", done.stderr


def test_a_child_forked_ahead_that_fails_or_ends_says_so_with_its_source(tmp_path):
    broken = tmp_path / "broken.aurora"
    broken.write_text("jobs = [Job(name='x')]\n")
    ends = tmp_path / "ends.aurora"
    ends.write_text("import os\nos._exit(3)\n")
    done = ahead_python("""
        from config.errors import ConfigError
        for config in sys.argv[1:]:
            ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", config], environ))
            try:
                plan_apart(None, ahead, source="job.aurora")
            except ConfigError as exc:
                print(str(exc).startswith(repr(config)), str(exc).startswith(ENDED_START))
    """.replace("ENDED_START", repr(ENDED.format("job.aurora", "exit status 3"))), str(broken), str(ends))
    assert done.stdout.splitlines() == ["True False", "False True"], done.stderr


def test_a_plan_sent_first_whose_config_closed_stdout_still_comes_and_the_child_ends_with_status_1(tmp_path):
    config = tmp_path / "closes.aurora"
    config.write_text("import sys\nsys.stdout.close()\n" + EXAMPLE.read_text())
    done = ahead_python("""
        ahead = launchfirst._fork_ahead(launchfirst._ahead_inputs(["run", sys.argv[1]], environ))
        sent = ahead.early_plan()
        data, status = ahead.answer()
        print(planform.decode(marshal.loads(sent)).name, marshal.loads(data)[0], os.waitstatus_to_exitcode(status))
    """, str(config))
    assert done.stdout == "hello plan 1\n", done.stderr
