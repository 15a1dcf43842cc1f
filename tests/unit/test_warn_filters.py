"""The warning filters a config's load changes (`config/warnfilters.py`), read in this
process with its thread count told: changed inside and put back only when this is the one
thread; every warning ignored; an `error` filter shown instead of raised, the others kept in
their order; the thread count from /proc, else from `_thread`'s."""
from __future__ import annotations

import _thread
import os
import threading
import warnings

import pytest

from config import warnfilters


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "beside another thread"])
def test_the_filters_are_changed_inside_and_put_back_only_when_alone(monkeypatch, alone):
    monkeypatch.setattr(warnfilters, "alone", lambda: alone)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before = list(warnings.filters)
        with warnfilters.filtered(warnfilters.ignored) as changed:
            assert changed is alone
            assert (warnings.filters[0][0] == "ignore") is alone and (warnings.filters == before) is not alone
            if alone:
                warnings.warn("ignored", UserWarning, stacklevel=1)  # (an error with the filters as they were)
        assert warnings.filters == before


def test_an_error_filter_is_shown_not_raised_and_the_others_kept_in_their_order():
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.filterwarnings("ignore", message="quiet")
        warnings.filterwarnings("error", category=DeprecationWarning)
        warnings.filterwarnings("always", category=UserWarning)
        warnfilters.shown_not_raised()
        assert [(rule[0], rule[2]) for rule in warnings.filters] == [
            ("always", UserWarning), ("default", DeprecationWarning), ("ignore", Warning)]
        warnings.warn("going away", DeprecationWarning, stacklevel=1)
        warnings.warn("quiet please", UserWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in seen] == [(DeprecationWarning, "going away"),
                                                          (UserWarning, "quiet please")]


@pytest.mark.parametrize(("active", "listed", "count", "alone"), [
    (2, ["1"], 0, False),  # threading's count first
    (1, ["1"], 1, True),  # then the kernel's
    (1, ["1", "2"], 0, False),  # a thread `threading` does not count
    (1, OSError, 0, True),  # no /proc: `_thread`'s count
    (1, OSError, 1, False),
])
def test_the_one_thread_is_told_by_threading_then_proc_then_thread_s_count(monkeypatch, active, listed, count,
                                                                             alone):
    def listing(path: str) -> list[str]:
        assert path == "/proc/self/task"
        if listed is OSError:
            raise OSError(2, "No such file or directory")
        return listed

    monkeypatch.setattr(threading, "active_count", lambda: active)
    monkeypatch.setattr(os, "listdir", listing)
    monkeypatch.setattr(_thread, "_count", lambda: count)
    assert warnfilters.alone() is alone
