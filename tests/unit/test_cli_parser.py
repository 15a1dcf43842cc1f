"""The `stoker` command's argparse parser (`executor/cli/parser.py`) in this process: how it
says a name that starts with `-` is given, whose usage an error shows, the help's width, where
help and --version go (and a stdout that cannot take them), the commands `build(only)` has,
and the executor's list of the variables it reads. The command as a process is
tests/e2e/test_cli_conventions.py's."""
from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import pty
import struct
import sys
import termios
from typing import IO

import pytest

import executor
from config.argdecl import variables
from executor.cli.main import _output_written, main, supervisor_settings
from executor.cli.parser import AGENT_ROUTE_VARIABLES, _Help, build

HINT = "(a name that starts with '-' is read as an option: put -- before it, {how}, or write it as a path, ./{name})"


def _refused(capsys: pytest.CaptureFixture[str], *words: str) -> tuple[str, str]:
    """The usage line's start and the error line of `stoker WORDS`, refused (status 2)."""
    with pytest.raises(SystemExit) as ended:
        build().parse_args(list(words))
    assert ended.value.code == 2
    err = capsys.readouterr().err.splitlines()
    return err[0], err[-1]


@pytest.mark.parametrize(("words", "error"), [
    (("status", "-dash"), "stoker status: error: unrecognized arguments: -dash "
                          + HINT.format(how="stoker status -- -dash", name="-dash")),
    (("status", "-dash", "--json"), "stoker status: error: unrecognized arguments: -dash "
                                    + HINT.format(how="after the options", name="-dash")),
    (("kill", "-dash"), "stoker kill: error: the following arguments are required: SANDBOX|TASK_ID "
                        + HINT.format(how="stoker kill -- -dash", name="-dash")),
    (("tail", "-n5", "-dash"), "stoker tail: error: the following arguments are required: SANDBOX|TASK_ID, "
                               "PROCESS " + HINT.format(how="stoker tail -n5 -- -dash", name="-dash")),
    (("status", "-ab"), "stoker status: error: unrecognized arguments: -ab "
                        + HINT.format(how="stoker status -- -ab", name="-ab")),
    (("status", "-Xdash"), "stoker status: error: unrecognized arguments: -Xdash "
                           + HINT.format(how="stoker status -- -Xdash", name="-Xdash")),
    (("tail", "--", "-dash"), "stoker tail: error: the following arguments are required: PROCESS"),
    (("restart", "-it's", "web"), "stoker restart: error: the following arguments are required: PROCESS (a name "
                                  "that starts with '-' is read as an option: put -- before it, stoker restart -- "
                                  "'-it'\"'\"'s' web, or write it as a path, './-it'\"'\"'s')"),
])
def test_a_name_that_starts_with_a_dash_is_said_how_to_give_with_its_command_s_usage(capsys, words, error):
    usage, said = _refused(capsys, *words)
    assert usage.startswith(f"usage: stoker {words[0]} ")
    assert said == error


