"""Settings: durations, the executor's MESOS_* variables, `stoker run`'s flags and env fallbacks."""
from __future__ import annotations

import argparse
import os

import pytest

from config.argdecl import add_arguments
from config.environment import DEFAULT_PATH, task_environment
from config.errors import ConfigError, SettingsError
from config.executorsettings import ExecutorSettings
from config.settings import (
    RunSettings,
    parse_bindings,
    parse_duration,
    parse_port,
    parse_ports,
    pop_secrets,
)
from config.sourced import flag_conflicts
from executor.cli.observe import _port as observe_port
from executor.cli.tail import _count as tail_count

AGENT_ENV = {
    "MESOS_AGENT_ENDPOINT": "127.0.0.1:5051",
    "MESOS_FRAMEWORK_ID": "fw-1",
    "MESOS_EXECUTOR_ID": "ex-1",
}


@pytest.mark.parametrize("text,secs", [
    ("5secs", 5.0), ("15mins", 900.0), ("500ms", 0.5), ("1.5secs", 1.5), ("2hrs", 7200.0),
    ("3days", 259200.0), ("1weeks", 604800.0), ("10ns", 1e-8), ("10us", 1e-5), ("0secs", 0.0),
    (".5secs", 0.5), (2, 2.0), (0.25, 0.25),
])
def test_parse_duration(text, secs):
    assert parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["abc", "5", "5 secs", " 5secs", "5secs ", "-5secs", "secs", "5sec",
                                  "5s", "", "1.2.3secs", "5secsx", "x5secs", "5SECS"])
def test_parse_duration_rejects_other_text(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == f"{text!r} is not a duration (e.g. 15mins, 500ms)"


def test_parse_duration_rejects_a_duration_longer_than_mesos_holds():
    """Found by the fuzz harness (tests/fuzz/fuzz_settings.py): 309 digits of `secs` read as
    infinity, and `MESOS_SUBSCRIPTION_BACKOFF_MAX` became a wait no lock can make
    (`threading.Event().wait(inf)` raises OverflowError, as does any wait past
    `_thread.TIMEOUT_MAX`). The bound is Mesos' own: int64 nanoseconds."""
    for text in ("9" * 400 + "secs", "9223372037secs", "15251weeks"):
        with pytest.raises(ValueError) as info:
            parse_duration(text)
        shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}..."
        assert str(info.value) == f"{shown} is longer than a Mesos duration holds (about 292 years)"
    assert parse_duration("9223372036secs") == 9223372036.0


def test_parse_duration_rejects_negative_numbers():
    with pytest.raises(ValueError, match="-1 is not a non-negative number of seconds"):
        parse_duration(-1)


def test_parse_ports():
    assert parse_port("http=8080") == ("http", 8080)
    assert parse_ports(["http=1", "health=65535"]) == {"http": 1, "health": 65535}
    for bad in ("http", "http=", "=80", "http=0", "http=65536", "http=x", "a b=1", "http=8080=1",
                "http=\u0665\u0660\u0660\u0660", "http=80\n"):  # Arabic-Indic 5000; a line end
        with pytest.raises(ValueError, match="is not NAME=NUMBER"):
            parse_port(bad)
    with pytest.raises(ValueError, match="'http' is given more than once"):
        parse_ports(["http=1", "http=2"])


@pytest.mark.parametrize("ports, problem", [
    ({"http": True}, "'http': True is not a port name and number"),  # a bool is no number
    ({"http": "80"}, "'http': '80' is not a port name and number"),  # nor a number's text
    ({1: 80}, "1: 80 is not a port name and number"),  # a name is text
    ({"http": 0}, "'http=0' is not NAME=NUMBER with a port number in 1..65535"),
])
def test_a_ready_map_of_ports_is_checked_as_the_command_line_s_are(ports, problem):
    assert parse_ports({"http": 8080, "health": 65535}) == {"http": 8080, "health": 65535}
    with pytest.raises(ValueError) as refused:
        parse_ports(ports)
    assert str(refused.value) == problem


def test_a_port_that_is_no_text_is_refused_with_its_value():
    with pytest.raises(ValueError) as refused:
        parse_port(8080)  # type: ignore[arg-type]
    assert str(refused.value) == "8080 is not NAME=NUMBER with a port number in 1..65535"


# ---- ExecutorSettings ----


