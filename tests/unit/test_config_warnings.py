"""A config loaded in process (tests, library use) changes the warning filters only when no
other thread would meet them (`config/warnfilters.py`): Python 3.11-3.13's filters are the
process's, and `catch_warnings` is not thread-safe. Real threads, waiting on events; the
config's code reaches the test through a gate in `sys.modules`, which its `import` finds."""
from __future__ import annotations

import _thread
import sys
import threading
import types
import warnings

import pytest

from config.loader import load_jobs
from tests.support.configs import job_text, write_config

GATE = "stoker_test_warnings_gate"
# The config: says it is loading, then waits for the other thread's warning before it ends.
WAITS = f"""
import {GATE} as gate
gate.loading.set()
gate.done.wait(30)
""" + job_text()


class OtherThreads(UserWarning):
    """The other thread's warning."""


@pytest.fixture
def gate():
    made = types.SimpleNamespace(loading=threading.Event(), done=threading.Event(), seen=[])
    sys.modules[GATE] = made  # type: ignore[assignment]
    try:
        yield made
    finally:
        made.done.set()  # a config still waiting ends
        del sys.modules[GATE]


def beside_a_load(tmp_path, gate, act) -> None:
    """`act()` on another thread while a config loads on this one (the config waits for it)."""
    def other() -> None:
        try:
            if gate.loading.wait(30):
                act()
        finally:
            gate.done.set()

    thread = threading.Thread(target=other, name="beside-a-load")
    thread.start()
    try:
        assert len(load_jobs(write_config(tmp_path, WAITS))) == 1
    finally:
        thread.join(30)
    assert gate.loading.is_set() and not thread.is_alive()


def warned(gate) -> None:
    """The other thread's warning, and whether the filters it met raised it or showed it."""
    try:
        warnings.warn("the other thread's", OtherThreads, stacklevel=1)
        gate.seen.append("shown")
    except OtherThreads:
        gate.seen.append("raised")


def test_another_thread_warning_during_a_load_meets_the_process_filters(tmp_path, gate):
    """Was: the load's filters (an `error` made `default`) for every thread: its warning was
    shown, never raised."""
    with warnings.catch_warnings():  # (set before the thread starts: the test's own)
        warnings.simplefilter("error", OtherThreads)
        beside_a_load(tmp_path, gate, lambda: warned(gate))
    assert gate.seen == ["raised"]


def test_a_thread_not_made_by_threading_meets_the_process_filters_too(tmp_path, gate):
    """`_thread.start_new_thread`'s (a C extension's, an older library's) is not among
    `threading.active_count()`'s. Was: the load, counting one thread, changed the filters it met."""
    ended = threading.Event()

    def other() -> None:
        try:
            if gate.loading.wait(30):
                warned(gate)
        finally:
            gate.done.set()
            ended.set()

    with warnings.catch_warnings():
        warnings.simplefilter("error", OtherThreads)
        _thread.start_new_thread(other, ())
        try:
            assert len(load_jobs(write_config(tmp_path, WAITS))) == 1
        finally:
            assert ended.wait(30)
    assert gate.seen == ["raised"]


def test_a_filter_another_thread_adds_during_a_load_is_kept(tmp_path, gate):
    """Was: `catch_warnings` put back the list it saved as the load ended, dropping it."""
    with warnings.catch_warnings():
        beside_a_load(tmp_path, gate, lambda: warnings.filterwarnings("ignore", message="added meanwhile"))
        assert any(rule[1] is not None and rule[1].pattern == "added meanwhile" for rule in warnings.filters)


def test_alone_the_config_s_own_warning_is_shown_never_raised_and_the_filters_put_back(tmp_path):
    """The one thread (a planning child's case): the config's `warnings.warn` under an `error`
    filter is shown (recorded here), as Aurora's client shows it; the filters as they were after."""
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    config = write_config(tmp_path, "import warnings\nwarnings.warn('going away')\n" + job_text())
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("error")
        before = list(warnings.filters)
        assert len(load_jobs(config)) == 1
        assert list(warnings.filters) == before
    assert [str(w.message) for w in shown] == ["going away"]
