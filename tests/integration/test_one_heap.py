"""`earlyfork.one_heap`: every thread allocates from the C library's main heap (glibc's
arenas), in a real interpreter (`stoker run` asks for it before its first thread:
`executor/cli/start.py`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# Four threads, each holding a block of 4 KB (the C allocator's, not Python's: over 512
# bytes) allocated on it; glibc maps each arena but the main one as a heap of its own at an
# address aligned to its 64 MiB maximum: the count of such mappings, as a JSON line.
CHILD = r"""
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from executor.procs import earlyfork

if sys.argv[2] == "one":
    earlyfork.one_heap()
kept, go = [], threading.Barrier(5)

def allocate():
    kept.append(bytearray(4000))
    go.wait()

threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
go.wait()
maps = [line.split()[0].split("-") for line in open("/proc/self/maps")]
print(json.dumps(sum(1 for start, _ in maps if int(start, 16) % (64 << 20) == 0)))
for thread in threads:
    thread.join()
"""


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), mode], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout))


def test_threads_allocate_from_one_heap():
    assert arenas("each") >= 4  # glibc's default: an arena each (what the test sees)
    assert arenas("one") < arenas("each") - 3