def test_executor_settings_from_a_full_environment():
    env = {**AGENT_ENV, "MESOS_SLAVE_ID": "agent-9", "MESOS_SANDBOX": "/sb", "MESOS_DIRECTORY": "/dir",
           "MESOS_CHECKPOINT": "1", "MESOS_RECOVERY_TIMEOUT": "1mins", "MESOS_SUBSCRIPTION_BACKOFF_MAX": "500ms",
           "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "3secs", "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": "tok",
           "STOKER_HOSTNAME": "h1", "STOKER_LOG_FORMAT": "json", "STOKER_LOG_LEVEL": "debug"}
    s = ExecutorSettings.from_env(env)
    assert (s.agent_endpoint, s.framework_id, s.executor_id, s.agent_id) == ("127.0.0.1:5051", "fw-1", "ex-1", "agent-9")
    assert s.sandbox == "/sb" and s.checkpoint is True
    assert (s.recovery_timeout_secs, s.subscription_backoff_max_secs, s.shutdown_grace_secs) == (60.0, 0.5, 3.0)
    assert (s.auth_token, s.hostname, s.log_format, s.log_level) == ("tok", "h1", "json", "DEBUG")


def test_executor_settings_defaults():
    s = ExecutorSettings.from_env(AGENT_ENV)
    assert s.agent_id is None and s.auth_token is None and s.hostname is None
    assert s.sandbox == os.getcwd()
    assert s.checkpoint is False
    assert (s.recovery_timeout_secs, s.subscription_backoff_max_secs, s.shutdown_grace_secs) == (900.0, 2.0, 5.0)
    assert (s.log_format, s.log_level) == ("text", "INFO")


def test_sandbox_falls_back_to_mesos_directory():
    assert ExecutorSettings.from_env({**AGENT_ENV, "MESOS_DIRECTORY": "/dir"}).sandbox == "/dir"
    assert ExecutorSettings.from_env({**AGENT_ENV, "MESOS_SANDBOX": "", "MESOS_DIRECTORY": "/dir"}).sandbox == "/dir"


@pytest.mark.parametrize("value,on", [("1", True), ("0", False), ("true", False), ("yes", False), ("", False)])
def test_checkpoint_is_on_only_for_exactly_1(value, on):
    assert ExecutorSettings.from_env({**AGENT_ENV, "MESOS_CHECKPOINT": value}).checkpoint is on


@pytest.mark.parametrize("given", [True, False])
def test_checkpoint_given_as_a_bool_wins_over_the_variable(given):
    """As a front-end that decides it itself passes it."""
    env = {**AGENT_ENV, "MESOS_CHECKPOINT": "0" if given else "1"}
    assert ExecutorSettings.from_env(env, checkpoint=given).checkpoint is given


def test_every_missing_and_invalid_variable_is_named():
    with pytest.raises(SettingsError) as info:
        ExecutorSettings.from_env({"MESOS_RECOVERY_TIMEOUT": "abc", "STOKER_LOG_LEVEL": "loud"})
    problems = info.value.problems
    assert problems == (
        "MESOS_AGENT_ENDPOINT is not set (the agent's ip:port, for its executor API)",
        "MESOS_FRAMEWORK_ID is not set (the framework's ID)",
        "MESOS_EXECUTOR_ID is not set (this executor's ID)",
        "MESOS_RECOVERY_TIMEOUT='abc' is not a duration (e.g. 15mins, 500ms)",
        "STOKER_LOG_LEVEL='loud' is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)",
    )
    assert "MESOS_RECOVERY_TIMEOUT='abc' is not a duration (e.g. 15mins, 500ms)" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_the_token_never_appears_in_the_repr():
    s = ExecutorSettings.from_env({**AGENT_ENV, "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": "s3cr3t-token"})
    assert s.auth_token == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(s) and "s3cr3t-token" not in str(s)


TASK_ENV = {"MESOS_SANDBOX": "/sb", "MESOS_DIRECTORY": "/sb", "MESOS_SLAVE_ID": "agent-9", "PATH": "/bin"}


def test_pop_secrets_removes_the_token_and_the_agent_variables():
    env = {**AGENT_ENV, **TASK_ENV, "MESOS_SLAVE_PID": "slave(1)@127.0.0.1:5051",
           "MESOS_DOMAIN_SOCKET": "/run/mesos/agent.sock", "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": "tok"}
    pop_secrets(env)
    assert env == TASK_ENV
    pop_secrets(env)  # absent: nothing happens
    assert env == TASK_ENV


