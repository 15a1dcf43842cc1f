"""`earlyfork.trim_heap`: the C library's free heap pages go back to the kernel, in a real
interpreter (the supervisor calls it once, as its start ends: `Supervisor.idle`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# 4,000 blocks of 4 KB (the C allocator's, not Python's: each is over 512 bytes), every
# eighth kept: the others' pages, between kept blocks, cannot go back as the heap's top does
# when freed; the heap's resident KiB before and after the trim, as a JSON line.
CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from executor.procs import earlyfork

def heap_kib():
    lines = open("/proc/self/smaps").read().splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("[heap]"))
    return next(int(line.split()[1]) for line in lines[at:] if line.startswith("Rss:"))

blocks = [bytes(4000) + bytes([i % 256]) for i in range(4000)]
kept = blocks[::8]
del blocks
before = heap_kib()
earlyfork.trim_heap()
print(json.dumps([before, heap_kib()]))
"""


def test_the_heaps_free_pages_go_back_to_the_kernel():
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout)
    assert before - after > 8000, (before, after)  # of the 14 MB freed, at least 8 back
