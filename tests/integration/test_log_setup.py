"""Stoker's own log as `executor/cli/logsetup.py` sets it up, in this process: what `configure`
puts in place (one handler, its format and level, the hooks, a second configure keeping the
first one's hooks to hand on to), a journal's priorities, a stream that cannot take UTF-8,
`say`'s lines, the hooks' records (a crash, a thread's, an exception Python could not raise,
a hook that fails), the formatters' edges. The handler on streams that fail is
`test_log_setup_streams.py`'s; both use the integration conftest's `configure`."""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

import executor
from executor.cli import logsetup
from executor.logs import log_event

pytestmark = pytest.mark.timeout(30)

probe = logging.getLogger("executor.probe")


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_configure_puts_one_handler_its_level_and_the_hooks_in_place(configure):
    stray = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(stray)
    buffer = io.StringIO()
    handler = configure("text", "warning", stream=buffer)
    assert handler.stream is buffer and isinstance(handler.formatter, logsetup.TextFormatter)
    assert logging.getLogger().level == logging.WARNING
    assert (sys.excepthook, threading.excepthook, sys.unraisablehook) == (
        logsetup._crashed, logsetup._thread_crashed, logsetup._ignored)
    log_event(probe, logging.INFO, "below_the_level")
    log_event(probe, logging.WARNING, "at_the_level", n=1)
    [line] = buffer.getvalue().splitlines()
    assert line.endswith(" WARNING executor.probe: at_the_level n=1")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library's", UserWarning, stacklevel=1)
    assert "py.warnings" in buffer.getvalue()  # Python's warnings are records too


def test_a_level_may_be_a_number_and_events_may_be_dropped(configure):
    buffer = io.StringIO()
    configure("json", logging.DEBUG, stream=buffer, drop_events=("shown_elsewhere",))
    log_event(probe, logging.DEBUG, "shown_elsewhere")
    log_event(probe, logging.DEBUG, "kept", n=2)
    assert [(line["level"], line["event"], line["n"]) for line in lines(buffer)] == [("DEBUG", "kept", 2)]
    assert logsetup._json


def test_a_second_configure_keeps_the_hooks_the_first_replaced(configure):
    def before(*args: object) -> None:
        raise AssertionError("not called here")
    sys.excepthook = before
    sys.unraisablehook = before
    configure("text", stream=io.StringIO())
    configure("text", stream=io.StringIO())
    assert logsetup._before is before and logsetup._unraisable_before is before
    assert not logsetup._json


@pytest.mark.parametrize(("encoding", "utf8"), [("utf-8", True), ("UTF_8", True), ("utf8", True),
                                                ("latin-1", False), ("ascii", False)])
def test_json_on_a_stream_that_cannot_take_utf_8_escapes_what_is_past_ascii(configure, encoding, utf8):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors="backslashreplace", write_through=True)
    configure("json", stream=stream)
    log_event(probe, logging.INFO, "named", role="rôle")
    text = raw.getvalue().decode("utf-8")
    assert ('"rôle"' in text) is utf8 and ('"r\\u00f4le"' in text) is not utf8
    assert json.loads(text)["role"] == "rôle"


