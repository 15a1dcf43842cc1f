"""The observer's kept views (`executor/task/viewcache.py`) against whole replays, over random
sequences of what may happen to a checkpoint file: records appended (whole, half written and
completed later, damaged, a new attempt's header), the file cut back (the writer's undo after
a full disk) and written again, rewritten in place with its first and last bytes as they were
(a compaction that wrote its records over the file, an editor, a restore), replaced by a
rename (the writer's compaction). After each step, the view read through the cache is the
one a whole replay of the same file gives (real files, the product's reader; no mock)."""
from __future__ import annotations

import json
import os
import random
import threading

import pytest

from executor.host.entrycache import stamp_of
from executor.host.identity import own_identity
from executor.task.checkpoint import open_checkpoint, records_at
from executor.task.inspection import Viewed, inspect_sandbox
from executor.task.replay import Fold
from executor.task.viewcache import Seen, ViewCache, resumable
from tests.support.statuscli import RUNNING, header

pytestmark = pytest.mark.timeout(120)
EDGE = 256  # what the cache compared at each end of what it had read, before it hashed all of it


def _line(rng: random.Random, n: int) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        doc = {"kind": "health", "outcome": rng.choice(["passed", "failed"]), "reason": f"r{n}",
               "attempts": n, "consecutive_failures": 0, "consecutive_successes": n, "state": "RUNNING",
               "latency_secs": 0.002, "wall": 1000.0 + n}
    elif kind == 1:
        doc = {"kind": "process", "process": rng.choice(["web", "side"]), "run": n, "from": "WAITING",
               "to": "RUNNING", "reason": f"starting run {n}", "pid": 4000 + n, "wall": 1000.0 + n}
    elif kind == 2:
        doc = {"kind": "task", "from": "RUNNING", "to": "RUNNING", "reason": f"still {n}", "wall": 1000.0 + n}
    else:
        return b'{"kind": "health", "outcome": 7}\n' if rng.random() < 0.5 else b"{torn\n"
    return json.dumps(doc).encode() + b"\n"


