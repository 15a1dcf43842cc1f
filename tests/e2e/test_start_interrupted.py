"""A stop at a given moment of `stoker`'s start (docs/contract.md §9): the process sends
itself a real signal as it starts to import a given module (the test-only hook in
tests/support/signal_at_import/), and ends as that signal ends it once running: `stoker run`
on a Ctrl-C, SIGTERM, SIGHUP or SIGQUIT exits 128 + its number, with no traceback and nothing
of the run left (no process, no registry entry of a supervisor gone), and the next run of the
same config works; `stoker executor` exits 3 on SIGTERM (never subscribed) and ignores SIGHUP, `stoker observe`
exits 0 on SIGTERM, and any command exits 130 on a Ctrl-C (`executor/cli/start.py`,
WHILE_LOADING). A command that handles no stop signal once running is killed by SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.importhook import TWO_CTRL_CS_AS_IT_ENDS, patched_at_load
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


# Starts the rest of its command line with SIGTERM ignored (as a process manager may pass it
# on); -I: not the hook of PYTHONPATH, which is the command's
SIGTERM_IGNORED = (sys.executable, "-I", "-c", "import os, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "os.execv(sys.argv[1], sys.argv[1:])")


def interrupted(args: list[str], workdir: Path, module: str, signum: int = signal.SIGINT,
                hook: Path = HOOK, launcher: tuple[str, ...] = ()) -> StokerProcess:
    """`stoker ARGS` sent `signum` by itself as it looks for `module` (with `hook`'s
    sitecustomize, started by `launcher`); ended."""
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "STOKER_TEST_SIGNAL_AT": f"{module}:{int(signum)}"}
    proc = StokerProcess(args, workdir, env=env, launcher=launcher)
    try:
        proc.wait()
    finally:
        proc.close()
    return proc


def assert_ended_by(proc: StokerProcess, module: str, signum: int = signal.SIGINT,
                    status: int | None = None) -> None:
    """Ended as `signum` came while `module` was looked for: exit `status` (by default 128 +
    its number, as a shell reports a process a signal ended; negative: killed by that
    signal), no traceback."""
    err = proc.stderr()
    assert f"signal-at-import: {int(signum)} at {module}" in err, err  # the moment came
    assert "Traceback" not in err, err
    assert proc.proc.returncode == (128 + signum if status is None else status), err


@pytest.mark.parametrize(("module", "signum"), [*((m, signal.SIGINT) for m in MOMENTS),
                                                ("executor.nodocs", signal.SIGHUP),
                                                ("executor.cli.main", signal.SIGTERM),
                                                ("executor.codecache", signal.SIGQUIT)])
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
        again.stop(signal.SIGINT, 130)
        assert "Traceback" not in again.stderr()
        assert not live(pids)
    finally:
        again.close()
        kill_leftovers(task_pids(sandbox))


# executor.cli and executor.cli.start: the entry point's own, as `executor` (the first of
# Stoker's modules) is loaded, before the entry point's `try` (was: Python's traceback)
@pytest.mark.parametrize("command", [["status", "."], ["ps", "--root", "root"], ["executor"]])
@pytest.mark.parametrize("module", ["executor.cli", "executor.cli.start", "executor.nodocs", "executor.cli.main"])
def test_a_ctrl_c_as_a_command_loads_exits_130(tmp_path, command, module):
    proc = interrupted(command, tmp_path, module)
    assert_ended_by(proc, module)


@pytest.mark.parametrize("module", ["executor.cli", "executor.cli.start"])
def test_a_ctrl_c_as_the_console_script_loads_the_entry_point_exits_130(tmp_path, module):
    """`stoker`, the console script, imports the entry point itself (not executor/__main__.py)."""
    script = Path(sys.executable).with_name("stoker")
    if not script.exists():
        pytest.skip(f"no console script {script}")
    env = {**os.environ, "PYTHONPATH": f"{HOOK}{os.pathsep}{REPO}", "STOKER_TEST_SIGNAL_AT": f"{module}:2"}
    done = subprocess.run([str(script), "status", "."], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert f"signal-at-import: 2 at {module}" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 130, done.stderr


@pytest.mark.parametrize("module", ["executor.codecache", "executor.nodocs"])
def test_a_ctrl_c_in_python_m_of_a_stoker_module_is_pythons_own(tmp_path, module):
    """`python -m executor.codecache` (the Makefile's, a tool's) imports the `executor` package
    as a library: Python's traceback and death by SIGINT, not the entry point's quiet 130 (was:
    `sys.argv[0] == "-m"` as any `-m` loaded the package, and its os._exit(130) then skipped
    atexit and the streams' flush for the process's whole life)."""
    env = {**os.environ, "PYTHONPATH": f"{HOOK}{os.pathsep}{REPO}", "STOKER_TEST_SIGNAL_AT": f"{module}:2"}
    done = subprocess.run([sys.executable, "-m", module], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert f"signal-at-import: 2 at {module}" in done.stderr, done.stderr
    assert "KeyboardInterrupt" in done.stderr and done.returncode == -signal.SIGINT, (done.returncode, done.stderr)


def test_the_quiet_ctrl_c_hook_passes_any_other_exception_to_the_hook_it_found(tmp_path):
    """A hook set before Stoker's first module (a distribution's sitecustomize, apport's) still
    gets an exception other than a Ctrl-C as `stoker` loads (was: `sys.__excepthook__`), whole:
    the exception and its traceback."""
    script = tmp_path / "stoker"
    script.write_text("import sys\n"
                      "sys.excepthook = lambda kind, value, tb: print('found hook:', kind.__name__, repr(value),\n"
                      "                                              'line', tb.tb_lineno, file=sys.stderr)\n"
                      "import executor\n"
                      "raise ValueError('as it loads')\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, "found hook: ValueError ValueError('as it loads') line 5\n")


# A SIGHUP as the sandbox is let go, after the stop signal_at_import raised: systemd stopping
# a unit with SendSIGHUP=yes sends SIGHUP right after its SIGTERM.
AGAIN_AS_IT_LETS_GO = patched_at_load("executor.host.session", """
    def _patch(module):
        real = module.HostSession.close

        def close(self, *args, **kwargs):
            if not any(isinstance(finder, SignalAtImport) for finder in sys.meta_path):  # it came
                _signal.raise_signal(_signal.SIGHUP)
            return real(self, *args, **kwargs)

        module.HostSession.close = close
    """) + (HOOK / "sitecustomize.py").read_text()


@pytest.mark.parametrize(("signum", "twice"), [(signal.SIGTERM, False), (signal.SIGHUP, False),
                                               (signal.SIGTERM, True)])
def test_a_stop_after_a_rerun_took_the_sandbox_lets_it_go_as_a_ctrl_c_does(tmp_path, signum, twice):
    """A re-run of a changed config (no early start) stopped after it took the sandbox and
    registered, before its relay: it was killed by the signal, and `stoker ps --all` listed
    its entry LOST (`keeps no attempt of its supervisor ... it is gone`). `twice`: a SIGHUP
    as the SIGTERM's unwinding lets the sandbox go was raised there too, and left the entry
    LOST; once running, a second stop hurries the stop and still lets the entry go."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AGAIN_AS_IT_LETS_GO)
    config, sandbox, root = tmp_path / "job.aurora", tmp_path / "sb", tmp_path / "root"
    config.write_text(CONFIG)
    args = ["run", str(config), "--sandbox", str(sandbox), "--root", str(root)]
    first = StokerProcess(args, tmp_path)
    try:
        first.wait_output("RUNNING", timeout_secs=30)
        first.stop(signal.SIGTERM, 143)
    finally:
        first.close()
        kill_leftovers(task_pids(sandbox))
    config.write_text(CONFIG.replace("sleep 600", "sleep 601"))  # a new plan: no early start
    again = interrupted(args, tmp_path, "executor.task.leftovers", signum,  # loaded once it holds the sandbox
                        hook=hook if twice else HOOK)
    assert_ended_by(again, "executor.task.leftovers", signum)
    assert not live(task_pids(sandbox))
    listed = StokerProcess(["ps", "--all", "--json", "--root", str(root)], tmp_path)
    try:
        assert listed.wait() == 0, listed.stderr()
    finally:
        listed.close()
    rows = {row["supervisor_pid"]: row for row in json.loads(listed.stdout())}
    assert rows[again.pid]["state"] != "LOST" and rows[again.pid]["ended"], rows


