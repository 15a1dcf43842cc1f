"""The supervisor's watchdog started by posix_spawn (`watchdog._spawn`) is the one Popen
started (`watchdog._popen`, where posix_spawn cannot start a session): the same
descriptors (its pipe on 0, /dev/null on 1 and 2, the held list on one more, nothing this
process inherited open for exec, which Popen's `close_fds` closed), working directory (/:
no sandbox kept busy), session, signal dispositions and environment. Real supervisors, in
a child each, whose working directory is a sandbox."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# A supervisor started in the sandbox (its cwd) with a pipe inherited open for exec, its
# watchdog as it waits: what it holds, as a JSON line. argv[3] "popen": this Python's
# posix_spawn cannot start a session (test_spawn_direct.py's NotImplementedError).
CHILD = r"""
import json, os, signal, sys
sys.path.insert(0, sys.argv[2])
if sys.argv[3] == "popen":
    from tests.support.nosetsid import posix_spawn_without_setsid
    posix_spawn_without_setsid()
from pathlib import Path
from executor.procs.supervisor import Supervisor
from tests.support.waiting import wait_for
os.chdir(sys.argv[1])
inherited, kept = os.pipe()
os.dup2(inherited, 9)  # open for exec (os.dup2's default), above the list's 3
sup = Supervisor(sandbox=Path(sys.argv[1]), task_label="dog.0", env={}, post=lambda e: None, cgroups="off")
try:
    sup.start()
    dog = sup.watchdog_pid
    def status():
        return dict(line.split(":\t", 1) for line in Path(f"/proc/{dog}/status").read_text().splitlines())
    # its script's first lines run: `cd /`, then its trap (SIGTERM ignored)
    wait_for(lambda: int(status()["SigIgn"], 16) >> (signal.SIGTERM - 1) & 1, message="the trap set")
    fds = {int(fd): os.readlink(f"/proc/{dog}/fd/{fd}") for fd in os.listdir(f"/proc/{dog}/fd")}
    ignored = int(status()["SigIgn"], 16)
    out = {"fds": sorted(fds), "cwd": os.readlink(f"/proc/{dog}/cwd"), "stdin": fds[0].startswith("pipe:"),
           "null": [fds[1], fds[2]],
           "list": fds[max(fds)].startswith("pipe:") and fds[max(fds)] != fds[0],
           "session": os.getsid(dog) == dog,
           "ignored": [s.name for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ)
                       if ignored >> (s - 1) & 1],
           "blocked": int(status()["SigBlk"], 16),
           "env": sorted(e.split(b"=", 1)[0].decode() for e in Path(f"/proc/{dog}/environ").read_bytes().split(b"\0") if e)}
finally:
    sup.close()
print(json.dumps(out), flush=True)
"""


def watchdog_as_started(sandbox: Path, how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(sandbox), str(REPO), how],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_watchdog_by_posix_spawn_holds_what_popens_held(tmp_path: Path) -> None:
    spawned = watchdog_as_started(tmp_path, "spawn")
    popened = watchdog_as_started(tmp_path, "popen")
    fds = spawned.pop("fds")
    assert len(fds) == 4 and fds[:3] == [0, 1, 2], fds  # the list's number is not Popen's (3, not its own)
    assert len(popened.pop("fds")) == 4
    assert spawned == popened  # the signal mask too: the forking thread's
    del spawned["blocked"]
    assert spawned == {"cwd": "/", "stdin": True, "null": ["/dev/null", "/dev/null"], "list": True, "session": True,
                       "ignored": ["SIGHUP", "SIGINT", "SIGTERM"],
                       "env": ["LC_ALL", "PATH", "STOKER_WATCHDOG_SCRIPT"]}


def test_the_watchdog_s_environment_is_ascii_so_any_locale_can_pass_it() -> None:
    """Its script travels in its environment, encoded by the locale's codec: under `LC_ALL=C
    PYTHONUTF8=0` a `²` in one of its comments made every supervisor's start fail
    (UnicodeEncodeError out of posix_spawn: `stoker run` exited 70)."""
    from executor.procs.watchdogsh import WATCHDOG_COMMAND, WATCHDOG_ENV, WATCHDOG_NAME

    words = [WATCHDOG_COMMAND, WATCHDOG_NAME, *WATCHDOG_ENV, *WATCHDOG_ENV.values()]
    assert [w for w in words if not w.isascii()] == []
