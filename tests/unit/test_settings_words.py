"""`config.settings`' parsers word by word: what each takes, what it gives back, and the
whole line of each refusal (a settings error prints it after the flag or variable's name);
and the table rows the shared settings declare (`test_settings.py` reads whole settings
classes from flags and variables)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from config import settings
from config.settings import (
    parse_bindings,
    parse_cgroups,
    parse_destination,
    parse_duration,
    parse_instance,
    parse_interval,
    parse_log_format,
    parse_log_level,
    parse_mode,
    parse_on_off,
    parse_positive,
    parse_ready_fd,
    parse_secs,
    parse_switch,
)
from config.spec import LoggerDefaults


def refusal(parse, value) -> str:
    with pytest.raises(ValueError) as refused:  # a ValueError: a TypeError would end the settings' read
        parse(value)
    assert type(refused.value) is ValueError
    return str(refused.value)


@pytest.mark.parametrize(("parse", "value", "said"), [
    (parse_duration, None, "None is not a duration (e.g. 15mins, 500ms)"),
    (parse_duration, "9" * 36 + "days",  # 40 characters: shown whole
     f"'{'9' * 36}days' is longer than a Mesos duration holds (about 292 years)"),
    (parse_duration, "9" * 37 + "days",  # 41: its first 40
     f"'{'9' * 37}day'... is longer than a Mesos duration holds (about 292 years)"),
    (parse_bindings, ["novalue"], "'novalue' is not KEY=VALUE"),
    (parse_bindings, ["a b=1"], "'a b=1': 'a b' is not a template reference (Badly formed address .a b)"),
    (parse_instance, True, "True is not a non-negative integer"),
    (parse_instance, 1.5, "1.5 is not a non-negative integer"),
    (parse_instance, "abc", "'abc' is not a non-negative integer"),
    (parse_instance, -1, "-1 is not a non-negative integer"),
    (parse_ready_fd, "2", "2 is a standard stream, not a descriptor of its own (3 or more)"),
    (parse_ready_fd, "x", "'x' is not a non-negative integer"),
    (parse_secs, "-1", "'-1' is not a non-negative number of seconds"),
    (parse_secs, "inf", "'inf' is not a non-negative number of seconds"),
    (parse_interval, "abc", "'abc' is not a number of seconds or a duration of more than 0 and at most 365days"),
    (parse_interval, "0", "'0' is not a number of seconds or a duration of more than 0 and at most 365days"),
    (parse_interval, "366days", "'366days' is not a number of seconds or a duration of more than 0 and at most 365days"),
    (parse_on_off, "yes", "'yes' is not on or off"),
    (parse_log_format, "xml", "'xml' is not a log format (text, json)"),
    (parse_log_level, 5, "5 is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"),
    (parse_log_level, "loud", "'loud' is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"),
    (parse_cgroups, "rel", "'rel' is not auto, off or an absolute cgroup directory"),
    (parse_cgroups, 5, "5 is not auto, off or an absolute cgroup directory"),
    (parse_cgroups, "/a\0b", "'/a\\x00b' is not auto, off or an absolute cgroup directory"),
    (parse_destination, "x", "'x' is not a logger destination (file, console, both, none)"),
    (parse_mode, "x", "'x' is not a logger mode (standard, rotate)"),
    (parse_positive, "0", "'0' is not a whole number of at least 1"),
    (parse_positive, True, "True is not a whole number of at least 1"),
    (parse_positive, 2.0, "2.0 is not a whole number of at least 1"),
    (parse_positive, "x", "'x' is not a whole number of at least 1"),
    (settings._parse_ensemble, "", "'' is not a ZooKeeper ensemble (HOST:PORT[,HOST:PORT...])"),
])
def test_each_refusal_is_one_line_that_starts_with_the_value(parse, value, said):
    assert refusal(parse, value) == said


def test_what_each_parser_takes():
    assert parse_duration(0) == 0.0 and parse_duration(0.0) == 0.0 and parse_duration("0secs") == 0.0
    assert parse_bindings(["stop_file=a=b", ("docker.image[py][3]", "x")]) == (
        ("stop_file", "a=b"), ("docker.image[py][3]", "x"))  # split at the first `=`; a pair as it is
    assert parse_instance("0") == 0 and parse_instance(7) == 7
    assert parse_ready_fd("3") == 3
    assert parse_secs("0") == 0.0 and parse_secs("500ms") == 0.5
    assert parse_interval("365days") == 365 * 86400.0 and parse_interval("0.5") == 0.5
    assert [parse_on_off(v) for v in (True, False, "on", "off")] == [True, False, True, False]
    assert [parse_switch(v) for v in (True, "1", "true", False, "0", "yes", "")] == [True, True, True] + [False] * 4
    assert parse_log_format("json") == "json" and parse_log_level("warning") == "WARNING"
    assert [parse_cgroups(v) for v in ("auto", "off", "/a/../b/", "/")] == ["auto", "off", "/b", "/"]
    assert [parse_destination(v) for v in ("file", "console", "both", "none")] == ["file", "console", "both", "none"]
    assert [parse_mode(v) for v in ("standard", "rotate")] == ["standard", "rotate"]
    assert parse_positive("1") == 1 and parse_positive(12) == 12
    assert settings._parse_ensemble("127.0.0.1:2181") == "127.0.0.1:2181"


def test_thermos_other_spelling_keeps_the_two_dashes():
    assert settings.thermos_spelling("--runner-logger-mode") == ("--runner_logger_mode",)


def test_the_logger_defaults_are_the_four_runner_settings():
    given = SimpleNamespace(runner_logger_destination="both", runner_logger_mode="rotate",
                            runner_rotate_log_size_mb=7, runner_rotate_log_backups=2)
    assert settings.logger_defaults(given) == LoggerDefaults.of("both", "rotate", 7, 2)
    assert settings.logger_defaults(given) != LoggerDefaults.of(None, None, None, None)


def row(field) -> dict:
    return {**field.metadata, "default": field._default}


def test_the_disk_limit_s_row_says_its_default():
    thermos = ("fail a task whose sandbox holds more than its Resources.disk, as Thermos does, with TASK_FAILED "
               "and 'Disk limit exceeded.  Reserved N bytes vs used M bytes.' ")
    expected = {"env": ("STOKER_DISK_LIMIT",), "flag": "--disk-limit", "parse": parse_on_off,
                "argparse": {"choices": ("on", "off")}, "aliases": (), "default_from": None}
    assert row(settings.disk_limit(True)) == {**expected, "help": thermos + "(default on)", "default": True}
    assert row(settings.disk_limit(False)) == {**expected, "help": thermos + "(default off)", "default": False}
    assert row(settings.disk_check_interval()) == {
        "env": ("STOKER_DISK_CHECK_INTERVAL",), "flag": "--disk-check-interval", "parse": parse_interval,
        "argparse": {"metavar": "SECS"}, "aliases": (), "default_from": None, "default": 60.0,
        "help": "how often the disk-limit check measures the sandbox (default 60secs)"}


@pytest.mark.parametrize(("declare", "flag", "parse", "argparse", "help"), [
    (settings.runner_logger_destination, "--runner-logger-destination", parse_destination,
     {"choices": ("file", "console", "both", "none")},
     "where the output of a process whose job leaves `logger` unset goes, as Thermos' executor flag "
     "(default: file; a process with its own logger keeps it)"),
    (settings.runner_logger_mode, "--runner-logger-mode", parse_mode, {"choices": ("standard", "rotate")},
     "standard or rotate, for a process whose job leaves `logger` unset (default: standard)"),
    (settings.runner_rotate_log_size_mb, "--runner-rotate-log-size-mb", parse_positive, {"metavar": "MIB"},
     "in rotate mode, the size a log file of a process without a logger rotates at (default 100)"),
    (settings.runner_rotate_log_backups, "--runner-rotate-log-backups", parse_positive, {"metavar": "N"},
     "in rotate mode, the rotated files kept for a process without a logger (default 5)"),
])
def test_each_runner_logger_row_takes_thermos_spelling_too(declare, flag, parse, argparse, help):
    assert row(declare("STOKER_A", "STOKER_B")) == {
        "env": ("STOKER_A", "STOKER_B"), "flag": flag, "aliases": (flag.replace("-", "_").replace("__", "--", 1),),
        "parse": parse, "argparse": argparse, "help": help, "default_from": None, "default": None}
