"""`executor.leave`: a command's end under Python's inspect mode (`-i`, PYTHONINSPECT), which
takes a SystemExit for an error: the process ends as `sys.exit` would end it without it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# a thread pool's idle worker, not a daemon, waits for work until `threading`'s own exit hook
# (concurrent.futures registers one) tells it to end, before Python waits for the threads
POOL = ("import concurrent.futures, executor\n"
        "pool = concurrent.futures.ThreadPoolExecutor(1)\n"
        "pool.submit(int).result()\n"
        "executor.leave(3)\n")


@pytest.mark.parametrize("inspect", [[], ["-i"]])
def test_leave_ends_with_threading_exit_hooks_run_as_sys_exit_would(tmp_path, inspect):
    # under -i, `leave` joined the worker before those hooks ran: the process hung for ever
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, *inspect, "-c", POOL], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (3, "")
