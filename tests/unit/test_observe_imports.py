"""`stoker run` and `stoker executor` never load the observer or waitress: a fresh
interpreter proves it.

The script imports what those two commands start with (the CLI, whose parser registers
`stoker observe` too, the `stoker run` front-end, the executor, the task owner), builds the
parser, and looks in `sys.modules`; then it imports the observer's server, so the check is
shown to be able to fail.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import executor.cli.main, executor.mesos.executor, executor.local.run, executor.task.owner
executor.cli.main._parser()

def loaded():
    return sorted(m for m in sys.modules
                  if m.split(".")[0] == "waitress" or m.startswith("executor.observe"))

before = loaded()
import executor.observe.server
print(json.dumps({"before": before, "after": "executor.observe.server" in loaded()}))
"""


def test_run_and_executor_never_import_the_observer():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"before": [], "after": True}