def test_a_stream_with_no_encoding_is_taken_as_utf_8():
    assert logsetup._utf8(SimpleNamespace(encoding=None)) and logsetup._utf8(object())


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_lines_to_systemd_s_journal_begin_with_their_priority_and_no_time(configure, tmp_path, monkeypatch,
                                                                          log_format):
    with open(tmp_path / "journal", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        configure(log_format, "DEBUG", stream=stream)
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            log_event(probe, level, "at", named=logging.getLevelName(level))
    written = (tmp_path / "journal").read_text().splitlines()
    assert [line[:3] for line in written] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    if log_format == "text":
        assert written[2] == "<4>WARNING executor.probe: at named=WARNING"
    else:
        assert json.loads(written[2][3:])["level"] == "WARNING"


def test_a_level_of_its_own_has_the_priority_of_the_nearest_below_or_above_warning():
    assert logsetup.journal_lines("a\nb", 25) == "<6>a\n<6>b"
    assert logsetup.journal_lines("a", 45) == "<3>a"


def test_say_writes_one_plain_line_or_with_json_configured_an_event(configure, capsys):
    logsetup.say("error", "no such file:\x1b[31m x")
    logsetup.say("warning", "running as root")
    assert capsys.readouterr().err == "stoker: error: no such file:\\x1b[31m x\nstoker: warning: running as root\n"
    buffer = io.StringIO()
    configure("json", stream=buffer)
    logsetup.say("error", "bad config")
    logsetup.say("warning", "odd config")
    assert [(line["level"], line["event"], line["reason"]) for line in lines(buffer)] == [
        ("ERROR", "stoker_error", "bad config"), ("WARNING", "stoker_warning", "odd config")]
    assert capsys.readouterr().err == ""


def test_say_to_systemd_s_journal_gives_its_priority(capfd, monkeypatch):
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    logsetup.say("error", "e")
    logsetup.say("warning", "w")
    assert capfd.readouterr().err == "<3>stoker: error: e\n<4>stoker: warning: w\n"


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_a_crash_is_one_critical_record_with_its_traceback(configure):
    buffer = io.StringIO()
    configure("json", stream=buffer)
    exc = _raised(KeyError("main"))
    sys.excepthook(type(exc), exc, exc.__traceback__)
    [line] = lines(buffer)
    assert (line["level"], line["event"], line["error"]) == ("CRITICAL", "crashed", "KeyError: 'main'")
    assert line["traceback"].startswith("Traceback") and "in _raised" in line["traceback"]
    assert "\n    raise exc\n" in line["traceback"]  # with its source lines, when they can be had


def test_a_ctrl_c_with_stoker_s_own_hook_before_leaves_as_a_ctrl_c_does(configure, monkeypatch):
    """`stoker`'s hook (QUIET): the process ends as `leave_interrupted` ends it (exit 130,
    what is spooled written), not through the hook; here that end is recorded instead."""
    from executor.cli import start

    left: list[BaseException] = []
    monkeypatch.setattr(start, "leave_interrupted", left.append)

    def quiet(*args: object) -> None:
        raise AssertionError("not called for a Ctrl-C")
    setattr(quiet, executor.QUIET, True)
    sys.excepthook = quiet
    configure("json", stream=io.StringIO())
    exc = _raised(KeyboardInterrupt())
    sys.excepthook(KeyboardInterrupt, exc, exc.__traceback__)
    assert left == [exc]


def test_a_ctrl_c_not_stoker_s_own_goes_to_the_hook_before(configure):
    heard: list[tuple] = []
    sys.excepthook = lambda *args: heard.append(args)
    buffer = io.StringIO()
    configure("json", stream=buffer)
    exc = _raised(KeyboardInterrupt())
    sys.excepthook(KeyboardInterrupt, exc, exc.__traceback__)
    assert heard == [(KeyboardInterrupt, exc, exc.__traceback__)] and buffer.getvalue() == ""
    assert not getattr(logsetup._before, executor.QUIET, False)


def test_a_thread_s_crash_is_an_error_record_and_its_system_exit_none(configure):
    buffer = io.StringIO()
    configure("json", stream=buffer)
    exc = _raised(ValueError("in a thread"))
    threading.excepthook(threading.ExceptHookArgs((ValueError, exc, exc.__traceback__, None)))
    ended = _raised(SystemExit(3))
    threading.excepthook(threading.ExceptHookArgs((SystemExit, ended, ended.__traceback__, None)))
    threading.excepthook(threading.ExceptHookArgs((ValueError, None, None, None)))
    [line] = lines(buffer)
    assert (line["level"], line["event"], line["error"]) == ("ERROR", "thread_crashed", "ValueError: in a thread")
    assert "thread" not in line and "ValueError: in a thread" in line["traceback"]
    assert "in _raised" in line["traceback"]  # from where it was raised


def _unraisable(exc: BaseException | None, err_msg: str | None = "Exception ignored in", obj: object = None):
    return SimpleNamespace(exc_type=type(exc) if exc else None, exc_value=exc,
                           exc_traceback=exc.__traceback__ if exc else None, err_msg=err_msg, object=obj)


def test_an_exception_python_could_not_raise_is_a_warning_handed_on_to_the_hook_before(configure):
    handed: list[object] = []
    sys.unraisablehook = handed.append
    buffer = io.StringIO()
    configure("json", stream=buffer)
    one = _unraisable(_raised(OSError(errno.EBADF, "Bad file descriptor")), obj="x" * 300)
    sys.unraisablehook(one)
    none = _unraisable(None, err_msg=None, obj=None)
    sys.unraisablehook(none)
    first, second = lines(buffer)
    assert (first["level"], first["event"], first["where"], first["object"]) == (
        "WARNING", "exception_ignored", "Exception ignored in", repr("x" * 300)[:200])
    assert first["error"] == "OSError: [Errno 9] Bad file descriptor" and "Traceback" in first["traceback"]
    assert (second["object"], "error" in second, "where" in second, "traceback" in second) == (
        "None", False, False, False)
    assert handed == [one, none]


def test_with_python_s_own_hook_before_an_ignored_exception_is_not_said_twice(configure, capsys):
    sys.unraisablehook = sys.__unraisablehook__
    buffer = io.StringIO()
    configure("json", stream=buffer)
    sys.unraisablehook(_unraisable(_raised(ValueError("once"))))
    assert [line["event"] for line in lines(buffer)] == ["exception_ignored"]
    assert capsys.readouterr().err == ""


class _Reporter:
    """An error reporter's hook, with a long name."""

    def __repr__(self) -> str:
        return "<reporter " + "r" * 300 + ">"

    def __call__(self, unraisable: object) -> None:
        raise RuntimeError("the reporter is down")


def test_a_hook_before_that_fails_is_one_warning(configure):
    broken = _Reporter()
    sys.unraisablehook = broken
    buffer = io.StringIO()
    configure("json", stream=buffer)
    sys.unraisablehook(_unraisable(_raised(ValueError("x"))))
    ignored, failed = lines(buffer)
    assert (failed["level"], failed["event"], failed["error"]) == (
        "WARNING", "unraisable_hook_failed", "RuntimeError: the reporter is down")
    assert failed["hook"] == repr(broken)[:200] and ignored["event"] == "exception_ignored"


def test_the_hook_before_stoker_s_loading_hook_is_the_one_handed_on_to(configure):
    """`stoker`'s entry point put its own hook first (`start._dropped_or_not`): what is handed
    on goes to the hook that one replaced, not back to it."""
    from executor.cli import start

    first: list[object] = []
    saved = start._unraisable
    start._unraisable = first.append
    sys.unraisablehook = start._dropped_or_not
    try:
        configure("json", stream=io.StringIO())
        assert logsetup._unraisable_before is start._unraisable
    finally:
        start._unraisable = saved


def test_a_stop_signal_dropped_in_a_finalizer_is_deferred_not_a_warning(configure, monkeypatch):
    import signal

    from executor.cli import start

    monkeypatch.setattr(executor, "DROPPED_STOPS", [])
    buffer = io.StringIO()
    configure("json", stream=buffer)
    sys.unraisablehook(_unraisable(start.Stopped(143, signal.SIGTERM)))
    [line] = lines(buffer)
    assert (line["level"], line["event"], line["signal"]) == ("INFO", "stop_deferred", "SIGTERM")
    assert line["reason"] == ("it came as a finalizer ran, which cannot raise it: acted on once the command "
                              "has started (its signal relay, the observer's loop)")
    assert executor.DROPPED_STOPS == [signal.SIGTERM]


def test_a_stop_signal_raised_by_the_hook_before_is_deferred_too(configure, monkeypatch):
    import signal

    from executor.cli import start

    monkeypatch.setattr(executor, "DROPPED_STOPS", [])

    def stopped(unraisable: object) -> None:
        raise start.Stopped(129, signal.SIGHUP)
    sys.unraisablehook = stopped
    buffer = io.StringIO()
    configure("json", stream=buffer)
    sys.unraisablehook(_unraisable(_raised(ValueError("x"))))
    assert [line["event"] for line in lines(buffer)] == ["exception_ignored", "stop_deferred"]
    assert executor.DROPPED_STOPS == [signal.SIGHUP]


def test_a_traceback_that_cannot_be_formatted_is_written_without_its_source_lines(monkeypatch):
    exc = _raised(ValueError("no source"))

    def fails(self, ei):  # type: ignore[no-untyped-def]  # as Python 3.13's `ast` import out of descriptors
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(logging.Formatter, "formatException", fails)
    record = logging.makeLogRecord({"name": "x", "levelno": 40, "levelname": "ERROR", "msg": "m",
                                    "exc_info": (ValueError, exc, exc.__traceback__)})
    text = logsetup.TextFormatter().format(record)
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    assert text.split("\n")[1:] == ["Traceback (most recent call last):",
                                    f'  File "{frame.filename}", line {frame.lineno}, in _raised',
                                    "ValueError: no source"]


@pytest.mark.parametrize("message", ["spaces kept  ", "ends in X"])
def test_a_bare_traceback_keeps_the_message_as_it_is(message):
    exc = _raised(ValueError(message))
    assert logsetup.bare_traceback((ValueError, exc, exc.__traceback__)).split("\n")[-1] == f"ValueError: {message}"


def test_a_text_line_s_time_is_the_record_s_in_local_time():
    record = logging.makeLogRecord({"name": "x", "levelno": 20, "levelname": "INFO", "msg": "m",
                                    "created": 1000000000.25, "msecs": 250.0})
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1000000000.25))
    assert logsetup.TextFormatter().format(record) == f"{stamp}.250 INFO    x: m"