def test_pop_secrets_keeps_the_agent_variables_when_asked_but_never_the_token():
    env = {**AGENT_ENV, **TASK_ENV, "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": "tok"}
    pop_secrets(env, keep_agent_env=True)
    assert env == {**AGENT_ENV, **TASK_ENV}


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), ("0", False), ("no", False),
                                      ("", False)])
def test_pass_agent_env_is_a_switch_that_defaults_off(value, on):
    assert ExecutorSettings.from_env({**AGENT_ENV, "STOKER_PASS_AGENT_ENV": value}).pass_agent_env is on


def test_the_pass_agent_env_flag_wins_over_the_variable():
    args = add_arguments(argparse.ArgumentParser(), ExecutorSettings).parse_args(["--pass-agent-env"])
    assert ExecutorSettings.from_args(args, {**AGENT_ENV, "STOKER_PASS_AGENT_ENV": "0"}).pass_agent_env
    args = add_arguments(argparse.ArgumentParser(), ExecutorSettings).parse_args([])
    assert not ExecutorSettings.from_args(args, AGENT_ENV).pass_agent_env


def test_overrides_win_and_none_means_not_given():
    s = ExecutorSettings.from_env({**AGENT_ENV, "STOKER_LOG_LEVEL": "ERROR"}, log_level="warning", hostname=None)
    assert s.log_level == "WARNING" and s.hostname is None


def test_unknown_override_is_an_error():
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        ExecutorSettings.from_env(AGENT_ENV, colour="blue")


# ---- RunSettings and add_arguments ----


def run_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="stoker run"), RunSettings)


def run_settings(argv: list[str], environ: dict[str, str] | None = None) -> RunSettings:
    return RunSettings.from_args(run_parser().parse_args(argv), environ or {})


def test_run_settings_from_flags():
    s = run_settings(["job.aurora", "c/r/e/n", "--instance", "2", "--sandbox", "/tmp/sb",
                      "--port", "http=8080", "--port", "health=8081", "--log-format", "json", "--log-level", "debug"])
    assert s == RunSettings(config="job.aurora", jobkey="c/r/e/n", instance=2, sandbox="/tmp/sb",
                            ports={"http": 8080, "health": 8081}, log_format="json", log_level="DEBUG")


def test_run_settings_defaults():
    s = run_settings(["job.aurora"])
    assert s == RunSettings(config="job.aurora", jobkey=None, instance=0, sandbox=None, ports={},
                            log_format="text", log_level="WARNING", kill_grace_secs=None,
                            restart_backoff_secs=1.0, restart_backoff_max_secs=60.0)


def test_run_settings_times_accept_seconds_and_durations():
    s = run_settings(["job.aurora", "--kill-grace", "500ms", "--restart-backoff", "0.25"])
    assert (s.kill_grace_secs, s.restart_backoff_secs) == (0.5, 0.25)
    with pytest.raises(SettingsError, match="--kill-grace"):
        run_settings(["job.aurora", "--kill-grace", "-1"])


def test_run_settings_fall_back_to_stoker_variables_and_flags_win():
    env = {"STOKER_SANDBOX": "/env-sb", "STOKER_LOG_FORMAT": "json", "STOKER_LOG_LEVEL": "ERROR"}
    s = run_settings(["job.aurora"], env)
    assert (s.sandbox, s.log_format, s.log_level) == ("/env-sb", "json", "ERROR")
    s = run_settings(["job.aurora", "--sandbox", "/flag-sb", "--log-level", "INFO"], env)
    assert (s.sandbox, s.log_level) == ("/flag-sb", "INFO")


def test_an_explicit_sandbox_flag_wins_over_the_mesos_variables():
    # docs/contract.md §4: --sandbox, else $MESOS_SANDBOX, else $MESOS_DIRECTORY, else $STOKER_SANDBOX.
    env = {"MESOS_SANDBOX": "/sb", "MESOS_DIRECTORY": "/dir", "STOKER_SANDBOX": "/stoker"}
    assert run_settings(["job.aurora", "--sandbox", "/flag"], env).sandbox == "/flag"
    assert run_settings(["job.aurora"], env).sandbox == "/sb"
    assert run_settings(["job.aurora"], {"MESOS_DIRECTORY": "/dir", "STOKER_SANDBOX": "/s"}).sandbox == "/dir"
    assert run_settings(["job.aurora"], {"STOKER_SANDBOX": "/s"}).sandbox == "/s"


