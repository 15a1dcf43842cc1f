"""A task's process the watchdog's marker pass reads in the middle of an exec: its
environment reads as empty then (from the switch to the new image until its arguments are
placed, microseconds; and a read of a file opened before the switch gets nothing), so the
pass misses it. Was: a pass that found nothing ended the watchdog, and the process lived on
(a run `bash -c 'exec sleep 600'` the close's kill did not reach, 1 in 200 closes let go
right after the spawn; CI's tests/integration/test_close_raises.py). Now a pass that finds
nothing is made once more before the watchdog exits.

The miss is made sure of here: a `grep` first in the watchdog's PATH answers its first
call with nothing, as a pass whose one process was mid-exec; every later call is grep's."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# The first call finds nothing; each call is counted (a line in CALLS)
GREP = """#!/bin/sh
echo call >> "$0.calls"
[ -e "$0.missed" ] || {{ : > "$0.missed"; exit 1; }}
exec {real} "$@"
"""

# A task's process (`sleep`, with the marker) and a watchdog let go, in a child of its own
# (no reaper of a test's supervisor there to reap them first): the watchdog's exit code and
# whether the process was killed, as a JSON line
CHILD = r"""
import contextlib, json, os, signal, sys
sys.path.insert(0, sys.argv[1])
from executor.procs import watchdog
bin_dir, marker = sys.argv[2], sys.argv[3]
watchdog.WATCHDOG_ENV = {**watchdog.WATCHDOG_ENV, "PATH": bin_dir + ":" + watchdog.WATCHDOG_ENV["PATH"]}
run = os.posix_spawn("/bin/sleep", ["sleep", "600"], {"STOKER_TASK_MARKER": marker})
try:
    dog = watchdog.start_watchdog(marker)
    dog.close_pipe()  # as the supervisor's close, or its death
    status = os.waitpid(dog.pid, 0)[1]
    killed = os.waitpid(run, os.WNOHANG)[0] == run
    print(json.dumps({"dog": os.waitstatus_to_exitcode(status), "killed": killed}), flush=True)
finally:
    with contextlib.suppress(ProcessLookupError, ChildProcessError):  # (reaped above: killed by the watchdog)
        os.kill(run, signal.SIGKILL)
        os.waitpid(run, 0)
"""


def test_a_process_the_first_pass_missed_mid_exec_is_killed_by_the_next(tmp_path: Path) -> None:
    real = shutil.which("grep")
    assert real is not None
    grep = tmp_path / "grep"
    grep.write_text(GREP.format(real=real))
    grep.chmod(0o755)
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(tmp_path), "0123456789abcdef" * 2],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"dog": 0, "killed": True}
    calls = (tmp_path / "grep.calls").read_text().split()
    assert len(calls) >= 2, "the watchdog made one pass only"
