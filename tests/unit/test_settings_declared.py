"""Settings declared once (`config/argdecl.py`, `config/environment.py`): a settings class's
flags on an argparse parser (each defaulting to None, its variables in its help), the table
of its environment variables, and the environment a Mesos task's processes start from."""
from __future__ import annotations

import argparse

import attrs
import pytest

from config.argdecl import add_arguments, variables
from config.environment import KEPT, task_environment
from config.settings import AGENT_VARIABLES
from config.sourced import setting


@attrs.frozen(kw_only=True)
class Example:
    config: str = setting(help="the job's file", flag="config", positional=True, nargs="?")
    port: str = setting(help="the port", env=("EX_PORT", "PORT"), flag="--port", aliases=("--p",), default="80")
    name: str = setting(help="a name", env=("EX_NAME",), flag="--name")
    quiet: str = setting(help="no flag of its own", env=("EX_QUIET",), default="")


def test_each_flag_defaults_to_none_and_says_its_variables():
    parser = add_arguments(argparse.ArgumentParser(prog="ex"), Example)
    assert vars(parser.parse_args([])) == {"config": None, "port": None, "name": None}
    assert vars(parser.parse_args(["job.aurora", "--p", "8080", "--name", "x"])) == {
        "config": "job.aurora", "port": "8080", "name": "x"}
    helps = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    assert helps == {"config": "the job's file", "port": "the port [env EX_PORT, PORT]", "name": "a name [env EX_NAME]"}


def test_a_positional_is_not_an_option():
    parser = add_arguments(argparse.ArgumentParser(prog="ex"), Example)
    (positional,) = [a for a in parser._actions if not a.option_strings]
    assert (positional.dest, positional.nargs, positional.default) == ("config", "?", None)


def test_the_table_of_variables_names_each_with_its_flag_and_what_it_stands_in_for():
    assert variables(Example) == [
        ("EX_PORT", "the port (or --port)"),
        ("PORT", "used when EX_PORT is unset"),
        ("EX_NAME", "a name (or --name) (required)"),
        ("EX_QUIET", "no flag of its own"),
    ]


AGENT = {name: "x" for name in AGENT_VARIABLES}
ENVIRON = {"PATH": "/bin", "MESOS_SANDBOX": "/s", "MESOS_DIRECTORY": "/d", "HOME": "/root", "EMPTY": "",
           "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": "secret", **AGENT}


@pytest.mark.parametrize(("preserve", "agent", "wanted"), [
    (False, False, {"PATH": "/bin", "MESOS_SANDBOX": "/s", "MESOS_DIRECTORY": "/d"}),
    (False, True, {"PATH": "/bin", "MESOS_SANDBOX": "/s", "MESOS_DIRECTORY": "/d", **AGENT}),
    (True, False, {"PATH": "/bin", "MESOS_SANDBOX": "/s", "MESOS_DIRECTORY": "/d", "HOME": "/root", "EMPTY": ""}),
], ids=["kept", "with the agent's", "preserved"])
def test_a_task_starts_from_what_is_kept_never_the_token(preserve, agent, wanted):
    assert task_environment(ENVIRON, preserve_env=preserve, keep_agent_env=agent) == wanted


def test_a_task_with_no_path_gets_the_default_one():
    env = task_environment({"MESOS_SANDBOX": "/s"})
    assert set(env) == {"PATH", "MESOS_SANDBOX"} and env["PATH"] and KEPT[0] == "PATH"
