"""Ctrl-Z in `stoker run`: each one is declined (the supervisor supervises on), and the
warning that says why is written in full once; a later Ctrl-Z gets one short line. Before,
every Ctrl-Z repeated the ~400-character explanation."""
from __future__ import annotations

import io
import logging
import signal

from config.settings import RunSettings
from executor.local import run as local_run


def test_the_first_ctrl_z_explains_and_later_ones_say_so_briefly(tmp_path, caplog):
    run = local_run.LocalRun(RunSettings(config=str(tmp_path / "unused.aurora")), out=io.StringIO())
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            run._on_signal(signal.SIGTSTP)
    declined = [r for r in caplog.records if getattr(r, "stoker_event", "") == "suspend_declined"]
    reasons = [r.getMessage() for r in declined]
    assert len(declined) == 3, reasons
    assert "its processes run in sessions of their own" in reasons[0] and len(reasons[0]) > 300
    assert reasons[1] == reasons[2] and len(reasons[1]) < 150, reasons[1]
    assert "declined again" in reasons[1] and "Ctrl-C stops the task" in reasons[1]
    assert run._signal is None  # no stop was taken
