"""A test's log lines of one event (`executor.logs.log_event`: the event's name, then its
fields): by the name as the first word, so that a line named otherwise is not one of them."""
from __future__ import annotations

import logging

import pytest


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    """The records of `event`, in order."""
    return [r for r in caplog.records if r.getMessage().split(" ", 1)[0] == event]


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    """The lines of `event`, in order, whole."""
    return [r.getMessage() for r in records(caplog, event)]
