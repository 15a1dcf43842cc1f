"""Unrelated processes on the host, for tests about work that must not grow with the host.

`Background(count)` starts `count` idle `sleep`s, children of one bash in its own session
(never a child of a Stoker process, so no Stoker ever counts them as its own), and `close()`
has bash kill and reap them, then kills bash's whole session if it did not exit. Use it as
a context manager; `wait_ready()` returns once every sleep has started. The benches
(bench/bench_supervisor.py, bench_restart_run.py) use it for their busy host too.

bash kills and reaps its sleeps itself, and only then exits: a test or bench process that
is a child subreaper (once an owner ran in it) would otherwise adopt the orphaned sleeps,
and the next owner's reaper would reap them in the middle of a measurement.
"""
from __future__ import annotations

import os
import signal
import subprocess


class Background:
    SCRIPT = ("trap 'kill -KILL $(jobs -p) 2>/dev/null; wait; exit 0' TERM; "
              "for i in $(seq {count}); do sleep 100000 & done; echo ready; wait")

    def __init__(self, count: int) -> None:
        self.count = count
        self.proc = subprocess.Popen(["/bin/bash", "-c", self.SCRIPT.format(count=count)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})

    def wait_ready(self) -> Background:
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the {self.count} background processes did not start")
        return self

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Background:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.close()
