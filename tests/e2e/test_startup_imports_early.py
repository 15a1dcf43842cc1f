"""What the early start and a first run's planning fork load before they fork (issue 14):
module sets, not times, read in a fresh interpreter (the times are `bench/bench_launch.py`'s;
the entry points' whole sets are test_startup_imports.py's)."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.stoker_proc import REPO

# What the early start may load before its first fork (executor/cli/launch.py): the
# interpreter's own start-up modules, a few C modules, and its own. Each module of the
# standard library it does not load is milliseconds it does not spend (typing and
# collections 18 ms, ctypes 4 ms, pathlib 9 ms, attrs 45 ms).
EARLY_ALLOWED = {"fcntl", "marshal", "pwd", "errno", "stat", "_stat", "time", "_ctypes", "__future__",
                 "executor", "executor.cli", "executor.cli.start", "executor.cli.launch", "executor.host",
                 "executor.host.early", "executor.procs", "executor.procs.earlyfork",
                 "executor.procs.runenv", "executor.procs.oomcount", "executor.procs.watchdogsh", "executor.procs.sandboxfs",
                 "executor.local", "executor.local.planfiles", "executor.local.planahead",
                 "executor.host.replacefile"}


def test_the_early_start_loads_only_what_it_needs_before_its_first_fork():
    # with step 4's, which `launch._start` imports (config.logline's `logging` came with them)
    code = ("import sys\nbefore = set(sys.modules)\nfrom executor.cli import launch, start\n"
            "from executor.procs import earlyfork\nearlyfork._libc('prctl')\n"
            "from executor.procs import oomcount, sandboxfs, watchdogsh\n"
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.split()
    assert sorted(set(out) - EARLY_ALLOWED) == []


def test_a_first_runs_planning_fork_comes_before_the_early_starts_run_making_modules():
    # what `launchfirst.fork_ahead` loads before it forks the planning child: the early
    # start's step 4 (its sandbox's files, watchdog, OOM count: 2.3 M instructions of the
    # child's chain), which the child never runs; its parent loads them while the child plans
    code = ("import sys\nfrom executor.cli import launch, launchfirst\nimport executor.local.planning\n"
            "print(*(name in sys.modules for name in ('executor.procs.sandboxfs', 'executor.procs.watchdogsh', "
            "'executor.procs.oomcount')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.split()
    assert out == ["False", "False", "False"]


def test_a_first_runs_planning_fork_comes_before_the_signal_modules_enums():
    # what `launchfirst.fork_ahead` loads before it forks the planning child: `signal`'s
    # enums (0.4-0.6 ms) were among it, used by neither process there (`_signal` serves both)
    code = ("import sys\nfrom executor.cli import launch, launchfirst\nimport executor.local.planning\n"
            "print('signal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.split()
    assert out == ["False"]
