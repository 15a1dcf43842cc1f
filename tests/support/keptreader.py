"""A `Reader` that keeps what it read at once: the registry's entries and the checkpoints' views
of files changed a moment ago too (`racy_ns=0, fine_ns=0`), as an observer keeps them once their
files' last change is their window (50 ms, or 2 s for whole seconds: `entrycache.racy`) older than its reading (`executor/host/entrycache.py`,
`executor/task/viewcache.py`). For tests that count what is read again; a test of that window
sets its own."""
from __future__ import annotations

from config.registry import RegistrySettings
from executor.host.entrycache import EntryCache
from executor.observe.reader import Reader
from executor.task.viewcache import ViewCache


def kept_reader(settings: RegistrySettings) -> Reader:
    reader = Reader(settings)
    reader.entries, reader.views = EntryCache(racy_ns=0, fine_ns=0), ViewCache(racy_ns=0, fine_ns=0)
    return reader
