"""`executor/local/planning.py`: a Ctrl-C (SIGINT to `stoker run` alone, as `kill -INT` sends it)
while the child plans, or just after the fork before the parent waits for its answer, ends
both: the parent with KeyboardInterrupt, its child killed and reaped. Fresh interpreters, as
in test_planning.py (its PRELUDE)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.integration.test_planning import PRELUDE
from tests.support import pidnames
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for


def interrupted_while_planning(tmp_path: Path, wait_for_file: str, setup: str = "") -> None:
    """`plan_apart` in a process of its own, whose child plans for 60 s; SIGINT to the parent
    (only, as `kill -INT` does) once `wait_for_file` (in tmp_path) exists: the parent must
    end with KeyboardInterrupt, its child killed and reaped, not left planning."""
    pid_file = tmp_path / "child"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(setup) + textwrap.dedent(f"""
            import signal, time
            signal.signal(signal.SIGINT, signal.default_int_handler)  # even where it came ignored (`make test &`)
            def slow(sources):
                open({str(pid_file)!r}, "w").write(str(os.getpid()))
                time.sleep(60)
            try:
                plan_apart(slow)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    child = 0
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, message="the child planning")
        child = pidnames.pid_in(pid_file)
        wait_for((tmp_path / wait_for_file).exists, 30, message=wait_for_file)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert out == "interrupted\n"
        time.sleep(0.05)
        assert not pidnames.is_live(child)  # killed, not left planning
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child:
            pidnames.kill(child)


def test_ctrl_c_while_the_child_plans_ends_both(tmp_path):
    interrupted_while_planning(tmp_path, "child")


def test_ctrl_c_just_after_the_fork_still_ends_the_child(tmp_path):
    # The parent is held just after its fork, before it waits for the answer (as a loaded
    # machine may hold it): the signal must wait for the wait that kills the child, not raise
    # where nothing would (the child then planned on, holding the parent's stdout).
    interrupted_while_planning(tmp_path, "forked", setup=f"""
        import gc, time, types
        from executor.local import planning

        def unfreeze():
            open({str(tmp_path / "forked")!r}, "w").close()
            time.sleep(0.5)
            gc.unfreeze()

        planning.gc = types.SimpleNamespace(freeze=gc.freeze, unfreeze=unfreeze)
    """)