# A stop that reaches the child `stoker run --root` plans in (`executor/local/planning.py`,
# `_fork`) as it is forked, held there until the child lets the stop signals in: raised where
# it let them in, the child went on as `stoker run` (whose handlers it has), unwound its
# stack and ended as that command ends (exit 130, 143 or 129), not as the child (1).
STOPPED_AS_IT_FORKS = patched_at_load("executor.local.planning", """
    def _patch(module):
        real = os.fork

        def fork():
            pid = real()
            if pid == 0:  # the child, its stop signals blocked: the signal waits
                os.kill(os.getpid(), int(os.environ["CHILD_SIGNAL"]))
            return pid

        os.fork = fork
    """)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_that_reaches_the_planning_child_as_it_forks_ends_the_child_alone(tmp_path, signum):
    config, hook = tmp_path / "job.aurora", tmp_path / "hook"
    config.write_text(CONFIG)
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(STOPPED_AS_IT_FORKS)
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "CHILD_SIGNAL": str(int(signum))}
    proc = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sb"), "--root", str(tmp_path / "root")],
                         tmp_path, env=env)
    try:
        status = proc.wait()
    finally:
        proc.close()
    err = proc.stderr()
    assert status == 2 and "the process running the config ended (exit status 1)" in err, err  # the child's end
    assert "Traceback" not in err


