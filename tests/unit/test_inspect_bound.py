"""`stoker inspect`'s load of a config, bounded in its child (`executor/cli/apart.py`
`load_bounded`): past LOAD_TIMEOUT_SECS (shortened here) a config error naming the file; in
the parent (`--task-info`, or no child to be had) no bound at all. In this process, on a real
SIGALRM; the handler is put back after each test."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from config.errors import ConfigError
from executor.cli import apart

pytestmark = pytest.mark.timeout(30, method="thread")  # (the signal method's timer is SIGALRM's too)


@pytest.fixture(autouse=True)
def _alarm_put_back():
    before = signal.getsignal(signal.SIGALRM)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, before)


def test_outside_the_child_a_load_is_not_bounded(monkeypatch):
    monkeypatch.setattr(apart, "_in_child", False)
    assert apart.load_bounded("'job.aurora'", lambda: signal.getitimer(signal.ITIMER_REAL)) == (0.0, 0.0)


def test_in_the_child_a_load_is_bounded_and_the_bound_cleared_after(monkeypatch):
    monkeypatch.setattr(apart, "_in_child", True)
    assert apart.LOAD_TIMEOUT_SECS == 60.0  # as `stoker run`'s planning child
    left, _ = apart.load_bounded("'job.aurora'", lambda: signal.getitimer(signal.ITIMER_REAL))
    assert 59.0 < left <= 60.0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_load_past_its_bound_is_a_config_error_naming_the_file(monkeypatch):
    """A FIFO nobody writes to: the loader has no line to name, so the bound's own words."""
    monkeypatch.setattr(apart, "_in_child", True)
    monkeypatch.setattr(apart, "LOAD_TIMEOUT_SECS", 0.2)
    with pytest.raises(ConfigError) as stopped:
        apart.load_bounded("'fifo.aurora'", lambda: threading.Event().wait(10.0))
    assert str(stopped.value) == ("'fifo.aurora': the job was still not loaded after 0.2 s (a config file that "
                                  "never ends, such as a FIFO nobody writes to?), so loading was stopped")
    assert stopped.value.__cause__ is None and stopped.value.__suppress_context__
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_inspect_of_a_fifo_nobody_writes_to_is_stopped_naming_it(monkeypatch, tmp_path, capsys):
    """`stoker inspect FIFO` as its child runs it (`_in_child`): one error line naming the file."""
    from executor.cli.main import main

    monkeypatch.setattr(apart, "_in_child", True)
    monkeypatch.setattr(apart, "LOAD_TIMEOUT_SECS", 0.2)
    fifo = tmp_path / "fifo.aurora"
    os.mkfifo(fifo)
    assert main(["inspect", str(fifo)]) == 2
    assert capsys.readouterr().err == (f"stoker: error: {str(fifo)!r}: the job was still not loaded after 0.2 s (a "
                                       "config file that never ends, such as a FIFO nobody writes to?), so loading "
                                       "was stopped\n")
