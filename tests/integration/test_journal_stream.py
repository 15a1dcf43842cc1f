"""Under systemd a unit's stdout and stderr are streams to the journal, named by
`$JOURNAL_STREAM` (`DEVICE:INODE`): there the journal stamps each line, and reads a `<N>`
prefix as its priority. Real files stand in for the streams; `JOURNAL_STREAM` names their
device and inode, as systemd names its socket's."""
from __future__ import annotations

import io
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from config.logline import log_event
from executor.cli import logsetup
from executor.events import TaskStage, TaskTransition
from executor.local.console import ConsoleReporter, Output

STAMP = re.compile(r"\d\d:\d\d:\d\d\.\d{3}")


def journal_named(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    st = os.stat(path)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_to_the_journal_carry_their_priority_and_no_time(tmp_path, monkeypatch, kept_logging, log_format):
    logger = logging.getLogger("executor.test")
    for name, journal in (("journal", True), ("file", False)):
        path = tmp_path / name
        with open(path, "w") as stream:
            if journal:
                journal_named(monkeypatch, path)
            logsetup.configure(log_format, "INFO", stream=stream)
            log_event(logger, logging.WARNING, "something_odd", reason="a\nb")
            log_event(logger, logging.INFO, "fine")
            try:
                raise ValueError("boom")
            except ValueError:
                log_event(logger, logging.ERROR, "failed", exc_info=True)
            logging.getLogger().handlers[0].flush()
        lines = path.read_text().splitlines()
        if not journal:
            assert not any(line.startswith("<") for line in lines), lines
            assert log_format == "json" or all(STAMP.search(line) for line in lines[:2]), lines
            continue
        if log_format == "text":
            assert lines[0] == '<4>WARNING executor.test: something_odd reason="a\\nb"'
            assert lines[1] == "<6>INFO    executor.test: fine"
        else:
            assert lines[0].startswith('<4>{"ts": ') and lines[1].startswith('<6>{"ts": ')
        assert lines[2].startswith("<3>") and all(line.startswith("<3>") for line in lines[2:]), lines
        assert len(lines) > 3 if log_format == "text" else len(lines) == 3  # a traceback: each line
        assert not any(STAMP.search(line) for line in lines if log_format == "text"), lines


def test_a_commands_error_line_to_the_journal_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "stderr"
    with open(path, "w") as stream:
        journal_named(monkeypatch, path)
        monkeypatch.setattr(sys, "stderr", stream)
        logsetup.say("error", "no such sandbox")
        logsetup.say("warning", "odd")
    assert path.read_text() == "<3>stoker: error: no such sandbox\n<4>stoker: warning: odd\n"


class _Writes(io.FileIO):
    """A real file that keeps each write() call it is given: one call is one write(2)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "w")
        self.calls: list[bytes] = []

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.calls.append(bytes(b))
        return super().write(b)


@pytest.mark.parametrize("journal", [False, True])
def test_a_commands_line_is_one_write_when_stderr_writes_through(tmp_path, monkeypatch, journal):
    """Under PYTHONUNBUFFERED or -u (common in containers) stderr writes through: `print`
    wrote a line's text and its newline as two writes, and a record another thread logged
    between them (the early start's, as `stoker run` met a full disk) ran on from the error:
    `...: No space left on device (ENOSPC)2026-12-03 17:23:00.674 WARNING ...`."""
    raw = _Writes(tmp_path / "stderr")
    if journal:
        journal_named(monkeypatch, tmp_path / "stderr")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # as -u makes stderr
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        logsetup.say("error", "cannot use sandbox")
    finally:
        stream.close()
    assert raw.calls == [f"{'<3>' if journal else ''}stoker: error: cannot use sandbox\n".encode()]


def test_the_consoles_lines_to_the_journal_have_no_time_of_their_own(tmp_path, monkeypatch):
    texts = {}
    for name in ("journal", "file"):
        path = tmp_path / name
        with open(path, "w") as stream:
            if name == "journal":
                journal_named(monkeypatch, path)
            console = ConsoleReporter(Output(stream), "svc.0", live=False)
            console.stop_hint = "SIGTERM: stopping"
            console.on_transition(TaskTransition(TaskStage.RUNNING, TaskStage.KILLING, "stopped"))
        texts[name] = path.read_text().splitlines()
    assert texts["journal"] == ["svc.0        task             RUNNING → KILLING  stopped",
                                " " * 30 + "SIGTERM: stopping"]
    assert STAMP.match(texts["file"][0]) and texts["file"][0].endswith(texts["journal"][0])
    assert texts["file"][1] == " " * 14 + texts["journal"][1]
