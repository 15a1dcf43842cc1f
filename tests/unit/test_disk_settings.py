"""The disk-limit check's two settings, for `stoker executor` (on by default) and `stoker run`
(off by default): flags, STOKER_ variables, defaults, and errors that name them."""
from __future__ import annotations

import argparse

import pytest

from config.argdecl import add_arguments
from config.errors import SettingsError
from config.executorsettings import ExecutorSettings
from config.quickargs import parse as quick_parse
from config.settings import RunSettings, parse_interval

AGENT_ENV = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "fw-1", "MESOS_EXECUTOR_ID": "ex-1"}


def executor(argv: list[str], env: dict[str, str] | None = None) -> ExecutorSettings:
    parser = add_arguments(argparse.ArgumentParser(), ExecutorSettings)
    return ExecutorSettings.from_args(parser.parse_args(argv), {**AGENT_ENV, **(env or {})})


def run(argv: list[str], env: dict[str, str] | None = None) -> RunSettings:
    parser = add_arguments(argparse.ArgumentParser(), RunSettings)
    return RunSettings.from_args(parser.parse_args(["job.aurora", *argv]), env or {})


def test_on_under_the_executor_and_off_under_stoker_run_by_default_every_60_secs():
    assert (executor([]).disk_limit, executor([]).disk_check_interval_secs) == (True, 60.0)
    assert (run([]).disk_limit, run([]).disk_check_interval_secs) == (False, 60.0)


def test_flags_win_over_variables():
    env = {"STOKER_DISK_LIMIT": "off", "STOKER_DISK_CHECK_INTERVAL": "2mins"}
    assert (executor([], env).disk_limit, executor([], env).disk_check_interval_secs) == (False, 120.0)
    s = executor(["--disk-limit", "on", "--disk-check-interval", "500ms"], env)
    assert (s.disk_limit, s.disk_check_interval_secs) == (True, 0.5)
    s = run(["--disk-limit", "on", "--disk-check-interval", "30"])
    assert (s.disk_limit, s.disk_check_interval_secs) == (True, 30.0)


@pytest.mark.parametrize("text, secs", [("60secs", 60.0), ("50ms", 0.05), ("30", 30.0), ("365days", 31536000.0)])
def test_the_interval_is_seconds_or_a_duration(text, secs):
    assert parse_interval(text) == secs


def test_bad_values_are_named_by_their_flag_or_variable():
    with pytest.raises(SettingsError) as info:
        executor(["--disk-check-interval", "0secs"], {"STOKER_DISK_LIMIT": "yes"})
    assert info.value.problems == (
        "STOKER_DISK_LIMIT='yes' is not on or off",
        "--disk-check-interval='0secs' is not a number of seconds or a duration of more than 0 and "
        "at most 365days",
    )
    with pytest.raises(SettingsError, match="STOKER_DISK_CHECK_INTERVAL='366days'"):
        run([], {"STOKER_DISK_CHECK_INTERVAL": "366days"})


def test_stoker_run_reads_them_without_argparse():
    args = quick_parse(["run", "job.aurora", "--disk-limit", "on", "--disk-check-interval", "50ms"], [RunSettings])
    assert args is not None and (args.disk_limit, args.disk_check_interval_secs) == ("on", "50ms")
    assert RunSettings.from_args(args, {}).disk_limit is True
    assert quick_parse(["run", "job.aurora", "--disk-limit", "maybe"], [RunSettings]) is None  # argparse says why