@pytest.mark.parametrize(("command", "signum", "status"), [
    (["executor"], signal.SIGTERM, 3),  # as SIGTERM once it runs before the agent answered: never subscribed
    # ignored, as once it runs: it loads on and stops at its missing MESOS_* variables
    (["executor"], signal.SIGHUP, 2),
    # strays too, as the running executor ignores them (was: killed by the signal, 138)
    (["executor"], signal.SIGUSR1, 2),
    (["executor"], signal.SIGRTMIN + 3, 2),
    (["observe", "--root", "root", "--port", "0"], signal.SIGTERM, 0),
    (["status", "."], signal.SIGTERM, -signal.SIGTERM),  # no handler once running either
])
@pytest.mark.parametrize("module", ["executor.nodocs", "executor.cli.main"])
def test_a_stop_as_a_command_loads_ends_it_as_once_it_runs(tmp_path, command, signum, status, module):
    proc = interrupted(command, tmp_path, module, signum)
    assert_ended_by(proc, module, signum, status)


def test_a_stray_signal_as_stoker_run_loads_is_ignored_as_once_it_runs(tmp_path):
    """A task's `kill -USR1 $PPID` (or a stray `kill -ALRM`) as `stoker run` loads: it ran
    on, as once its relay is up (was: killed by the signal, its task never started)."""
    config = tmp_path / "job.aurora"
    config.write_text(CONFIG)
    env = {"PYTHONPATH": f"{HOOK}{os.pathsep}{REPO}",
           "STOKER_TEST_SIGNAL_AT": f"executor.cli.main:{int(signal.SIGUSR1)}"}
    proc = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sb"), "--root", str(tmp_path / "root")],
                         tmp_path, env=env)
    try:
        proc.wait_output("RUNNING", timeout_secs=30)
        proc.stop(signal.SIGINT, 130)
    finally:
        proc.close()
        kill_leftovers(task_pids(tmp_path / "sb"))
    assert f"signal-at-import: {int(signal.SIGUSR1)} at executor.cli.main" in proc.stderr()
    assert "Traceback" not in proc.stderr()


@pytest.mark.parametrize(("command", "status"), [(["executor"], 3),
                                                 (["run", "job.aurora", "--sandbox", "sb", "--root", "root"], 143)])
def test_a_sigterm_ignored_when_stoker_started_stops_it_while_it_loads_as_once_it_runs(tmp_path, command, status):
    """The executor's relay, `stoker run`'s and the observer's stop take SIGTERM whatever it
    was at start; while loading, one ignored at start stayed ignored: the executor loaded on
    (exit 2, no MESOS_* variables), `stoker run` started its task and supervised on."""
    (tmp_path / "job.aurora").write_text(CONFIG)
    try:
        proc = interrupted(command, tmp_path, "executor.cli.main", signal.SIGTERM, launcher=SIGTERM_IGNORED)
    finally:
        kill_leftovers(task_pids(tmp_path / "sb"))
    assert_ended_by(proc, "executor.cli.main", signal.SIGTERM, status)


