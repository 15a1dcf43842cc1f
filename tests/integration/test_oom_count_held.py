"""The OOM kill count read through the file a counter keeps open (`OomCounter.hold`), on a
real cgroup-v1 memory cgroup (`tests/support/memcg.py`; skipped where none can be made):
a cgroup file is rendered anew at each pread, and a held file whose cgroup went is no
reason to stop counting."""
from __future__ import annotations

import subprocess
import sys

import pytest

from executor.procs.oomcount import OomCounter
from tests.support.memcg import memory_cgroup

pytestmark = pytest.mark.timeout(60)
GREEDY = ("import sys\nopen(sys.argv[1], 'w').write('0')\n"  # into the cgroup ("0": itself), then 64 MiB touched
          "block = bytearray(64 << 20)\nblock[::4096] = b'1' * len(block[::4096])\n")


def held(directory) -> OomCounter:  # type: ignore[no-untyped-def]
    counter = OomCounter(str(directory), "/" + directory.name, v2=False, top=str(directory.parent))
    counter.hold()
    assert counter.fd >= 0
    return counter


def test_a_held_counter_sees_a_real_oom_kill():
    with memory_cgroup("stoker-oom-held", 16 << 20) as cgroup:
        counter = held(cgroup)
        assert counter.count() == 0
        greedy = subprocess.run([sys.executable, "-c", GREEDY, str(cgroup / "cgroup.procs")], timeout=30)
        assert greedy.returncode == -9
        assert counter.count() == 1


def test_a_held_counter_whose_cgroup_was_made_again_reads_the_new_one():
    """The cgroup removed (its held file then reads ENODEV, for ever) and made again at the
    same path (v2: a parent's `memory` controller turned off and on again): the count is the
    new cgroup's, read by its path as an unheld counter's is (was: None at every look since,
    so no run was ever named the OOM killer's again)."""
    with memory_cgroup("stoker-oom-again", 16 << 20) as cgroup:
        counter = held(cgroup)
        cgroup.rmdir()
        assert counter.count() is None  # gone
        cgroup.mkdir()
        assert counter.count() == 0
