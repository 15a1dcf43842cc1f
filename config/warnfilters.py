"""The warning filters a config's load changes, and only where no other thread meets them.

Owns `filtered(change)`: Python's warning filters (3.11-3.13) are the process's, and
`warnings.catch_warnings` is not thread-safe: it changes `warnings.filters` for every
thread, and puts the list it saved back whole at its end. Changed while another thread
runs, that thread's warnings meet the config's filters (an `error` it relies on shown
instead), and a filter it adds meanwhile is dropped. Those Pythons offer nothing
narrower (a filter per call or per thread: 3.14's context-aware warnings), so the change is
made only when this is the process's one thread: a planning child (forked: `stoker run`,
`stoker inspect`), or a library caller's single thread; else the process's own filters
stand (its caller's choice), as `executor.local.planning.plan_apart` forks only then.
No I/O but /proc/self/task's listing.
"""
from __future__ import annotations

import _thread
import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, cast


@contextlib.contextmanager
def filtered(change: Callable[[], None]) -> Iterator[bool]:
    """Inside, the filters as `change()` sets them (saved and put back by `catch_warnings`)
    when this is the process's only thread; else untouched. Yields whether it changed them."""
    if not alone():
        yield False
        return
    with warnings.catch_warnings():
        change()
        yield True


def alone() -> bool:
    """Whether this is the process's one thread: the kernel's count (/proc/self/task), which
    has those `_thread.start_new_thread` made (a C extension's, an older library's) that
    `threading.active_count()` does not count and that meet the process's filters as well,
    from the moment it returns: `_thread._count()` counts one only as it first takes the GIL
    (a load then changed the filters it met). Without /proc: `threading`'s count and
    `_thread`'s, which a forked child (3.11) does not reset (the parent's threads stay
    counted there, where only the forking thread lives on: not alone)."""
    if threading.active_count() > 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return _thread._count() == 0


def ignored() -> None:
    """Every warning ignored: a config's code as it is compiled, whatever -W says (`error`
    made an invalid escape, '\\d', a syntax error)."""
    warnings.simplefilter("ignore")


def shown_not_raised() -> None:
    """The filters as given (-W), an `error` one as `default`: the config's own
    `warnings.warn` is shown, as Aurora's client shows it, never raised (was: every warning
    ignored, the config's own too)."""
    given = [("default", *rule[1:]) if rule[0] == "error" else rule for rule in warnings.filters]
    warnings.resetwarnings()  # a public way to tell the registries the filters changed
    cast("list[Any]", warnings.filters).extend(given)  # typeshed: a Sequence
