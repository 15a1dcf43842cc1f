"""`executor.host.turnlock.take` when the thread that would wait for the lock cannot start.

The wait is a thread's blocking `flock`; under an address-space limit (ulimit -v) with no room
for a thread, `executor.logs.start_thread` refuses it (a full pids cgroup refuses it in the C
library, the same RuntimeError). The code cache's save, at a command's end, must then give up
its turn (a next start compiles again), not end the command with a traceback. A fresh process:
the limit is set in it.
"""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.stoker_proc import REPO

NO_ROOM_FOR_A_THREAD = """
import fcntl, os, resource, sys
from executor.host import turnlock
from executor.logs import address_space, room_for_thread
path = sys.argv[1]
holder = os.open(path, os.O_RDWR)
fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: as another process holding it
fd = os.open(path, os.O_RDWR)
_, mapped = address_space()
limit = mapped + room_for_thread() // 2  # pages to spare, but not a thread's
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
turn = turnlock.take(fd, 30.0)
try:
    os.fstat(fd)
    kept = True
except OSError:
    kept = False
print(turn, kept)
"""


def test_no_thread_to_wait_with_gives_up_the_turn_at_once_and_the_descriptor(tmp_path):
    """Was: the refusal (NoRoomForThread) went up through `codecache.save()`, a traceback at
    the command's end, and the descriptor was left open."""
    lock = tmp_path / "attrs-run.lock"
    lock.write_bytes(b"")
    done = subprocess.run([sys.executable, "-c", NO_ROOM_FOR_A_THREAD, str(lock)], cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["False", "False"], ""), done.stderr