def test_a_json_time_is_to_the_microsecond_and_the_text_as_it_is_by_default():
    record = logging.makeLogRecord({"name": "x", "levelno": 20, "levelname": "INFO", "msg": "",
                                    "stoker_event": "e", "created": 1.12345678})
    text = logsetup.JsonFormatter().format(record)
    assert json.loads(text) == {"ts": 1.123457, "level": "INFO", "logger": "x", "event": "e"}  # no fields
    record.stoker_fields = {"role": "rôle"}
    assert '"role": "rôle"' in logsetup.JsonFormatter().format(record)


def test_the_note_on_lost_lines_is_a_warning_of_its_own_event():
    record = logsetup._dropped_record("lines lost: the disk was full", 3)
    assert (record.levelno, record.levelname, record.name, record.stoker_event) == (
        logging.WARNING, "WARNING", "executor.cli.logsetup", "log_lines_dropped")
    assert record.getMessage() == 'log_lines_dropped count=3 reason="lines lost: the disk was full"'


def test_a_record_with_no_event_is_its_message_and_none_fields_are_left_out():
    record = logging.makeLogRecord({"name": "lib", "levelno": 20, "levelname": "INFO", "msg": "hi %s",
                                    "args": ("there",), "created": 1.25})
    assert json.loads(logsetup.JsonFormatter().format(record)) == {
        "ts": 1.25, "level": "INFO", "logger": "lib", "message": "hi there"}
    record = logging.makeLogRecord({"name": "x", "levelno": 20, "levelname": "INFO", "msg": "",
                                    "stoker_event": "e", "stoker_fields": {"gone": None, "n": 1.5, "ok": False,
                                                                           "path": Path("/p")}})
    doc = json.loads(logsetup.JsonFormatter().format(record))
    assert (doc["event"], doc["n"], doc["ok"], doc["path"], "gone" in doc) == ("e", 1.5, False, "/p", False)


def test_a_character_past_u_ffff_to_escape_is_written_as_its_surrogate_pair():
    record = logging.makeLogRecord({"name": "x", "levelno": 20, "levelname": "INFO", "msg": "",
                                    "stoker_event": "e", "stoker_fields": {"tag": "a\U000e0041b"}})
    text = logsetup.JsonFormatter().format(record)
    assert '"a\\udb40\\udc41b"' in text and json.loads(text)["tag"] == "a\U000e0041b"
