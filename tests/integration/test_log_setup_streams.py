"""Stoker's own log handler (`executor/cli/logsetup.py`'s `QuietHandler`) on streams that
fail, in this process: one whose reader went away (quiet for good), a record that cannot be
formatted (Python's logging error), a full disk (each line lost counted once and said before
the next line once there is room, in text and JSON), and `stoker run`'s spool (written by its
thread, a closed pipe quieting the handler, the note on lost lines a JSON object). The
handler `configure` sets up, its hooks put back after: the integration conftest's
`configure`."""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import threading

import pytest

from executor.cli import logsetup
from executor.logs import log_event
from tests.support import limits
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

probe = logging.getLogger("executor.probe")


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_stream_whose_reader_went_away_is_quiet_for_good(configure, capsys):
    read, write = os.pipe()
    stream = os.fdopen(write, "w", buffering=1)
    try:
        handler = configure("text", stream=stream)
        os.close(read)
        log_event(probe, logging.WARNING, "into_a_closed_pipe")  # EPIPE: quiet from here on
        assert handler.gone
        log_event(probe, logging.WARNING, "not_tried")
        assert os.path.realpath(f"/proc/self/fd/{stream.fileno()}") == os.devnull  # its last flush quiet
        assert capsys.readouterr().err == ""  # no "Logging error" traceback
    finally:
        stream.close()


def test_a_record_that_cannot_be_formatted_is_python_s_logging_error(configure, capsys):
    buffer = io.StringIO()
    handler = configure("text", stream=buffer)
    probe.warning("%d", "not a number")
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "Message: '%d'" in err and not handler.gone


STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


def _events(text: str, log_format: str) -> list[tuple[str, str, dict]]:
    """(level, event, fields) of each line: a JSON object, or a text line (its `key=value`s
    as written, the `n` of a `during` line as a number)."""
    if log_format == "json":
        return [(doc.pop("level"), doc.pop("event", ""), doc) for doc in map(json.loads, text.splitlines())]
    found = []
    for line in text.splitlines():
        match = re.match(STAMP.pattern + r"(\w+) +(\S+): (\w+)(?: (.*))?$", line)
        assert match, f"not a whole line: {line!r}"
        fields = dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", match.group(4) or ""))
        found.append((match.group(1), match.group(3), {**fields, "logger": match.group(2)}))
    return found


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_lines_a_full_disk_lost_are_counted_and_said_before_the_next(configure, tmp_path, log_format):
    """Each line lost counted once (the rest of one the disk took part of is kept by the
    stream's buffer and lands later, uncounted), said in one WARNING on a line of its own
    before the first line once there is room."""
    with limits.tmpfs(tmp_path / "fs") as fs:
        with open(fs / "stoker.log", "w", buffering=1) as stream:  # line-buffered, as stderr is
            handler = configure(log_format, stream=stream)
            log_event(probe, logging.WARNING, "before")  # in the file's first page, whose rest takes some lines
            filler = limits.fill(fs)
            for n in range(200):  # past what the stream's buffer keeps
                log_event(probe, logging.WARNING, "during", n=n, pad="x" * 200)
            assert handler.dropped > 0 and not handler.gone
            lost = handler.dropped
            filler.unlink()
            log_event(probe, logging.WARNING, "after")
            assert handler.dropped == 0
        written = _events((fs / "stoker.log").read_text(), log_format)
    assert [event for _, event, _ in written][:1] == ["before"] and written[-1][1] == "after"
    notes = [(level, fields) for level, event, fields in written if event == "log_lines_dropped"]
    assert [(level, fields["logger"], int(fields["count"])) for level, fields in notes] == [
        ("WARNING", "executor.cli.logsetup", lost)]
    assert notes[0][1]["reason"].strip('"') == "lines lost: the disk was full"
    landed = {int(fields["n"]) for _, event, fields in written if event == "during"}
    assert lost == 200 - len(landed)  # each line missing counted, none twice


class _Recorded(io.StringIO):
    """A stream that notes the thread of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def write(self, text: str) -> int:
        self.threads.append(threading.current_thread().name)
        return super().write(text)


def test_configured_for_stoker_run_records_are_written_by_the_spool_s_thread(configure, monkeypatch):
    from executor.spool import Spool, spool

    monkeypatch.setattr("executor.spool._spool", Spool())  # the process's, this test's alone
    stream = _Recorded()
    configure("json", stream=stream, spooled=True)
    log_event(probe, logging.WARNING, "spooled", n=1)
    assert spool().drain(5)
    assert [line["event"] for line in lines(stream)] == ["spooled"] and stream.threads == ["stoker-spool"]


def test_through_the_spool_a_stream_whose_reader_went_away_goes_quiet(tmp_path):
    from executor.spool import Spool

    read, write = os.pipe()
    stream = os.fdopen(write, "w", buffering=1)
    handler = logsetup.QuietHandler(stream, spooled=Spool())
    handler.setFormatter(logsetup.TextFormatter())
    os.close(read)
    try:
        probe.addHandler(handler)
        log_event(probe, logging.WARNING, "into_a_closed_pipe")
        assert wait_for(lambda: handler.gone, 5, message="the handler quiet")
    finally:
        probe.removeHandler(handler)
        stream.close()


def test_through_the_spool_lines_a_full_disk_lost_are_said_as_a_json_object(tmp_path):
    """The spool's note on lost lines is the handler's record, in its format, on a line of
    its own with no empty line before it (a JSON log's lines are whole)."""
    from executor.spool import Spool

    spool = Spool()
    with limits.tmpfs(tmp_path / "fs") as fs:
        with open(fs / "stoker.log", "w") as stream:
            handler = logsetup.QuietHandler(stream, spooled=spool)
            handler.setFormatter(logsetup.JsonFormatter())
            probe.addHandler(handler)
            try:
                filler = limits.fill(fs)
                for n in range(200):
                    log_event(probe, logging.WARNING, "during", n=n, pad="x" * 200)
                assert spool.drain(5)
                filler.unlink()
                log_event(probe, logging.WARNING, "after")
                assert spool.drain(5)
            finally:
                probe.removeHandler(handler)
        written = [json.loads(line) for line in (fs / "stoker.log").read_text().split("\n")[:-1]]
    notes = [line for line in written if line.get("event") == "log_lines_dropped"]
    assert len(notes) == 1 and notes[0]["reason"].endswith("lines lost: the disk was full")
    assert written[-1]["event"] == "after" and not handler.gone


def test_the_spool_s_failures_quiet_the_handler_only_for_a_stream_s_error(tmp_path):
    handler = logsetup.QuietHandler(io.StringIO())
    handler.setFormatter(logsetup.JsonFormatter())
    assert handler._whole_lines() and not logsetup.QuietHandler(io.StringIO())._whole_lines()
    handler._failed(ValueError("not a stream's"))
    assert not handler.gone
    handler._failed(OSError(errno.EPIPE, "Broken pipe"))
    assert handler.gone
