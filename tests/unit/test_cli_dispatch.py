"""`stoker`'s dispatch of parsed words to their command (`executor.cli.main._dispatch`), in
process: which command runs, what is checked before it, and what `stoker executor` is handed
(its settings from the agent's environment and the token the early hiding took, the line that
says what was hidden). The commands themselves are replaced: each records how it was called."""
from __future__ import annotations

import logging
import os
from argparse import Namespace

import pytest

from executor.cli import main as cli_main
from executor.procs import hardening

TOKEN_VAR = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"
AGENT = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "fw-1",
         "MESOS_EXECUTOR_ID": "ex-1", "MESOS_SLAVE_ID": "agent-1", "MESOS_CHECKPOINT": "1"}


@pytest.fixture
def calls(monkeypatch):
    """What `_dispatch` called, in order: the path check and the commands, each replaced."""
    record: list[tuple] = []
    monkeypatch.setattr(cli_main, "_resolvable", lambda args: record.append(("resolvable", args.command)))
    for name in ("_cmd_run", "_cmd_inspect", "_cmd_inspect_task_info"):
        monkeypatch.setattr(cli_main, name, lambda args, name=name: record.append((name, args.command)) or 11)
    return record


def test_a_command_with_a_handler_is_run_once_its_paths_are_checked(calls):
    args = cli_main._arguments(["status", "/tmp"])
    args.handler = lambda given: calls.append(("handler", given is args)) or 7
    assert cli_main._dispatch(args) == 7
    assert calls == [("resolvable", "status"), ("handler", True)]


def test_stoker_run_checks_its_paths_itself_once_its_early_runs_are_in_hand(calls):
    assert cli_main._dispatch(cli_main._arguments(["run", "x.aurora", "--sandbox", "/tmp/sb"])) == 11
    assert calls == [("_cmd_run", "run")]


@pytest.mark.parametrize(("words", "command"), [
    (["inspect", "x.aurora"], "_cmd_inspect"),
    (["inspect", "--task-info", "task.json"], "_cmd_inspect_task_info")])
def test_inspect_reads_a_config_or_a_task_info(calls, words, command):
    assert cli_main._dispatch(cli_main._arguments(words)) == 11
    assert calls == [("resolvable", "inspect"), (command, "inspect")]


def test_a_command_nothing_handles_is_a_bug_named(calls):
    with pytest.raises(AssertionError, match="^nothing$"):
        cli_main._dispatch(Namespace(command="nothing"))
    assert calls == [("resolvable", "nothing")]


@pytest.fixture
def executor_started(monkeypatch, calls, tmp_path):
    """`_dispatch` of `stoker executor --log-level debug --root DIR` in an agent's environment, with the
    early hiding's outcome set by the test: (status, what `run_held_executor` was handed, the
    log configuration asked for)."""
    from executor.cli import targets
    from executor.mesos import process

    for name, value in AGENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MESOS_SANDBOX", str(tmp_path))
    monkeypatch.delenv(TOKEN_VAR, raising=False)  # taken out early: in `hardening.taken` alone
    monkeypatch.setattr(hardening, "taken", {TOKEN_VAR: "the-token"})
    handed: dict[str, object] = {}
    configured: list[tuple] = []

    def held(settings, registry, environ, executor_main) -> int:
        handed.update(settings=settings, registry=registry, environ=environ, main=executor_main is process.main)
        return 9

    monkeypatch.setattr(targets, "run_held_executor", held)
    monkeypatch.setattr(cli_main.logsetup, "configure", lambda *given: configured.append(given))

    def start() -> tuple[int, dict, list]:
        words = ["executor", "--log-level", "debug", "--root", str(tmp_path / "registry")]
        return cli_main._dispatch(cli_main._arguments(words)), handed, configured
    return start


