"""`earlyfork.one_heap`: every thread allocates from the C library's main heap (glibc's
arenas), in a real interpreter (`stoker run` asks for it before its first thread:
`executor/cli/start.py`)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# Four threads, each holding a block of 4 KB (the C allocator's, not Python's: over 512
# bytes) allocated on it; then glibc's own account of its arenas (`malloc_stats`, on stderr:
# one "Arena N:" line each). Counting the heaps' 64 MiB-aligned mappings instead failed once
# in CI: an unrelated mapping can fall on such an address (about 1 in 16,384 each).
CHILD = r"""
import ctypes, sys, threading
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
ctypes.CDLL(None).malloc_stats()
for thread in threads:
    thread.join()
"""


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), mode], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return arenas_in(done.stderr)


def arenas_in(stats: str) -> int:
    """The arenas `malloc_stats` counted in its output `stats`."""
    return sum(1 for line in stats.splitlines() if re.fullmatch(r"Arena \d+:", line))


def test_threads_allocate_from_one_heap():
    assert arenas("each") >= 5  # glibc's default: the main arena and one for each thread
    assert arenas("one") == 1


# A Python built without libffi has no `_ctypes` (nor `ctypes`): the C calls are then not
# there, as where the C library lacks them (an OSError for those that say so), never an
# ImportError out of `stoker run`'s first lines (one_heap), the planning child's (die_with)
# or the supervisor's subreaper flag.
NO_CTYPES = r"""
import sys
sys.path.insert(0, sys.argv[1])
sys.modules["_ctypes"] = None  # as in a build without it: `import _ctypes` raises ImportError
from executor.procs import earlyfork

earlyfork.one_heap()
earlyfork.trim_heap()
try:
    earlyfork.set_subreaper()
except OSError as exc:
    print("OSError", exc)
"""


def test_without_ctypes_the_c_calls_are_missing_not_an_import_error():
    done = subprocess.run([sys.executable, "-c", NO_CTYPES, str(REPO)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OSError prctl: "), done.stdout
