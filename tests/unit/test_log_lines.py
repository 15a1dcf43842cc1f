"""Stoker's own log lines (executor/cli/logsetup.py, config/logline.py): every line is an
event with its fields, so that `--log-format json` gives them as keys; one JSON object per
line whatever the text holds (newlines, control characters, bytes that are not UTF-8, a
traceback); and what would reach stderr past the handler (an exception nobody caught, in
any thread; a Python warning) comes through it too."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import warnings
from pathlib import Path

import pytest

from config.logline import event_line, log_event, lost_for_now, to_devnull
from executor.cli import logsetup

ROOT = Path(__file__).resolve().parents[2]


DIRECT = re.compile(r"\b(?:logger|logging|log)\.(?:debug|info|warning|error|exception|critical|log)\(")


def direct_log_calls(text: str) -> list[int]:
    """The lines of `text` that call `logger.info(...)`, `logging.error(...)` and the like:
    lines with no event. (A text search: parsing every module took a second.)"""
    return [number for number, line in enumerate(text.splitlines(), 1) if DIRECT.search(line)]


def test_every_line_stoker_logs_is_an_event():
    """Through `log_event` only: a line logged with `logger.error("...")` would reach a JSON
    log as a `message` without its event or fields."""
    found = [f"{path.relative_to(ROOT)}:{number}" for package in ("executor", "healthcheck", "config")
             for path in sorted((ROOT / package).rglob("*.py")) if path.name != "logline.py"
             for number in direct_log_calls(path.read_text())]
    assert not found, found


def test_the_scan_finds_a_direct_call():
    assert direct_log_calls("import logging\nlogger = logging.getLogger()\n"
                            "    logger.error('x %s', 1)\nlog_event(logger, 1, 'e')\n") == [3]


@pytest.fixture
def logged():
    """`configure(json)` into a buffer; what it replaced (handlers, hooks) is put back."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook, sys.unraisablehook,
             logsetup._json)
    buffer = io.StringIO()
    logsetup.configure("json", "DEBUG", stream=buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _, sys.excepthook, threading.excepthook, sys.unraisablehook, logsetup._json = saved
        root.setLevel(saved[1])


def test_json_gives_the_event_and_each_field_as_keys(logged):
    log_event(logging.getLogger("executor.test"), logging.INFO, "status_update", task="web.0",
              task_id="task-1", state="TASK_RUNNING", healthy=True, uuid=None, run=3,
              path=Path("/sb"), reason='said "no"\nthen\x1b[31m\udcff')
    (line,) = logged()
    assert line.pop("ts") > 0
    assert line == {"level": "INFO", "logger": "executor.test", "event": "status_update",
                    "task": "web.0", "task_id": "task-1", "state": "TASK_RUNNING", "healthy": True,
                    "run": 3, "path": "/sb", "reason": 'said "no"\nthen\x1b[31m\udcff'}


@pytest.mark.parametrize("encoding, errors", [("ascii", "backslashreplace"), ("utf-8", "strict")])
def test_json_lines_parse_on_a_stream_of_any_encoding(encoding, errors):
    """stderr in ASCII (`LC_ALL=C`, `PYTHONUTF8=0`) wrote `rôle` as `r\\xf4le`: no JSON
    parser reads that line. A non-UTF-8 byte of a name (the sandbox b'/sb-\\xff') goes as
    its surrogate escape, never as a lone surrogate that a strict UTF-8 stream refuses."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook, sys.unraisablehook,
             logsetup._json)
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors=errors, write_through=True)
    logsetup.configure("json", "DEBUG", stream=stream)
    try:
        log_event(logging.getLogger("executor.test"), logging.INFO, "run_prepared", task="作业.0",
                  role="rôle", sandbox="/sb-\udcff")
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _, sys.excepthook, threading.excepthook, sys.unraisablehook, logsetup._json = saved
        root.setLevel(saved[1])
    line = json.loads(raw.getvalue().decode("utf-8"))
    assert (line["task"], line["role"], line["sandbox"]) == ("作业.0", "rôle", "/sb-\udcff")


def test_a_traceback_stays_in_its_one_object(logged):
    try:
        raise ValueError("first\nsecond")
    except ValueError as exc:
        log_event(logging.getLogger("executor.test"), logging.ERROR, "owner_failed",
                  error=f"ValueError: {exc}", exc_info=True)
    (line,) = logged()
    assert line["event"] == "owner_failed" and line["error"] == "ValueError: first\nsecond"
    assert line["traceback"].startswith("Traceback") and "ValueError: first" in line["traceback"]


def test_what_no_code_caught_comes_through_the_handler(logged):
    def fails():
        raise RuntimeError("a bug in a thread")

    thread = threading.Thread(target=fails, name="stoker-test")
    thread.start()
    thread.join()
    try:
        raise KeyError("main")
    except KeyError:
        sys.excepthook(*sys.exc_info())
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
    crashed, thread_crashed, warned = sorted(logged(), key=lambda line: line["level"])
    assert (thread_crashed["event"], thread_crashed["thread"]) == ("thread_crashed", "stoker-test")
    assert "RuntimeError: a bug in a thread" in thread_crashed["traceback"]
    assert (crashed["level"], crashed["event"], crashed["error"]) == ("CRITICAL", "crashed", "KeyError: 'main'")
    assert warned["logger"] == "py.warnings" and "a library's warning" in warned["message"]


def test_text_is_one_line_with_control_characters_escaped():
    record = logging.makeLogRecord({"name": "executor.test", "levelno": logging.INFO,
                                    "levelname": "INFO", "msg": "event reason=\"a\nb\x1b[2J\"",
                                    "created": 0.0, "msecs": 0.0})
    text = logsetup.TextFormatter().format(record)
    assert "\n" not in text and "\x1b" not in text
    assert text.endswith('INFO    executor.test: event reason="a\\nb\\x1b[2J"')


def test_a_traceback_in_text_has_its_control_characters_escaped_too():
    try:
        raise ValueError("body \x1b]0;pwned\x07\x1b[2J")  # say, a health endpoint's answer quoted
    except ValueError:
        record = logging.LogRecord("executor.test", logging.ERROR, __file__, 1, "bug", None, sys.exc_info())
    text = logsetup.TextFormatter().format(record)
    assert "\x1b" not in text and "\x07" not in text
    assert text.splitlines()[1] == "Traceback (most recent call last):"
    assert text.endswith("ValueError: body \\x1b]0;pwned\\x07\\x1b[2J")


def test_json_escapes_what_a_reader_would_split_a_line_at_or_a_terminal_obey():
    """NEL (U+0085), U+2028 and U+2029 end a line for `str.splitlines()` and other readers,
    and a C1 control (U+009B is a CSI to some terminals) is not for a terminal: json.dumps
    leaves them raw, so an object quoting a health check's body could be read as two."""
    record = logging.makeLogRecord({"name": "executor.test", "levelno": logging.WARNING,
                                    "levelname": "WARNING", "msg": "x", "stoker_event": "health_check",
                                    "stoker_fields": {"reason": "a\x85b\u2028c\u2029d\x9b31me\x7f"}})
    text = logsetup.JsonFormatter().format(record)
    assert len(text.splitlines()) == 1 and not any(c in text for c in "\x85\u2028\u2029\x9b\x7f")
    assert json.loads(text)["reason"] == "a\x85b\u2028c\u2029d\x9b31me\x7f"


@pytest.mark.parametrize("ascii_only", [False, True])
def test_json_escapes_the_format_characters_a_text_line_writes_out(ascii_only):
    """Was: a right-to-left override (U+202E) and the other bidi and format characters stayed
    raw in a JSON line, which a terminal or an editor shown it raw reorders (the text line
    writes them out, `loggable`); a tag past U+FFFF is JSON's surrogate pair."""
    said = "we\u202eb \u2066x\u2069 zero\u200bwidth\ufeff soft\xad tag\U000e0041 é作"
    record = logging.makeLogRecord({"name": "executor.test", "levelno": logging.INFO,
                                    "levelname": "INFO", "msg": "x", "stoker_event": "restart_requested",
                                    "stoker_fields": {"process": said}})
    text = logsetup.JsonFormatter(ascii_only).format(record)
    assert '"process": "we\\u202eb \\u2066x\\u2069 zero\\u200bwidth\\ufeff soft\\u00ad tag\\udb40\\udc41 ' in text
    assert ("\\u00e9\\u4f5c" if ascii_only else "é作") in text
    assert json.loads(text)["process"] == said


@pytest.mark.parametrize("value, shown", [
    ("web", "web"),  # plain ASCII: as it always was
    ("a b", '"a b"'),
    ('said "no" \\ back', '"said \\"no\\" \\\\ back"'),
    ("", '""'),
    ("é→作业", "é→作业"),
    ("é b", '"é b"'),
    ("we\u202eb", '"we\\u202eb"'),  # a right-to-left override: quoted, written out
    ("a\\u202e", "a\\u202e"),  # the same letters typed: plain, so the two differ on the line
    ("p\nforged=1 \u2066x", '"p\\nforged=1 \\u2066x"'),
    ("esc\x1b[2J\x9b", '"esc\\x1b[2J\\u009b"'),  # one way: as the text formatter writes a message's
    ('a\\b"\n', '"a\\\\b\\"\\n"'),  # a backslash and a quote escaped before the control is written out
])
def test_a_field_s_text_escapes_controls_and_format_characters_one_way(value, shown):
    assert event_line("restart_requested", {"process": value}) == f"restart_requested process={shown}"


def test_a_text_line_escapes_a_format_character_in_a_message_and_a_traceback():
    try:
        raise ValueError("name we\u202eb")
    except ValueError:
        record = logging.LogRecord("executor.test", logging.ERROR, __file__, 1, "said \u2067x", None,
                                   sys.exc_info())
    text = logsetup.TextFormatter().format(record)
    assert "\u202e" not in text and "\u2067" not in text
    assert "executor.test: said \\u2067x\n" in text and text.endswith("ValueError: name we\\u202eb")


def test_a_line_names_the_code_that_logged_it_not_log_event(caplog):
    """`log_event` logs with the line of its caller: the record's function and line are the
    code that said it (shown by `--log-format json` and a debugging handler)."""
    with caplog.at_level(logging.INFO, logger="executor.test"):
        here = sys._getframe().f_lineno + 1
        log_event(logging.getLogger("executor.test"), logging.INFO, "said")
    record, = caplog.records
    assert (record.funcName, record.lineno) == ("test_a_line_names_the_code_that_logged_it_not_log_event", here)


def test_a_regular_file_s_failed_write_is_lost_for_now_with_its_error_s_name(tmp_path):
    """A regular file's write error may pass (EIO, a number Python has no name for: its
    number); a pipe's is for good, and so is what is no OSError or has no number."""
    with (tmp_path / "log").open("wb") as regular:
        assert lost_for_now(regular, OSError(5, "I/O error")) == "the file could not be written (EIO)"
        assert lost_for_now(regular, OSError(4095, "?")) == "the file could not be written (4095)"
        assert lost_for_now(regular, OSError(28, "full")) == "the disk was full"
        assert lost_for_now(regular, OSError("no number")) is None
        assert lost_for_now(regular, ValueError("I/O operation on closed file")) is None
    read, write = os.pipe()
    with open(write, "wb") as pipe:
        assert lost_for_now(pipe, OSError(5, "I/O error")) is None
    os.close(read)


def test_a_closed_stream_or_no_descriptor_left_is_not_pointed_at_devnull_and_raises_nothing(tmp_path):
    """`to_devnull` of a closed stream (its `fileno` a ValueError), or with no descriptor free
    to open /dev/null with (EMFILE, an OSError): nothing done, nothing raised."""
    closed = (tmp_path / "closed").open("wb")
    closed.close()
    to_devnull(closed)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with (tmp_path / "log").open("wb") as stream:
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # the next open: EMFILE
        try:
            to_devnull(stream)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        stream.write(b"still the file's\n")
    assert (tmp_path / "log").read_bytes() == b"still the file's\n"
