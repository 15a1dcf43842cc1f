"""How `stoker` ends once its command returned or raised (`executor.cli.main.run`): the status
each outcome gives, what is saved and flushed first, and when the ordinary exit is taken
instead of `os._exit`. In process, with `main` and the exits replaced: each test records the
steps `run` took, in order."""
from __future__ import annotations

import threading

import pytest

import executor
from executor.cli import main as cli_main
from executor.cli.start import Stopped


class Ended(BaseException):
    """The stand-in `os._exit` or `executor.leave` raises, so `run` stops where the real ones would."""


@pytest.fixture
def steps(monkeypatch):
    """The steps `run` takes after its command, in order: ("save",), ("drain",), ("shutdown",),
    ("flush",), ("exit", status) or ("leave", status). `steps.drained` is what the drain returns."""
    class Steps(list):
        drained: object = True

    record = Steps()

    def drain() -> object:
        record.append(("drain",))
        if isinstance(record.drained, BaseException):
            raise record.drained
        return record.drained

    def ended(kind: str):
        def end(status: int) -> None:
            record.append((kind, status))
            raise Ended(status)
        return end

    monkeypatch.setattr(cli_main, "drain_spool", drain)
    monkeypatch.setattr(cli_main.codecache, "save", lambda: record.append(("save",)))
    monkeypatch.setattr(cli_main.logging, "shutdown", lambda: record.append(("shutdown",)))
    monkeypatch.setattr(executor, "flush_standard_streams", lambda: record.append(("flush",)))
    monkeypatch.setattr(cli_main.os, "_exit", ended("exit"))
    monkeypatch.setattr(executor, "leave", ended("leave"))
    return record


def finished(monkeypatch, outcome) -> None:
    """`run()` with a `main` that returns `outcome`, or raises it when it is an exception."""
    def main() -> object:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(cli_main, "main", main)
    with pytest.raises(Ended):
        cli_main.run()


@pytest.mark.parametrize(("outcome", "status"), [
    (0, 0), (3, 3), (None, 0),
    (SystemExit(0), 0), (SystemExit(2), 2), (SystemExit(None), 0),
    (KeyboardInterrupt(), 130), (Stopped(143, 15), 143)])
def test_each_outcome_is_its_status_after_the_save_the_drain_and_the_flushes(monkeypatch, steps, outcome, status):
    finished(monkeypatch, outcome)
    assert steps == [("save",), ("drain",), ("shutdown",), ("flush",), ("exit", status)]


def test_an_exit_with_words_prints_them_on_stderr_and_ends_1(monkeypatch, steps, capsys):
    """argparse's own `parser.exit(message=...)`, or any `sys.exit("...")`: its words are the
    error, as the interpreter itself would print them."""
    finished(monkeypatch, SystemExit("stoker: the words"))
    assert steps[-1] == ("exit", 1)
    assert capsys.readouterr().err == "stoker: the words\n"


def test_a_bug_drains_the_spool_and_raises_as_itself_with_no_save_or_exit(monkeypatch, steps):
    """What `stoker run` printed last comes out before the traceback; nothing else of the end."""
    def main() -> int:
        raise LookupError("a bug")

    monkeypatch.setattr(cli_main, "main", main)
    with pytest.raises(LookupError, match="^a bug$"):
        cli_main.run()
    assert steps == [("drain",)]


def test_a_terminal_that_stopped_reading_ends_at_once_without_the_flushes(monkeypatch, steps):
    """Its writer holds the streams' locks: the logging shutdown and the flush would wait."""
    steps.drained = False
    finished(monkeypatch, 4)
    assert steps == [("save",), ("drain",), ("exit", 4)]


@pytest.mark.parametrize(("interrupt", "status"), [(KeyboardInterrupt(), 130), (Stopped(129, 1), 129)])
def test_a_stop_as_the_last_lines_wait_ends_with_its_status_whatever_the_command_said(monkeypatch, steps,
                                                                                       interrupt, status):
    """A Ctrl-C (130), or a stop signal the entry point turned into a `Stopped` (its own status)."""
    steps.drained = interrupt
    finished(monkeypatch, 0)
    assert steps == [("save",), ("drain",), ("exit", status)]


def test_a_live_thread_that_is_no_daemon_gets_the_ordinary_exit_a_daemon_does_not(monkeypatch, steps):
    worker_done, helper_done = threading.Event(), threading.Event()
    worker = threading.Thread(target=worker_done.wait, args=(10,), daemon=False)
    helper = threading.Thread(target=helper_done.wait, args=(10,), daemon=True)
    worker.start()
    helper.start()
    try:
        finished(monkeypatch, 5)
        assert steps == [("save",), ("drain",), ("shutdown",), ("flush",), ("leave", 5)]
        worker_done.set()
        worker.join(timeout=10)
        assert not worker.is_alive() and helper.is_alive()
        steps.clear()
        finished(monkeypatch, 6)
        assert steps == [("save",), ("drain",), ("shutdown",), ("flush",), ("exit", 6)]
    finally:
        worker_done.set()
        helper_done.set()
        worker.join(timeout=10)
        helper.join(timeout=10)
