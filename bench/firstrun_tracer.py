"""The marks `bench/firstrun_timeline.py` reads: loaded by the `stoker run` it starts, before
the entry point (`python -c "import firstrun_tracer; ..."`), it appends one line per mark to
the file named by FIRSTRUN_MARKS: the pid, CLOCK_MONOTONIC (the clock the bench reads the
exec and the first run's line with), the process's CPU time, and what happened: a module's
load began or ended (`importlib._bootstrap._load_unlocked`, which runs each module's code),
a probed function was entered or left, the process forked, its child began, the process
ended. Probes cost a few microseconds each (two writes a module): the timeline is for where
the time goes, not a figure of its own (`bench_launch.py` measures without them).
"""
from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

_fd = os.open(os.environ["FIRSTRUN_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
_hooks: dict[str, list[Callable[[Any], None]]] = {}

# What is probed, by module: the early start, the planning child's steps, the first run's start.
PROBED = {
    "executor.cli.launchfirst": ("fork_ahead", "start_first", "_start_ahead"),
    "executor.local.planning": ("plan_ahead", "allocate_ports"),
    "config.plan": ("plan_job", "open_problem"),
    "config.loader": ("load_job", "check_bound"),
    "config.bind": ("bind",),
    "executor.local.planform": ("encode",),
    "executor.local.plancache": ("encode", "first_wave", "lease_at"),
    "executor.cli.launch": ("_take_off",),
    "executor.procs.earlyfork": ("spawn_run",),
    "executor.procs.watchdogsh": ("spawn_watchdog",),
    "executor.codecache": ("also",),
    "executor.cli.logsetup": ("configure",),
}


def mark(what: str) -> None:
    os.write(_fd, f"{os.getpid()} {time.monotonic():.6f} {time.process_time():.6f} {what}\n".encode())


def _probe(module: Any, name: str) -> None:
    original = getattr(module, name, None)
    if original is None or getattr(original, "_probed", False):
        return
    label = f"{module.__name__}.{name}"

    def probed(*args: Any, **kwargs: Any) -> Any:
        mark(f"call {label}")
        try:
            return original(*args, **kwargs)
        finally:
            mark(f"return {label}")

    probed._probed = True  # type: ignore[attr-defined]
    setattr(module, name, probed)


def _install() -> None:
    import _frozen_importlib as bootstrap  # type: ignore[import-not-found]

    load = bootstrap._load_unlocked

    def loading(spec: Any) -> Any:
        mark(f"load {spec.name}")
        try:
            return load(spec)
        finally:
            mark(f"loaded {spec.name}")
            module = sys.modules.get(spec.name)
            for name in PROBED.get(spec.name, ()):
                _probe(module, name)

    bootstrap._load_unlocked = loading
    fork, leave = os.fork, os._exit

    def forked() -> int:
        pid = fork()
        mark("child" if pid == 0 else f"forked {pid}")
        return pid

    def ended(code: int) -> None:
        mark(f"exit {code}")
        leave(code)

    os.fork, os._exit = forked, ended  # type: ignore[assignment]
    gc.callbacks.append(lambda phase, info: mark(f"gc {phase} {info['generation']}"))


mark("entry")
_install()
