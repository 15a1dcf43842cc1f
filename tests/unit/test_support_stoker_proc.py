"""tests/support/stoker_proc.py: a second `StokerProcess` in one working directory (`stoker
kill` beside the `stoker run` it stops) keeps the first one's output."""
from __future__ import annotations

from tests.support.stoker_proc import StokerProcess


def test_a_second_process_in_one_directory_does_not_truncate_the_first_one_s_output(tmp_path):
    """Both wrote `stoker.stdout` and `stoker.stderr` there: the second one's start truncated
    the first one's files, and what the first one had written was lost (a test that looked
    for a warning `stoker run` wrote before the `stoker kill` did not find it, 1 run in 2)."""
    first = StokerProcess(["--version"], tmp_path).exited(0)
    second = StokerProcess(["--version"], tmp_path).exited(0)
    assert first.stdout() == second.stdout() and first.stdout().startswith("stoker ")
    assert first.stdout_path != second.stdout_path and first.stderr_path != second.stderr_path
