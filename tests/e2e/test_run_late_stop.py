"""A stop signal that reaches `stoker run` once its run is over (docs/contract.md §9): as it
lets go of what it held (the early start it did not take, the kept plan's lease, systemd's
notification socket) and after its signal relay closed, as it writes its last lines and
exits. Such a signal has nothing left to stop: the run's exit status stands, and what the
run held is let go all the same. Was: the entry point's handler, put back by the relay,
raised its `Stopped` there (exit 143 for a job that ended 0), and one that came as the run
let go of what it held skipped the rest of it.

The moment is held by a test-only `sitecustomize` (tests/support/importhook.py): the real
`stoker run` sends itself a real SIGTERM at that moment, and writes a line to a file once
what it held is let go."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, live, task_pids

CONFIG = """
main = Process(name='main', cmdline='echo done')
jobs = [Job(cluster='local', role='me', environment='test', name='once',
            task=Task(processes=[main], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""

# At the start of RunStart.close (the run's end lets go of its early start and lease); the
# line in STOKER_TEST_CLOSED once that close has returned.
AS_IT_LETS_GO = patched_at_load("executor.local.runstart", """
    def _patch(module):
        real = module.RunStart.close

        def close(self):
            os.kill(os.getpid(), 15)
            real(self)
            with open(os.environ["STOKER_TEST_CLOSED"], "a") as f:
                f.write("closed\\n")

        module.RunStart.close = close
    """)

# Right after the signal relay closed.
AFTER_THE_RELAY = patched_at_load("executor.host.signals", """
    def _patch(module):
        real = module.SignalRelay.close

        def close(self, *args, **kwargs):
            real(self, *args, **kwargs)
            if not os.environ.pop("STOKER_TEST_SENT", ""):
                os.environ["STOKER_TEST_SENT"] = "1"
                os.kill(os.getpid(), 15)

        module.SignalRelay.close = close
    """)


def hooked_run(tmp_path: Path, hook_text: str, **env: str) -> tuple[StokerProcess, Path]:
    """`stoker run` of CONFIG in a sandbox under `tmp_path`, with `hook_text` as its
    sitecustomize (before the checkout on PYTHONPATH) and `env` besides; and its sandbox."""
    hook, sandbox = tmp_path / "hook", tmp_path / "sb"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hook_text)
    config = tmp_path / "job.aurora"
    config.write_text(CONFIG)
    args = ["run", str(config), "--sandbox", str(sandbox), "--root", str(tmp_path / "root")]
    return StokerProcess(args, tmp_path, env={"PYTHONPATH": f"{hook}{os.pathsep}{REPO}", **env}), sandbox


@pytest.mark.parametrize("hook_text", [AS_IT_LETS_GO, AFTER_THE_RELAY], ids=["as-it-lets-go", "after-the-relay"])
def test_a_sigterm_once_the_run_is_over_leaves_its_exit_status_and_lets_go_of_what_it_held(tmp_path, hook_text):
    closed = tmp_path / "closed"
    proc, sandbox = hooked_run(tmp_path, hook_text, STOKER_TEST_CLOSED=str(closed))
    try:
        status = proc.wait(60)
        err = proc.stderr()
        assert status == 0, (status, err, proc.stdout())
        assert "Traceback" not in err, err
        assert "FINISHED" in proc.stdout()
        if hook_text is AS_IT_LETS_GO:
            assert Path(closed).read_text() == "closed\n"
        assert not live(task_pids(sandbox))
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))


# As the command saves what it compiled, once the run is over: an atexit function, a line
# spooled, then a real Ctrl-C (SIGINT).
CTRL_C_AS_IT_SAVES = patched_at_load("executor.cli.main", """
    import atexit
    import signal

    def _patch(module):
        real = module.codecache.save

        def save():
            atexit.register(os.write, 2, b"atexit ran\\n")
            from executor.spool import spool
            spool().put(sys.stdout, "spooled last\\n", lambda exc: None)
            os.kill(os.getpid(), signal.SIGINT)
            return real()

        module.codecache.save = save
    """)


def test_a_ctrl_c_once_the_run_is_over_ends_the_command_at_once_with_130(tmp_path):
    """A Ctrl-C as `stoker run` writes its last lines (a terminal that stopped reading) or
    saves its code cache is the operator's "stop waiting": exit 130, no traceback, what the
    run printed and spooled written, atexit's functions run. Was: SIGINT stayed ignored once
    the relay closed (exit 0, the Ctrl-C lost): `main.run`'s own Ctrl-C handling of the
    spool's wait could never be reached after a run."""
    proc, sandbox = hooked_run(tmp_path, CTRL_C_AS_IT_SAVES)
    try:
        status = proc.wait(60)
        err = proc.stderr()
        assert (status, "Traceback" in err) == (130, False), (status, err, proc.stdout())
        assert "atexit ran" in err, err
        assert "FINISHED" in proc.stdout() and proc.stdout().endswith("spooled last\n"), proc.stdout()
        assert not live(task_pids(sandbox))
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))


# As the code cache's file is written (its temporary made, `marshal.dumps` done): a real Ctrl-C.
CTRL_C_AS_IT_WRITES = patched_at_load("executor.codecachewrite", """
    import marshal
    import signal
    import types

    def _dumps(value):
        made = marshal.dumps(value)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    def _patch(module):
        module.marshal = types.SimpleNamespace(dumps=_dumps, loads=marshal.loads)
    """)


def test_a_ctrl_c_as_the_code_cache_is_written_leaves_no_temporary_file(tmp_path):
    """Once the run is over a Ctrl-C ends `stoker run` at once, its code cache's write too.
    Was: that write's temporary file (`attrs-run….bin.PID.HEX.tmp`, the whole cache) was left
    in the cache's directory (the package's `__pycache__` by default), one more each time."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    proc, sandbox = hooked_run(tmp_path, CTRL_C_AS_IT_WRITES, STOKER_CODE_CACHE=str(cache), PYTHONDONTWRITEBYTECODE="")
    try:
        status = proc.wait(60)
        err = proc.stderr()
        assert (status, "Traceback" in err) == (130, False), (status, err, proc.stdout())
        assert "FINISHED" in proc.stdout()
        assert sorted(p.name for p in cache.iterdir() if p.name.endswith(".tmp")) == []
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))


# SIGINT ignored from the start (`stoker run … &` in a script, nohup-like), then a real SIGINT
# once the run is over and what it held let go, as the command saves what it compiled.
IGNORED_THEN_AS_IT_SAVES = patched_at_load("executor.cli.main", """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as inherited: Python keeps it so

    def _patch(module):
        real = module.codecache.save

        def save():
            signal.raise_signal(signal.SIGINT)
            with open(os.environ["STOKER_TEST_CLOSED"], "a") as f:
                f.write(f"ignored: {signal.getsignal(signal.SIGINT) is signal.SIG_IGN}\\n")
            return real()

        module.codecache.save = save
    """)


def test_a_sigint_ignored_from_the_start_stays_ignored_once_the_run_is_over(tmp_path):
    """The Ctrl-C put back once the run is over is the handler found at start: one ignored
    then (a script's background job, whose Ctrl-C is the script's) stays ignored, and the
    run's exit status stands."""
    closed = tmp_path / "closed"
    proc, sandbox = hooked_run(tmp_path, IGNORED_THEN_AS_IT_SAVES, STOKER_TEST_CLOSED=str(closed))
    try:
        status = proc.wait(60)
        err = proc.stderr()
        assert (status, "Traceback" in err) == (0, False), (status, err, proc.stdout())
        assert Path(closed).read_text() == "ignored: True\n"
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))