def test_the_executor_is_handed_the_agent_s_settings_and_the_token_only_in_its_copy(executor_started, monkeypatch,
                                                                                     caplog, tmp_path):
    monkeypatch.setattr(hardening, "early", hardening.Hidden(dumpable=False, erased=1))
    caplog.set_level(logging.DEBUG, logger=cli_main.logger.name)
    status, handed, configured = executor_started()
    assert status == 9 and handed["main"] is True
    settings = handed["settings"]
    assert (settings.agent_endpoint, settings.framework_id, settings.executor_id, settings.agent_id,
            settings.checkpoint, settings.log_level) == ("127.0.0.1:5051", "fw-1", "ex-1", "agent-1", True, "DEBUG")
    assert settings.auth_token == "the-token"
    assert handed["environ"] == dict(os.environ) | {TOKEN_VAR: "the-token"}
    assert handed["environ"] is not os.environ and TOKEN_VAR not in os.environ
    assert handed["registry"].registry_root == str(tmp_path / "registry")
    assert configured == [("text", "DEBUG")]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "secrets_hidden dumpable=False erased=1")]


def test_what_the_hiding_could_not_do_is_a_warning_that_names_each_problem(executor_started, monkeypatch, caplog):
    monkeypatch.setattr(hardening, "early", hardening.Hidden(dumpable=True, erased=0, problems=("prctl failed", "no block")))
    caplog.set_level(logging.DEBUG, logger=cli_main.logger.name)
    executor_started()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, 'secrets_hidden dumpable=True erased=0 problems="prctl failed; no block"')]


def test_an_executor_not_started_by_the_entry_point_hides_the_token_first(executor_started, monkeypatch, caplog):
    """`python -m executor executor`, or `main()` called: the hiding had not run (`early` is
    None), so the dispatch runs it on this process's own environment."""
    hidden_in: list[bool] = []

    def hide(environ) -> hardening.Hidden:
        hidden_in.append(environ is os.environ)
        return hardening.Hidden(dumpable=None, erased=2)

    monkeypatch.setattr(hardening, "early", None)
    monkeypatch.setattr(hardening, "hide_early", hide)
    caplog.set_level(logging.DEBUG, logger=cli_main.logger.name)
    status, _, _ = executor_started()
    assert status == 9 and hidden_in == [True]
    assert [r.getMessage() for r in caplog.records] == ["secrets_hidden erased=2"]


@pytest.fixture
def parsers(monkeypatch):
    """The `only` of each parser `_arguments` built (the real parser is built and used)."""
    built: list[str | None] = []
    real = cli_main._parser

    def parser(only=None):
        built.append(only)
        return real(only)

    monkeypatch.setattr(cli_main, "_parser", parser)
    return built


@pytest.mark.parametrize("words", [
    ["run", "x.aurora", "--sandbox", "/tmp/sb", "--log-level", "debug"],
    ["executor", "--log-format", "json"]])
def test_a_supervisor_s_plain_words_are_read_without_argparse_to_argparse_s_namespace(parsers, words):
    args = cli_main._arguments(words)
    assert parsers == []
    assert vars(args) == vars(cli_main._parser(words[0]).parse_args(words))
    assert args.command == words[0]


@pytest.mark.parametrize(("words", "prefix"), [(["run", "x.aurora"], "stoker run"), (["executor"], "stoker")])
def test_a_supervisor_s_other_words_go_to_its_own_parser_alone(parsers, capsys, words, prefix):
    with pytest.raises(SystemExit) as ended:
        cli_main._arguments([*words, "--no-such-flag"])
    assert (ended.value.code, parsers) == (2, [words[0]])
    assert capsys.readouterr().err.splitlines()[-1] == f"{prefix}: error: unrecognized arguments: --no-such-flag"


def test_another_command_s_words_go_to_the_whole_parser(parsers):
    args = cli_main._arguments(["status", "/tmp", "--json"])
    assert (args.command, args.target, args.json, parsers) == ("status", "/tmp", True, [None])


def test_a_supervisor_s_own_parser_knows_no_other_command(capsys):
    with pytest.raises(SystemExit):
        cli_main._parser("run").parse_args(["status", "/tmp"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "stoker: error: argument COMMAND: invalid choice: 'status' (choose from 'run')")
    assert cli_main._parser().parse_args(["status", "/tmp"]).command == "status"


@pytest.mark.parametrize(("command", "classes"), [("run", ("RunSettings", "RegistrySettings")),
                                                  ("executor", ("ExecutorSettings", "RegistrySettings"))])
def test_each_supervisor_s_flags_come_from_its_own_settings(command, classes):
    assert tuple(c.__name__ for c in cli_main.supervisor_settings(command)) == classes
