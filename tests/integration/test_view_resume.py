"""The observer's kept views (`executor/task/viewcache.py`): a checkpoint that did not change
since it was replayed is not read again, and one that grew is read from where that replay
ended (while its supervisor runs: once it is gone, only the view is kept), with the view a
whole replay gives; any other file (another inode, a file cut and
written again, a line half written when it was read) is replayed whole.

Each view read through the cache is checked against a whole replay of the same file at the
same moment (`inspect_sandbox` without a cache), on checkpoints written by the product's own
writer (`CheckpointWriter`) and by real `stoker run`s."""
from __future__ import annotations

import json
import os
import textwrap
import time

import pytest

from executor.host.identity import own_identity
from executor.task.checkpoint import CheckpointWriter
from executor.task.inspection import Viewed, inspect_sandbox
from executor.task.viewcache import ViewCache
from tests.support.statuscli import RUNNING, header
from tests.support.stoker_proc import StokerProcess

pytestmark = pytest.mark.timeout(60)


def _health(n: int) -> dict:
    return {"kind": "health", "outcome": "passed", "reason": "200 OK", "attempts": n, "consecutive_failures": 0,
            "consecutive_successes": n, "state": "RUNNING", "latency_secs": 0.002, "wall": 1000.0 + n}


def _same(sandbox, cache: ViewCache[Viewed]):
    """The view through `cache`, asserted equal to a whole replay's; returns it."""
    kept, whole = inspect_sandbox(sandbox, cache=cache), inspect_sandbox(sandbox)
    assert (kept.view, kept.problem) == (whole.view, whole.problem)
    return kept.view


def _checkpoint(sandbox):
    return sandbox / ".stoker" / "checkpoint.jsonl"


def test_a_checkpoint_that_grew_is_read_from_where_its_replay_ended(tmp_path):
    me, sandbox, cache = own_identity(), tmp_path / "sb", ViewCache[Viewed]()
    writer = CheckpointWriter(sandbox)
    try:
        writer.append_many([header(me.pid, me.start_ticks), *RUNNING])
        _same(sandbox, cache)
        for n in range(1, 6):
            writer.append_many([_health(n), _health(n + 100)])
            view = _same(sandbox, cache)
            assert view is not None and view.current.health.attempts == n + 100
        reads = cache.read
        _same(sandbox, cache)  # unchanged: kept, not read again
        assert cache.read == reads
    finally:
        writer.close()
    assert (cache.read, cache.resumed) == (6, 5)  # before: each of the 5 replayed whole


def test_a_line_half_written_when_it_was_read_is_read_whole_once_complete(tmp_path):
    me, sandbox, cache = own_identity(), tmp_path / "sb", ViewCache[Viewed]()
    writer = CheckpointWriter(sandbox)
    writer.append_many([header(me.pid, me.start_ticks), *RUNNING, _health(1)])
    writer.close()
    _same(sandbox, cache)
    line = json.dumps(_health(2)).encode() + b"\n"
    with open(_checkpoint(sandbox), "ab") as f:
        f.write(line[:40])  # as the writer's write is under way
    view = _same(sandbox, cache)
    assert view is not None and any("record 6" in w for w in view.warnings), view.warnings
    with open(_checkpoint(sandbox), "ab") as f:
        f.write(line[40:])
    view = _same(sandbox, cache)
    assert view is not None and view.current.health.attempts == 2 and not view.warnings
    assert cache.resumed == 1  # from the whole lines before the half one, not from it


def test_a_checkpoint_cut_and_written_again_is_replayed_whole(tmp_path):
    """A write the writer undid (a full disk: `ftruncate` back) and a later one past where it
    was read: the bytes read are no longer there, and the file is replayed whole."""
    me, sandbox, cache = own_identity(), tmp_path / "sb", ViewCache[Viewed]()
    writer = CheckpointWriter(sandbox)
    writer.append_many([header(me.pid, me.start_ticks), *RUNNING, _health(1), _health(2)])
    writer.close()
    _same(sandbox, cache)
    path = _checkpoint(sandbox)
    size = path.stat().st_size
    os.truncate(path, size - 100)  # into the last line, which the next write replaces
    writer = CheckpointWriter(sandbox)
    writer.append_many([_health(n) for n in range(3, 8)])
    writer.close()
    assert path.stat().st_size > size
    _same(sandbox, cache)
    assert cache.resumed == 0


RUN = """\
jobs = [Job(cluster='local', role='me', environment='test', name='once',
            task=SequentialTask(processes=[{processes}], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def _run(tmp_path, sandbox, processes: int) -> None:
    """A real `stoker run` of `processes` processes in `sandbox`, to its end."""
    config = tmp_path / f"job{processes}.aurora"
    config.write_text(textwrap.dedent(RUN.format(
        processes=", ".join(f"Process(name='p{n}', cmdline='echo {n}')" for n in range(processes)))))
    work = tmp_path / f"work{time.monotonic_ns()}"
    work.mkdir()
    run = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], work)
    try:
        assert run.wait(30) == 0, run.stdout() + run.stderr()
    finally:
        run.close()


def test_a_second_run_in_the_same_sandbox_is_read_whole_after_the_first_ended(tmp_path):
    """An ended task's checkpoint does grow again: a later run in its sandbox appends to it. Its
    fold was dropped once its supervisor was gone (`ViewCache.settle`), so that is read whole."""
    sandbox, cache = tmp_path / "sb", ViewCache[Viewed]()
    _run(tmp_path, sandbox, 1)
    first = _same(sandbox, cache)
    inode = _checkpoint(sandbox).stat().st_ino
    _run(tmp_path, sandbox, 2)
    assert _checkpoint(sandbox).stat().st_ino == inode  # appended to
    view = _same(sandbox, cache)
    assert first is not None and view is not None and view.task_id != first.task_id
    assert [len(a.processes) for a in view.attempts] == [1, 2] and (cache.read, cache.resumed) == (2, 0)


def test_a_replaced_checkpoint_is_read_afresh(tmp_path):
    """`.stoker` moved away and a new run in the sandbox: a new file, larger than the one
    read, read whole (going on from the old one's end would have read its lines from the
    middle of one, and shown the old run's attempt as an earlier one of the new)."""
    sandbox, cache = tmp_path / "sb", ViewCache[Viewed]()
    _run(tmp_path, sandbox, 1)
    first = _same(sandbox, cache)
    before = _checkpoint(sandbox).stat()
    (sandbox / ".stoker").rename(tmp_path / "stoker.before")
    _run(tmp_path, sandbox, 3)
    after = _checkpoint(sandbox).stat()
    assert (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) and after.st_size > before.st_size
    view = _same(sandbox, cache)
    assert first is not None and view is not None and view.task_id != first.task_id
    assert [len(a.processes) for a in view.attempts] == [3] and cache.resumed == 0