def test_a_lone_letter_is_an_option_mistyped_unless_a_path_of_that_name_is_there(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _refused(capsys, "status", "-x")[1] == "stoker status: error: unrecognized arguments: -x"
    (tmp_path / "-x").mkdir()
    assert _refused(capsys, "status", "-x")[1] == ("stoker status: error: unrecognized arguments: -x "
                                                   + HINT.format(how="stoker status -- -x", name="-x"))


@pytest.mark.parametrize("word", ["-.hidden", "--dash", "-1x"])
def test_a_number_a_dot_or_a_long_option_gets_argparse_s_words_alone(capsys, word):
    assert _refused(capsys, "status", word)[1] == f"stoker status: error: unrecognized arguments: {word}"


def test_a_dashed_word_after_the_double_dash_is_the_name_it_gives():
    assert build().parse_args(["status", "--", "-dash"]).target == "-dash"


def test_the_words_are_the_command_line_s_when_none_are_given_and_a_namespace_given_is_filled(
        monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["stoker", "kill", "-dash"])
    with pytest.raises(SystemExit):
        build().parse_args()
    assert capsys.readouterr().err.endswith(HINT.format(how="stoker kill -- -dash", name="-dash") + "\n")
    given = argparse.Namespace(mine=1)
    assert build().parse_args(["status", "web"], given) is given and (given.mine, given.target) == (1, "web")
    assert build().parse_known_args(["ps", "-x"], given) == (given, ["-x"]) and given.command == "ps"


def test_an_error_to_a_stderr_that_cannot_take_it_still_ends_as_a_usage_error(monkeypatch):
    full = open("/dev/full", "w")  # (closed below: its close fails too)
    try:
        monkeypatch.setattr(sys, "stderr", full)
        with pytest.raises(SystemExit) as ended:
            build().parse_args(["status", "-dash"])
    finally:
        with contextlib.suppress(OSError):  # (the message is still in its buffer: the close's flush fails)
            full.close()
    assert ended.value.code == 2 and full.closed


def test_an_error_with_no_stderr_at_all_still_ends_as_a_usage_error(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)  # (descriptor 2 closed as the interpreter started)
    with pytest.raises(SystemExit) as ended:
        build().parse_args(["status", "-dash"])
    assert ended.value.code == 2


def test_a_command_that_takes_no_name_and_the_top_level_get_the_top_level_usage_and_no_hint(capsys):
    assert _refused(capsys, "ps", "-dash", "-x") == ("usage: stoker [-h] [--version] COMMAND ...",
                                                     "stoker: error: unrecognized arguments: -dash -x")
    assert _refused(capsys, "--bogus") == ("usage: stoker [-h] [--version] COMMAND ...",
                                           "stoker: error: the following arguments are required: COMMAND")


def _help(capsys: pytest.CaptureFixture[str], *words: str) -> list[str]:
    """The help lines `stoker WORDS --help` writes to stdout (status 0)."""
    with pytest.raises(SystemExit) as ended:
        build().parse_args([*words, "--help"])
    assert ended.value.code == 0
    return capsys.readouterr().out.splitlines()


def _width(*at_start: IO[str] | None) -> int:
    """The width the parser's help is wrapped to (argparse's formatter's); with `at_start`, as
    if that were the interpreter's own stdout, put back before pytest (or mutmut, through it)
    writes to it again."""
    saved = sys.__stdout__
    if at_start:
        sys.__stdout__ = at_start[0]
    try:
        return build().commands["tail"]._get_formatter()._width
    finally:
        sys.__stdout__ = saved


def test_help_is_as_wide_as_columns_says_less_argparse_s_margin(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "50")
    assert _width() == 48
    assert _help(capsys, "tail")[:3] == ["usage: stoker tail [-h] [-n N] [-f] [--run N]",
                                 "                   [--attempt N] [--stderr]", "                   [--root DIR]"]
    monkeypatch.setenv("COLUMNS", "1")
    assert _width() == -1  # (taken as it is, as shutil takes it)


@pytest.mark.parametrize("columns", ["", "0", "-5", "wide"])
def test_help_without_a_usable_columns_is_the_terminal_s_width(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
        with os.fdopen(os.dup(follower), "w") as terminal:
            assert _width(terminal) == 58
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 0, 0, 0))
            assert _width(terminal) == 78  # a terminal that says 0 columns
    finally:
        os.close(leader)
        os.close(follower)


@pytest.mark.parametrize("stdout", ["none", "a pipe", "closed"])
def test_help_with_no_terminal_to_measure_is_80_columns_wide(monkeypatch, stdout):
    monkeypatch.delenv("COLUMNS", raising=False)
    read, write = os.pipe()
    try:
        with os.fdopen(write, "w") as pipe:
            if stdout == "closed":
                pipe.close()
            assert _width(None if stdout == "none" else pipe) == 78
    finally:
        os.close(read)