def ctrl_c_as_a_rerun_holds_its_sandbox(tmp_path: Path, hook_text: str) -> StokerProcess:
    """`stoker run` of a Job run once, run again (with `hook_text` as its sitecustomize) and
    given a Ctrl-C once its log is configured, before its relay (as it holds its sandbox):
    ended with exit 130 and no traceback."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hook_text)
    config, sandbox = tmp_path / "job.aurora", tmp_path / "sb"
    config.write_text(CONFIG.replace("Service(", "Job(").replace("sleep 600", "true"))
    args = ["run", str(config), "--sandbox", str(sandbox)]
    first = StokerProcess(args, tmp_path)
    try:
        assert first.wait() == 0, first.stderr()
    finally:
        first.close()
    config.write_text(CONFIG.replace("Service(", "Job(").replace("sleep 600", "true; true"))  # no early start
    try:
        proc = interrupted(args, tmp_path, "executor.task.leftovers", hook=hook)  # loaded once it holds the sandbox
    finally:
        kill_leftovers(task_pids(sandbox))
    err = proc.stderr()
    assert (proc.proc.returncode, "Traceback" in err) == (130, False), (err, proc.stdout())
    assert "signal-at-import: 2 at executor.task.leftovers" in err, err  # the first came, its log configured
    return proc


# `stoker run` given a Ctrl-C once its log is configured, before its relay (as it holds its
# sandbox: signal_at_import), which its command's handling takes (exit 130); a second one as
# `stoker` ends (as what it compiled is saved), which reaches the entry point's handler
# (`executor.cli.start.run`); and a third inside that handler, which reaches the log's hook
# (`logsetup._crashed`). An atexit function and a last spooled line must come out.
AGAIN_AS_IT_ENDS = TWO_CTRL_CS_AS_IT_ENDS + (HOOK / "sitecustomize.py").read_text()


def test_a_ctrl_c_in_the_entry_point_s_handler_flushes_the_spool_and_runs_atexit(tmp_path):
    """Was: the log's hook handed it to `stoker`'s loading hook, os._exit(130): atexit's
    functions did not run, and what `stoker run` had spooled could be lost."""
    proc = ctrl_c_as_a_rerun_holds_its_sandbox(tmp_path, AGAIN_AS_IT_ENDS)
    err = proc.stderr()
    assert "atexit ran" in err and proc.stdout().endswith("spooled last\n"), (err, proc.stdout())


# As AGAIN_AS_IT_ENDS, without the third Ctrl-C: the second reaches the entry point's
# handler (`executor.cli.start.run`) as what it compiled is saved. A last line is spooled to
# a writer slower than the exit (a terminal that reads late: it writes once someone waits
# for it), which must come out.
CTRL_C_AS_IT_ENDS = patched_at_load("executor.cli.main", """
    import threading

    def _patch(module):
        from executor import spool as spooling  # (`stoker run` loads it after its entry point)
        real_save, real_drain, waited = module.codecache.save, spooling.Spool.drain, threading.Event()

        class LateReader:
            def write(self, text):
                waited.wait(30)  # past the process's end, unless it waits for this line
                return sys.stdout.write(text)

            def flush(self):
                sys.stdout.flush()

        def drain(spool, idle_secs):
            waited.set()
            return real_drain(spool, idle_secs)

        def save():
            spooling.spool().put(LateReader(), "spooled last\\n", lambda exc: None)
            _signal.raise_signal(_signal.SIGINT)
            return real_save()

        module.codecache.save, spooling.Spool.drain = save, drain
    """) + (HOOK / "sitecustomize.py").read_text()


def test_a_ctrl_c_as_stoker_run_ends_writes_what_it_spooled(tmp_path):
    """Was: the entry point's handler exited without waiting for the spool: a line its
    reader had not taken yet was lost."""
    proc = ctrl_c_as_a_rerun_holds_its_sandbox(tmp_path, CTRL_C_AS_IT_ENDS)
    assert proc.stdout().endswith("spooled last\n"), (proc.stderr(), proc.stdout())
