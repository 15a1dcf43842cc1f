"""`executor.codecache`'s lock on its file: two writers at once keep both one's classes, and a lock
held for good delays a save only a bound and fails the warm step, saying so. Fresh processes,
as in test_codecache.py (its `probe`)."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import pytest

from tests.integration.test_codecache import PROBE, entries_of, generated, probe, run_file, write_entries
from tests.integration.test_codecache_files import SPEC, code
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

# The lock's bound (5 s) made shorter in the child: what happens at its end is the same
SHORT_BOUND = "from executor import codecache as _bound\n_bound.LOCK_WAIT_SECS = 0.5\n"
# `python -m executor.codecache cli`, with the module patched first as `-m` cannot
WARM_CLI = ("import runpy, sys\nsys.argv = ['executor.codecache', 'cli']\n"
            "runpy.run_module('executor.codecache', run_name='__main__', alter_sys=True)\n")


def waits_for_a_lock(pid: int) -> bool:
    """Whether process `pid` is blocked in an `flock` (a `->` line of /proc/locks)."""
    with open("/proc/locks") as locks:
        return any(fields[1:3] == ["->", "FLOCK"] and fields[5] == str(pid)
                   for fields in (line.split() for line in locks) if len(fields) > 5)


def test_two_writers_at_once_keep_both_ones_classes(tmp_path):
    """Writer A (this test) has read the file (none yet) and holds its lock while a start, B,
    compiles and saves; A then writes what it read with its own class, and lets go. Was: B
    did not wait, A renamed last, and B's classes were gone until a next start."""
    theirs = generated("elsewhere.Theirs")
    lock = os.open(tmp_path / f"attrs-run.{sys.implementation.cache_tag}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path), "PYTHONHASHSEED": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    b = None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        b = subprocess.Popen([sys.executable, "-c", PROBE, "cache"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             text=True)
        wait_for(lambda: b.poll() is not None or waits_for_a_lock(b.pid), timeout_secs=60)
        write_entries(tmp_path / f"attrs-run.{sys.implementation.cache_tag}.bin", {theirs: (("x = 1", code()),)})
        os.close(lock)
        lock = -1
        saved = json.loads(b.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        if lock >= 0:
            os.close(lock)
        if b is not None and b.poll() is None:
            b.kill()
            b.wait()
    assert b.returncode == 0 and saved["saved"]
    entries = entries_of(run_file(tmp_path))
    assert theirs in entries and SPEC in entries
    assert probe(tmp_path, 2)["counts"] == [saved["counts"][1], 0]  # all of B's served


def test_a_lock_held_for_good_delays_a_save_only_a_bound(tmp_path):
    """A writer stopped (SIGSTOP, a debugger) while it held the lock, or on a hung network file
    system: a start's `save()` as it ends gives up after a bound and writes nothing (a next start
    compiles again what this one did). Was: it waited for good, and the command (`stoker run`'s
    stop, a supervisor under Mesos) never exited."""
    lock = os.open(tmp_path / f"attrs-run.{sys.implementation.cache_tag}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # never let go while the start runs
        result = probe(tmp_path, 1, script=SHORT_BOUND + PROBE)  # (its own bound: 60 s)
    finally:
        os.close(lock)
    assert result["installed"] and not result["saved"]
    assert not list(tmp_path.glob("attrs-run.*.bin"))


def test_the_warm_step_with_the_lock_held_for_good_says_so_and_fails(tmp_path):
    """As a start's save: was a wait for good (an installer's step that never ended)."""
    lock = os.open(tmp_path / f"attrs-cli.{sys.implementation.cache_tag}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run([sys.executable, "-P", "-c", SHORT_BOUND + WARM_CLI], cwd=REPO, timeout=60,
                              env={**env, "STOKER_CODE_CACHE": str(tmp_path)}, capture_output=True, text=True)
    finally:
        os.close(lock)
    assert done.returncode == 1 and "another process has held its lock for 0.5 s" in done.stderr, done.stderr
    assert not list(tmp_path.glob("attrs-cli.*.bin"))
