"""A config loaded in process (tests, library use) changes the warning filters only when no
other thread would meet them (`config/warnfilters.py`): Python 3.11-3.13's filters are the
process's, and `catch_warnings` is not thread-safe. Real threads, waiting on events; the
config's code reaches the test through a gate in `sys.modules`, which its `import` finds."""
from __future__ import annotations

import _thread
import os
import subprocess
import sys
import threading
import types
import warnings

import pytest

from config.loader import load_jobs
from tests.support.configs import REPO, job_text, write_config
from tests.support.waiting import wait_for

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
    running, ended, others = threading.Event(), threading.Event(), _thread._count()

    def other() -> None:
        running.set()
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
            assert running.wait(30)  # (unlike threading's `start`, it returns before the thread runs)
            assert len(load_jobs(write_config(tmp_path, WAITS))) == 1
        finally:
            assert ended.wait(30)
    assert gate.seen == ["raised"]
    wait_for(lambda: _thread._count() == others, timeout_secs=30)  # gone, as the next test begins


def test_a_filter_another_thread_adds_during_a_load_is_kept(tmp_path, gate):
    """Was: `catch_warnings` put back the list it saved as the load ended, dropping it."""
    with warnings.catch_warnings():
        beside_a_load(tmp_path, gate, lambda: warnings.filterwarnings("ignore", message="added meanwhile"))
        assert any(rule[1] is not None and rule[1].pattern == "added meanwhile" for rule in warnings.filters)


# The config's load in a process of one thread, under an `error` filter: what was shown.
ALONE = """
import sys, warnings
from config.loader import load_jobs

with warnings.catch_warnings(record=True) as shown:
    warnings.simplefilter("error")
    before = list(warnings.filters)
    assert len(load_jobs(sys.argv[1])) == 1
    assert list(warnings.filters) == before
print([str(w.message) for w in shown])
"""


def python(tmp_path, script: str, config) -> subprocess.CompletedProcess:
    """`script` run by a Python of its own: one thread (a pytest-xdist worker has execnet's,
    which `_thread` made)."""
    return subprocess.run([sys.executable, "-c", script, str(config)], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path)


def test_alone_the_config_s_own_warning_is_shown_never_raised_and_the_filters_put_back(tmp_path):
    """The one thread (a planning child's case): the config's `warnings.warn` under an `error`
    filter is shown (recorded here), as Aurora's client shows it; the filters as they were after."""
    config = write_config(tmp_path, "import warnings\nwarnings.warn('going away')\n" + job_text())
    done = python(tmp_path, ALONE, config)
    assert (done.returncode, done.stdout) == (0, "['going away']\n"), done.stderr


# A process with a second thread forks; its child (one thread: the forking one) loads a config
# that warns, under an `error` filter: exit 0 when the warning was shown, 1 when it was raised.
FORKED_BESIDE_A_THREAD = """
import os, sys, threading, warnings
from config.loader import load_jobs
from config.errors import ConfigError

held = threading.Event()
other = threading.Thread(target=held.wait, args=(30,))
other.start()
pid = os.fork()
if pid == 0:
    warnings.simplefilter("error")
    try:
        load_jobs(sys.argv[1])
    except ConfigError:
        os._exit(1)
    os._exit(0)
held.set()
other.join()
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_child_forked_beside_another_thread_is_alone_and_shows_the_config_s_warning(tmp_path):
    """Only the forking thread lives on in a child (a planning child of a process with a
    thread). `_thread._count()` is not reset there (3.11: the parent's threads still
    counted): a child that asked it took itself for one beside another thread."""
    config = write_config(tmp_path, "import warnings\nwarnings.warn('going away')\n" + job_text())
    done = python(tmp_path, FORKED_BESIDE_A_THREAD, config)
    assert (done.returncode, "going away" in done.stderr) == (0, True), done.stderr


# A thread `_thread.start_new_thread` just made: the kernel's already, not yet `_thread._count()`'s.
JUST_STARTED = """
import _thread
from config import warnfilters

held = _thread.allocate_lock()
held.acquire()
_thread.start_new_thread(held.acquire, ())
print(warnfilters.alone(), flush=True)
held.release()
"""


def test_a_thread_just_started_by_start_new_thread_is_counted(tmp_path):
    """`start_new_thread` returns before its thread counts itself (3.11: as it first takes
    the GIL): was alone, and a load changed the filters that thread then met, a fork was made
    beside it."""
    done = python(tmp_path, JUST_STARTED, tmp_path)
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr
