"""`executor.host.signals`' words, before and after logging is set up: a signal's name (a
real-time one by its offset), whether the command line or the environment asks for JSON (as
argparse reads `--log-format`), the line of a stop a finalizer dropped, which stray signals
are relayed, and a stray one said at WARNING once, then at DEBUG."""
from __future__ import annotations

import json
import logging
import signal
import sys

import pytest

from executor.host import signals
from executor.host.signals import Strays, json_asked, say_dropped_while_loading, signal_name, strays


def test_a_signal_s_name_a_real_time_one_by_its_offset():
    rt = signal.SIGRTMIN
    assert [signal_name(s) for s in (15, rt, rt + 3, signal.SIGRTMAX - 1, signal.SIGRTMAX, 0, 65)] == [
        "SIGTERM", "SIGRTMIN", "SIGRTMIN+3", f"SIGRTMIN+{signal.SIGRTMAX - 1 - rt}", "SIGRTMAX", "signal 0",
        "signal 65"]


@pytest.mark.parametrize(("argv", "env", "asked"), [
    ([], None, False), ([], "json", True), ([], "text", False),
    (["--log-format", "json"], None, True), (["--log-format=json"], None, True),
    (["--log-f", "json"], None, True), (["--log-form=json"], None, True),  # an abbreviation, as argparse takes it
    (["--log-", "json"], None, False), (["--log", "json"], None, False),  # `--log-level`'s too: not this flag
    (["--log-formats", "json"], None, False),  # no abbreviation of it
    (["--log-format", "json", "--log-format", "text"], None, False), (["--log-format"], "json", True),  # the last one
    (["--", "--log-format", "json"], None, False),  # the task's words, not Stoker's
    (["run", "x.aurora", "--log-format", "json"], "text", True),  # the command line wins
])
def test_json_is_asked_by_the_last_log_format_flag_else_the_variable(monkeypatch, argv, env, asked):
    monkeypatch.setattr(sys, "argv", ["stoker", *argv])
    if env is None:
        monkeypatch.delenv("STOKER_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("STOKER_LOG_FORMAT", env)
    assert json_asked() is asked


WHAT = "came as a finalizer ran, which cannot raise it: acted on once Stoker has loaded"


def test_a_dropped_stop_is_one_plain_line_or_one_json_object(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["stoker", "run", "x.aurora"])
    monkeypatch.delenv("STOKER_LOG_FORMAT", raising=False)
    say_dropped_while_loading(signal.SIGTERM, "executor.cli")
    assert capsys.readouterr().err == f"stoker: SIGTERM {WHAT}\n"
    monkeypatch.setattr(sys, "argv", ["stoker", "run", "--log-format", "json", "x.aurora"])
    say_dropped_while_loading(signal.SIGINT, "executor.cli")
    [line] = capsys.readouterr().err.splitlines()
    said = json.loads(line)
    assert isinstance(said.pop("ts"), float)
    assert said == {"level": "INFO", "logger": "executor.cli", "event": "stop_deferred", "signal": "SIGINT",
                    "reason": f"it {WHAT}"}


def test_a_stray_signal_ignored_at_start_is_not_relayed():
    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        assert strays((signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)) == [signal.SIGUSR1, signal.SIGALRM]
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert signal.SIGUSR2 in strays() and signal.SIGRTMAX in strays()


def test_a_stray_signal_is_a_warning_once_then_debug(caplog):
    said = Strays("stoker run")
    with caplog.at_level(logging.DEBUG, logger=signals.logger.name):
        for signum in (signal.SIGUSR1, signal.SIGUSR1, signal.SIGUSR2):
            said.ignored(signum)
    reason = ("stoker run gives it no meaning (its default would end the supervisor at once, and its task with it); "
              "ignored")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f'signal_ignored signal=SIGUSR1 reason="{reason}"'),
        ("DEBUG", f'signal_ignored signal=SIGUSR1 reason="{reason}"'),
        ("WARNING", f'signal_ignored signal=SIGUSR2 reason="{reason}"')]
