"""The replayed views of the checkpoints a long-lived reader (`stoker observe`) has read.

Each request of the observer's task list replayed every task's checkpoint (up to its 64 KiB
compaction threshold, more for a task of many processes): about 4 ms a busy task, 0.9 s a
page with 200 of them, on each load. A view is kept with the stamp of the file it came from
(device, inode, size and modification time, taken on the descriptor the records were read
from: `checkpoint.iter_records`); the writer only appends, or renames a compacted file over
the old one, so a file with the same stamp replays to the same view, and a task that wrote
nothing since costs one `fstat`. Bounded (`MAX_VIEWS`: past it, the views are forgotten
and read again); thread-safe, for the observer's worker threads. Views are frozen values.
"""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

Where = tuple[str, str]  # the sandbox, and the `.stoker` a registry entry pins ("" none)
Stamp = tuple[int, int, int, int]
V = TypeVar("V")

MAX_VIEWS = 4096


class ViewCache(Generic[V]):
    def __init__(self, max_views: int = MAX_VIEWS) -> None:
        self._max = max_views
        self._lock = threading.Lock()
        self._views: dict[Where, tuple[Stamp, V]] = {}
        self.read = 0  # views replayed from their file (not found here)

    def get(self, where: Where, stamp: Stamp) -> V | None:
        """The view of the file `stamp` names, when it is the one kept for `where`."""
        with self._lock:
            kept = self._views.get(where)
        return kept[1] if kept is not None and kept[0] == stamp else None

    def put(self, where: Where, stamp: Stamp, value: V) -> None:
        """Keep `value`, read from the file `stamp` names, for `where` (instead of any
        earlier one)."""
        with self._lock:
            self.read += 1
            if where not in self._views and len(self._views) >= self._max:
                self._views.clear()
            self._views[where] = (stamp, value)
