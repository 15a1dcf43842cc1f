"""`proctree.scan_markers` with many markers at once (the observer asks for every LOST
task's in one scan): each environ is looked up in a set of whole entries, and finds exactly
the processes that carry one of them, real `sleep`s here, whatever the number of markers."""
from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from executor.procs import proctree
from executor.procs.spawn import TASK_MARKER

pytestmark = pytest.mark.timeout(30)


@contextlib.contextmanager
def _sleeps(*envs: dict[str, str]) -> Iterator[list[int]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for env in envs:
            procs.append(subprocess.Popen(["sleep", "600"], env=env, stdin=subprocess.DEVNULL))
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def test_a_marker_is_found_as_a_whole_entry_first_or_last_among_a_thousand_asked_for():
    markers = tuple(f"{TASK_MARKER}=scan-test-{n:04d}".encode() for n in range(1000))
    with _sleeps({TASK_MARKER: "scan-test-0007", "PATH": "/usr/bin:/bin"},  # the last entry
                 {"A": "1", TASK_MARKER: "scan-test-0999"},  # an entry after another
                 {TASK_MARKER: "scan-test-0007x"},  # a longer value: another task's
                 {"B": f"{TASK_MARKER}=scan-test-0001"},  # inside another entry's value
                 {"C": "1"}) as (first, second, longer, inside, none):
        found = proctree.scan_markers(markers)
        alone = proctree.scan_markers((markers[7],))
    assert first in found and second in found
    assert not {longer, inside, none} & set(found)
    assert first in alone and second not in alone
    assert found[first].environ.split(b"\0")[0] == markers[7]
