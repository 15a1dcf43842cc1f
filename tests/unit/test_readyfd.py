"""s6's readiness descriptor (`executor/host/readyfd.py`) on real pipes: what `--ready-fd`
accepts, and a newline whose reader is gone."""
from __future__ import annotations

import logging
import os

import pytest

from config.errors import SettingsError
from executor.host.readyfd import ready_fd


@pytest.mark.parametrize("fd", [2**31, 10**20])
def test_a_number_past_any_descriptor_is_a_usage_error(fd):
    with pytest.raises(SettingsError, match=f"descriptor {fd} is not open"):
        ready_fd(fd)


def test_a_reader_gone_loses_the_newline_and_nothing_else(caplog):
    """s6-supervise gone: EPIPE (Python ignores SIGPIPE), one WARNING, the descriptor closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    notifier = ready_fd(write_end)
    with caplog.at_level(logging.WARNING):
        notifier.ready("svc.0 RUNNING")
    assert notifier.fd is None and notifier.ready_sent
    assert "ready_fd_failed" in caplog.text
    with pytest.raises(OSError):
        os.fstat(write_end)
