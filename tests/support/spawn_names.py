#!/usr/bin/env python3
"""spawn_names: asks a real Supervisor, in its own process, to spawn processes by name.

Usage: `python tests/support/spawn_names.py SANDBOX < names.json`

Reads a JSON list of process names (any string, NUL bytes included), starts a Supervisor for
SANDBOX (created if missing) and tries `spawn(ProcessSpec(name, "exit 0"), 0)` for each, in
order. Prints one JSON line: a list with, per name, `{"name": ..., "rejected": message}` when
the supervisor refused it (SpawnError) or `{"name": ..., "spawned": pid, "log_dir": path}`
when it started it. Then it closes the Supervisor (every process killed) and exits 0.

It runs in a child process because a Supervisor makes its process a child subreaper with a
reaper thread that reaps every child, which must not happen inside the test runner.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from config.spec import ProcessSpec  # noqa: E402
from executor.procs.spawn import SpawnError, log_dir  # noqa: E402
from executor.procs.supervisor import Supervisor  # noqa: E402


def main() -> int:
    sandbox = Path(sys.argv[1])
    sandbox.mkdir(parents=True, exist_ok=True)
    names = json.load(sys.stdin)
    sup = Supervisor(sandbox=sandbox, task_label="names.0", env={"PATH": os.environ["PATH"]},
                     post=lambda event: None)
    sup.start()
    results = []
    try:
        for name in names:
            try:
                pid = sup.spawn(ProcessSpec(name, "exit 0"), 0)
            except SpawnError as exc:
                results.append({"name": name, "rejected": str(exc)})
                continue
            except Exception as exc:  # a bug in the supervisor: report it as such
                results.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            directory = log_dir(sandbox, name, 0)
            directory.close()
            results.append({"name": name, "spawned": pid, "log_dir": str(directory.path)})
    finally:
        sup.close()
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