def test_a_command_s_description_is_its_summary_as_a_sentence_and_its_example_the_epilog(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    lines = _help(capsys, "run")
    assert lines[lines.index("") + 1] == "Run a job on this machine, restarting it by the service rules."
    assert "examples:" in lines and "  stoker run examples/hello_world.aurora" in lines
    assert "  -h, --help            show this help message and exit" in lines  # (argparse's indent and column)


def test_the_top_level_help_lists_each_command_with_its_summary_and_the_first_example(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    lines = _help(capsys)
    assert lines[2:4] == ["Run Aurora/Thermos job specs under Mesos or on this machine, with health checks.", ""]
    assert "    run       run a job on this machine, restarting it by the service rules" in lines
    assert "    executor  the Mesos executor, started by a Mesos agent" in lines
    assert lines[-2:] == ["Example: stoker run examples/hello_world.aurora   (Ctrl-C stops it)",
                          "Every command: stoker COMMAND --help."]


def test_a_formatter_given_a_width_keeps_it():
    assert _Help("stoker", width=30)._width == 30


def test_version_goes_to_stdout(capsys):
    with pytest.raises(SystemExit) as ended:
        build().parse_args(["--version"])
    assert ended.value.code == 0 and capsys.readouterr() == (f"stoker {executor.version()}\n", "")


@pytest.mark.parametrize("argv, given", [(["stoker", "ps", "--no-such-option"], ["--version"]),
                                         (["stoker", "--version"], None)])  # none given: the process's
def test_main_parses_the_words_it_is_given_else_its_process_s(monkeypatch, capsys, argv, given):
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as ended:
        main(given)
    assert ended.value.code == 0 and capsys.readouterr() == (f"stoker {executor.version()}\n", "")


@pytest.mark.parametrize("error", [OSError(errno.EACCES, "Permission denied"),  # not a full output's
                                   OSError(errno.ENOSPC, "No space left on device", "state.json")])  # a file's
def test_a_commands_own_os_error_is_not_taken_for_its_outputs(error):
    def command() -> int:
        raise error

    with pytest.raises(OSError) as raised:
        _output_written(command)
    assert raised.value is error


def test_help_to_a_stdout_that_cannot_take_it_is_one_error_line_and_status_1(monkeypatch, capsys):
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        with pytest.raises(SystemExit) as ended:
            build().parse_args(["--help"])
        assert ended.value.code == 1
        assert os.path.samefile(f"/proc/self/fd/{full.fileno()}", os.devnull)  # its rest dropped quietly
    assert capsys.readouterr().err == "stoker: error: cannot write to stdout: No space left on device\n"


def test_help_to_a_reader_that_left_ends_quietly(monkeypatch, capsys):
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as gone:
        monkeypatch.setattr(sys, "stdout", gone)
        with pytest.raises(SystemExit) as ended:
            build().parse_args(["--help"])
        assert ended.value.code == 0
        assert os.path.samefile(f"/proc/self/fd/{gone.fileno()}", os.devnull)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("only", "commands"), [
    ("run", ["run"]), ("executor", ["executor"]),
    (None, ["run", "executor", "inspect", "status", "ps", "tail", "kill", "restart", "observe"]),
])
def test_build_only_has_that_command(only, commands):
    assert list(build(only).commands) == commands


def test_each_supervisor_takes_its_own_flags():
    assert build("executor").parse_args(["executor", "--hostname", "h"]).hostname == "h"
    assert build("run").parse_args(["run", "job.aurora", "--instance", "2"]).instance == "2"


def test_the_executor_s_variables_put_the_agent_s_route_after_its_other_mesos_ones_and_the_code_cache_last(
        monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "400")
    lines = _help(capsys, "executor")
    assert lines[lines.index("") + 1] == ("The Mesos executor, started by a Mesos agent. It reads the agent's MESOS_* "
                                          "variables (below).")
    rows = lines[lines.index("environment (MESOS_*: set by the agent; docs/contract.md §8):") + 1:]
    rows = rows[:rows.index("")]
    names = [row.split()[0] for row in rows]
    route = [name for name, _ in AGENT_ROUTE_VARIABLES]
    read = [name for settings in supervisor_settings("executor") for name, _ in variables(settings)]
    assert [name for name in names if name not in [*route, "STOKER_CODE_CACHE"]] == read  # each, in order
    last_mesos = max(i for i, name in enumerate(names) if name.startswith("MESOS_") and name != "MESOS_DOMAIN_SOCKET"
                     and name != "MESOS_SLAVE_PID")
    assert names[last_mesos + 1:last_mesos + 5] == [name for name, _ in AGENT_ROUTE_VARIABLES]
    assert names[-1] == "STOKER_CODE_CACHE" and names[0].startswith("MESOS_")
    width = max(map(len, names))
    assert all(row[:2] == "  " and row[2 + width:4 + width] == "  " and row[4 + width] != " " for row in rows)
    assert rows[-1].split(None, 1)[1] == ("where attrs' compiled methods are kept (default: the package's "
                                         "__pycache__; an absolute directory; off)")
    assert lines[-2:-1] == ["example (what an agent runs):"]
    assert lines[-1] == "  MESOS_AGENT_ENDPOINT=127.0.0.1:5051 MESOS_FRAMEWORK_ID=... MESOS_EXECUTOR_ID=... stoker executor"
