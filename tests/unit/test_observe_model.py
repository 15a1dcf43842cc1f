"""`executor/observe/model.py`: the edges of the CPU look's rule (the look exactly
MIN_INTERVAL_SECS after the one before measures; a run of no time yet has no average), and
a log range as the page's script reads it (`LogChunk.to_json`), every key."""
from __future__ import annotations

import pytest

from executor.observe.model import (
    MIN_INTERVAL_SECS,
    SINCE_LAST_LOOK,
    SINCE_START,
    CpuSample,
    LogChunk,
    cpu_look,
)


def test_a_look_exactly_the_least_interval_after_the_one_before_measures():
    before = CpuSample(0.0, 1.0)  # (at 0.0: the interval exactly MIN_INTERVAL_SECS, no rounding)
    percent, basis, kept = cpu_look(before, CpuSample(MIN_INTERVAL_SECS, 1.1), 100.0)
    assert (percent, basis) == (pytest.approx(50.0), SINCE_LAST_LOOK) and kept.at == MIN_INTERVAL_SECS


@pytest.mark.parametrize(("run_secs", "average"), [(0.0, None), (-1.0, None), (0.5, 400.0), (1.0, 200.0)])
def test_the_average_since_the_start_needs_a_run_that_has_run(run_secs, average):
    assert cpu_look(None, CpuSample(10.0, 2.0), run_secs)[:2] == (average, SINCE_START)


def test_a_log_range_as_the_page_reads_it():
    chunk = LogChunk(task_id="t-1", process="web", run=3, stream="stdout", start=10, end=25, size=40,
                     data="fifteen bytes..", capped=True, runs=(1, 2, 3), parts=("stdout.1", "stdout"),
                     file="2049:12:7", run_dir="2049:11", continues=False, rotated=True, over=True,
                     supervisor="4242-99", hole_before=6)
    assert chunk.to_json() == {
        "task_id": "t-1", "process": "web", "run": 3, "stream": "stdout", "offset": 10, "end": 25,
        "length": 15, "size": 40, "capped": True, "data": "fifteen bytes..", "runs": [1, 2, 3],
        "parts": ["stdout.1", "stdout"], "file": "2049:12:7", "dir": "2049:11", "continues": False,
        "rotated": True, "over": True, "supervisor": "4242-99", "latest_run": 3, "hole_before": 6}


def test_a_log_range_of_no_run_and_no_supervisor_says_none():
    chunk = LogChunk(task_id="t-1", process="web", run=0, stream="stderr", start=0, end=0, size=0,
                     data="", capped=False, runs=(), parts=())
    found = chunk.to_json()
    assert (found["latest_run"], found["supervisor"], found["runs"], found["parts"]) == (None, None, [], [])
    assert (found["file"], found["dir"], found["continues"], found["rotated"], found["over"],
            found["hole_before"], found["length"]) == ("", "", True, False, False, 0, 0)