class _File:
    """The checkpoint of a sandbox, changed as a step says."""

    def __init__(self, sandbox, rng: random.Random) -> None:
        self.path, self.rng, self.n = sandbox / ".stoker" / "checkpoint.jsonl", rng, 0
        self.path.parent.mkdir(parents=True)
        self.path.write_bytes(self._header() + b"".join(json.dumps(r).encode() + b"\n" for r in RUNNING))

    def _header(self) -> bytes:
        self.n += 1
        return json.dumps(header(own_identity().pid, own_identity().start_ticks, marker=f"m{self.n}")).encode() + b"\n"

    def _lines(self, count: int) -> bytes:
        out = b""
        for _ in range(count):
            self.n += 1
            out += _line(self.rng, self.n)
        return out

    def append(self) -> None:
        data = self._header() if self.rng.random() < 0.1 else self._lines(self.rng.randrange(1, 6))
        if self.rng.random() < 0.2:  # half written now, the rest at the next step's start
            cut = self.rng.randrange(1, len(data))
            self._write_end(data[:cut])
            self.pending = data[cut:]
        else:
            self._write_end(data)

    def cut(self) -> None:
        """Cut back (anywhere), then written again past where it was."""
        size = self.path.stat().st_size
        os.truncate(self.path, self.rng.randrange(size // 2, size))
        self._write_end(b"\n" + self._lines(self.rng.randrange(2, 8)))

    def rewrite(self) -> None:
        """The middle rewritten in place (same inode), the first and last EDGE bytes as they
        were, and more appended: a file that only grew, to every check but its middle's."""
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        inner = [i for i, line in enumerate(lines)
                 if len(b"".join(lines[:i])) >= EDGE and len(b"".join(lines[i + 1:])) >= EDGE]
        if not inner:
            return self.append()
        self._over(lines, self.rng.choice(inner))
        self._write_end(self._lines(2))
        return None

    def rewrite_same_size(self) -> None:
        """Its last line written again, as long, another record."""
        self._over(self.path.read_bytes().splitlines(keepends=True), -1)

    def _over(self, lines: list[bytes], i: int) -> None:
        same_length = b'{"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "x"}'
        lines[i] = same_length[: len(lines[i]) - 1].ljust(len(lines[i]) - 1, b" ") + b"\n"
        with open(self.path, "r+b") as f:
            f.write(b"".join(lines))

    def rename(self) -> None:
        """Compaction: a new file (another inode) renamed over, its last records kept."""
        lines = self.path.read_bytes().splitlines(keepends=True)
        new = self.path.with_name("checkpoint.jsonl.compact")
        new.write_bytes(self._header() + b"".join(lines[-self.rng.randrange(1, 8):]))
        os.rename(new, self.path)

    def _write_end(self, data: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(getattr(self, "pending", b"") + data)
        self.pending = b""


def _same(sandbox, cache: ViewCache[Viewed], step: str) -> None:
    kept, whole = inspect_sandbox(sandbox, cache=cache), inspect_sandbox(sandbox)
    assert (kept.view, kept.problem) == (whole.view, whole.problem), f"after {step}"


@pytest.mark.parametrize("seed", range(12))
def test_a_view_through_the_cache_is_a_whole_replays_after_any_change(tmp_path, seed):
    rng, sandbox, cache = random.Random(seed), tmp_path / "sb", ViewCache[Viewed]()
    file = _File(sandbox, rng)
    steps = []
    for _ in range(12):
        step = rng.choices(["append", "cut", "rewrite", "rename"], weights=[14, 2, 2, 1])[0]
        getattr(file, step)()
        steps.append(step)
        _same(sandbox, cache, " ".join(steps))
    assert cache.resumed > 0  # the walk did go on from kept folds


def test_a_file_rewritten_while_it_was_read_leaves_no_fold_to_go_on_with(tmp_path):
    """The writer's undo after a full disk and its next write of the same length, between the
    reader's replay and its keeping of the fold: the fold holds what the file no longer does,
    and was kept (the checks then read the new bytes, and found them where they were)."""
    sandbox, cache = tmp_path / "sb", ViewCache[Viewed]()
    file = _File(sandbox, random.Random(1))
    file._write_end(file._lines(12))
    read_at = cache.clock()
    fd = open_checkpoint(sandbox)
    try:
        st = os.fstat(fd)
        stamp = stamp_of(st)
        seen = Seen(st.st_size)
        fold = Fold().feed(records_at(fd, sandbox, 0, st.st_size + 1, keep_unreadable=True, tee=seen.tee))
        file.rewrite_same_size()
        os.utime(file.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))  # the write's clock tick, later
        cache.put((str(sandbox), ""), stamp, (fold.view(), ""), resumable(fd, fold, stamp, st.st_size + 1, seen), read_at)
    finally:
        os.close(fd)
    file.append()
    _same(sandbox, cache, "a rewrite while it was read, then an append")


def _read_at_once(sandbox, cache: ViewCache[Viewed], barrier: threading.Barrier, seen: list) -> None:
    barrier.wait(10)
    seen.append(inspect_sandbox(sandbox, cache=cache).view)


def test_threads_that_read_a_grown_file_at_once_each_get_a_whole_replays_view(tmp_path):
    """The observer's worker threads: a kept fold has one owner (taken out of the cache to go
    on with); a thread that finds none replays whole. Fed twice, it would count records twice."""
    sandbox, cache = tmp_path / "sb", ViewCache[Viewed]()
    file = _File(sandbox, random.Random(7))
    _same(sandbox, cache, "the first read")
    for step in range(40):
        file._write_end(file._lines(3))
        whole = inspect_sandbox(sandbox)
        barrier, seen = threading.Barrier(3), []
        threads = [threading.Thread(target=_read_at_once, args=(sandbox, cache, barrier, seen)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen == [whole.view] * 3, f"step {step}"
    assert cache.resumed > 0