def test_a_flag_that_overrides_a_different_variable_is_one_conflict_sentence():
    parser = add_arguments(argparse.ArgumentParser(), RunSettings)
    args = parser.parse_args(["job.aurora", "--sandbox", "/flag", "--log-level", "INFO"])
    env = {"MESOS_SANDBOX": "/sb", "STOKER_LOG_LEVEL": "INFO", "STOKER_LOG_FORMAT": "json"}
    assert flag_conflicts(RunSettings, args, env) == ["--sandbox /flag wins over MESOS_SANDBOX=/sb"]
    assert flag_conflicts(RunSettings, parser.parse_args(["job.aurora"]), env) == []


def test_run_settings_errors_name_the_flags():
    with pytest.raises(SettingsError) as info:
        run_settings(["job.aurora", "--instance", "-1", "--port", "http"], {"STOKER_LOG_LEVEL": "chatty"})
    assert info.value.problems == (
        "--instance='-1' is not a non-negative integer",
        "--port='http' is not NAME=NUMBER with a port number in 1..65535",
        "STOKER_LOG_LEVEL='chatty' is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)",
    )
    # In terms of the flags and variables, not of the classes behind them.
    assert str(info.value) == "; ".join(info.value.problems)


def test_run_settings_without_a_config_path():
    with pytest.raises(SettingsError, match=r"config is not set \(the \.aurora"):
        RunSettings.from_env({})


def test_help_comes_from_the_field_table():
    text = run_parser().format_help()
    for fragment in ("CONFIG", "JOBKEY", "--instance N", "--sandbox DIR", "--port NAME=NUM",
                     "STOKER_SANDBOX", "STOKER_LOG_LEVEL", "repeatable", "cluster/role/environment/name"):
        assert fragment in text, fragment
    executor_help = add_arguments(argparse.ArgumentParser(), ExecutorSettings).format_help()
    assert "--log-format" in executor_help and "STOKER_HOSTNAME" in executor_help
    assert "env MESOS_AGENT_ENDPOINT" not in executor_help  # agent variables are not flags
    assert "--pass-agent-env" in executor_help and "STOKER_PASS_AGENT_ENV" in executor_help


# ---- the task's environment under `stoker executor`, and the Aurora switches ----

EXECUTOR_ENV = {**AGENT_ENV, "MESOS_SLAVE_PID": "slave(1)@127.0.0.1:5051", "PATH": "/opt/bin:/usr/bin",
                "MESOS_DOMAIN_SOCKET": "/run/mesos/agent.sock", "LIBPROCESS_SSL_ENABLED": "true",
                "MESOS_SANDBOX": "/sb", "MESOS_DIRECTORY": "/dir", "LANG": "C.UTF-8",
                "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": "t0ken"}


def test_the_task_environment_is_thermos_minimal_one():
    assert task_environment(EXECUTOR_ENV) == {"PATH": "/opt/bin:/usr/bin", "MESOS_SANDBOX": "/sb",
                                              "MESOS_DIRECTORY": "/dir"}
    assert task_environment({}) == {"PATH": DEFAULT_PATH}
    with_agent = task_environment(EXECUTOR_ENV, keep_agent_env=True)
    assert set(with_agent) == {"PATH", "MESOS_SANDBOX", "MESOS_DIRECTORY", "MESOS_AGENT_ENDPOINT",
                               "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_SLAVE_PID",
                               "MESOS_DOMAIN_SOCKET"}


def test_preserve_env_keeps_the_executor_s_environment_but_never_the_token():
    preserved = task_environment(EXECUTOR_ENV, preserve_env=True)
    # libprocess' SSL settings are the executor's environment like any other (the key is a file)
    assert preserved == {"PATH": "/opt/bin:/usr/bin", "MESOS_SANDBOX": "/sb", "MESOS_DIRECTORY": "/dir",
                         "LANG": "C.UTF-8", "LIBPROCESS_SSL_ENABLED": "true"}
    assert "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" not in task_environment(EXECUTOR_ENV, preserve_env=True,
                                                                         keep_agent_env=True)


@pytest.mark.parametrize("argv, env, preserve, nosetuid", [
    ([], {}, False, False),
    (["--preserve_env"], {}, True, False),  # Thermos' spelling
    (["--preserve-env", "--nosetuid"], {}, True, True),
    ([], {"STOKER_PRESERVE_ENV": "1", "STOKER_NOSETUID": "true"}, True, True),
])
def test_preserve_env_and_nosetuid_flags(argv, env, preserve, nosetuid):
    parser = add_arguments(argparse.ArgumentParser(), ExecutorSettings)
    settings = ExecutorSettings.from_args(parser.parse_args(argv), {**AGENT_ENV, **env})
    assert (settings.preserve_env, settings.nosetuid) == (preserve, nosetuid)


def test_bind_flags_are_key_value_pairs_in_order():
    parser = add_arguments(argparse.ArgumentParser(), RunSettings)
    args = parser.parse_args(["job.aurora", "--bind", "stop_file=/tmp/stop", "--bind",
                              "docker.image[library/python][3.11-slim]=python@sha256:00", "--bind", "empty="])
    assert RunSettings.from_args(args, {}).bindings == (
        ("stop_file", "/tmp/stop"), ("docker.image[library/python][3.11-slim]", "python@sha256:00"), ("empty", ""))
    assert RunSettings.from_env({}, config="x").bindings == ()


@pytest.mark.parametrize("item, words", [
    ("no-equals-sign", "'no-equals-sign' is not KEY=VALUE"),
    ("a b=1", "'a b' is not a template reference"),
])
def test_a_bad_bind_is_named(item, words):
    with pytest.raises(SettingsError, match=words):
        RunSettings.from_env({}, config="x", bindings=[item])
    with pytest.raises(ValueError, match=words):
        parse_bindings([item])


# ---- the host registry (config/registry.py) ----


def test_the_registry_root_is_root_s_run_directory_else_the_user_s_state_directory():
    from config.registry import registry_root

    assert registry_root({}, euid=0) == "/var/run/stoker"
    assert registry_root({"XDG_STATE_HOME": "/xdg", "HOME": "/home/me"}, euid=1000) == "/xdg/stoker"


def test_the_registry_root_is_never_relative_nor_in_another_user_s_home(tmp_path):
    """An executor the agent started as a task's user inherits the agent's HOME=/root: its
    entry went to /root/.local/state/stoker, which it may not make (a WARNING, and no `stoker
    ps` listed the task); a uid with no password entry and no HOME (a container's) made
    `./~/.local/state/stoker` in the working directory, and a relative XDG_STATE_HOME a
    registry that moved with it. Now: a home this user owns, else /tmp/stoker-UID."""
    from config.registry import registry_root

    me = os.geteuid() or 4242420  # as root, a uid without a password entry, given a home
    home = tmp_path / "home"
    home.mkdir()
    if os.geteuid() == 0:
        os.chown(home, me, -1)
    assert registry_root({"HOME": str(home)}, euid=me) == f"{home}/.local/state/stoker"
    assert registry_root({"XDG_STATE_HOME": "state", "HOME": str(home)}, euid=me) == \
        f"{home}/.local/state/stoker"
    nobody = 4242421  # no password entry: only HOME could name a home
    assert pwd_entry(nobody) is None
    for environ in ({}, {"HOME": "~"}, {"HOME": "home"}, {"HOME": "/"}, {"HOME": str(tmp_path / "gone")}):
        assert registry_root(environ, euid=nobody) == "/tmp/stoker-4242421", environ


def pwd_entry(uid: int):
    import pwd

    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def test_registry_settings_a_flag_wins_over_its_variable_and_errors_name_the_flag():
    from config.registry import RegistrySettings, registry_root

    assert RegistrySettings.from_env({}) == RegistrySettings(
        registry_root=registry_root({}), registry_retention_secs=7 * 86400.0)
    env = {"STOKER_ROOT": "/env-root", "STOKER_REGISTRY_RETENTION": "2days"}
    assert RegistrySettings.from_env(env) == RegistrySettings(registry_root="/env-root",
                                                              registry_retention_secs=2 * 86400.0)
    assert RegistrySettings.from_env(env, registry_root="/flag").registry_root == "/flag"
    with pytest.raises(SettingsError, match="--registry-retention='soon' is not a duration"):
        RegistrySettings.from_env({}, registry_retention_secs="soon")


@pytest.mark.parametrize("parse", [observe_port, tail_count], ids=["observe --port", "tail -n"])
def test_a_number_on_the_command_line_is_ascii_digits(parse):
    # Was: int() read '٥٠٠٠' (Arabic-Indic digits, str.isdigit() true) as 5000.
    assert parse("5000") == 5000
    with pytest.raises(argparse.ArgumentTypeError, match="is not"):
        parse("\u0665\u0660\u0660\u0660")
