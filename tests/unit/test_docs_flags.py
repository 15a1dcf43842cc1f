"""The flags the README and docs/contract.md name are the flags `stoker` has: every flag a
command's row of their command tables names is one of that command's, every `--flag` they
name anywhere is one of Stoker's (or another tool's, listed below), and every flag of every
command is named in docs/contract.md or, for the announcer's (which the contract leaves to
it), in the README's "Service discovery". Every `--flag` docs/mesos.md, docs/aurora.md,
docs/design.md and docs/testing.md name is Stoker's too, or another program's listed below
(docs/testing.md's of Stoker's tools: theirs).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from config.argdecl import variables
from config.registry import RegistrySettings
from executor.cli.main import _parser

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
CONTRACT = (REPO / "docs/contract.md").read_text()

# Flags of other programs the two pages name: the Mesos agent's, pip's, systemctl's and
# systemd-run's, iptables', docker run's.
FOREIGN = {"--executor_environment_variables", "--now", "--http_executor_domain_sockets",
           "--executor_reregistration_timeout", "--wheel-dir", "--no-index", "--find-links",
           "--force-reinstall", "--no-deps", "--dport", "--uid-owner", "--scope", "--user",
           "--init", "--dist"}  # --dist: pytest-xdist's (README, "Tests")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
# The Mesos agent's flag that caps a container's CPU (README, "Under a tight CPU quota").
FOREIGN_CPU = {"--cgroups_enable_cfs"}


def _commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def _rows(page: str) -> list[tuple[str, str]]:
    """(command, row) for each command-table row that starts with `stoker COMMAND`, with
    any other `stoker ...` command it quotes taken out."""
    rows = []
    for line in page.splitlines():
        match = re.match(r"\| `stoker (\w+)", line)
        if match and match.group(1) in _commands():
            rows.append((match.group(1), re.sub(r"`stoker [^`]*`", "", line[match.end():])))
    return rows


@pytest.mark.parametrize("page", ["README.md", "docs/contract.md"])
def test_each_command_row_names_only_that_commands_flags(page):
    rows = _rows(README if page == "README.md" else CONTRACT)
    assert len({command for command, _ in rows}) >= 9, rows
    for command, row in rows:
        have = _flags(_commands()[command])
        for flag in FLAG.findall(row):
            assert flag in have or (flag.endswith("-") and any(h.startswith(flag) for h in have)), \
                f"{page}: stoker {command} has no {flag}"


def test_every_flag_the_pages_name_is_stokers():
    have = set().union(*map(_flags, _commands().values())) | {"--version", "--help"}
    for page, text in (("README.md", README), ("docs/contract.md", CONTRACT)):
        for flag in set(FLAG.findall(text)) - FOREIGN - FOREIGN_CPU:
            assert flag in have or (flag.endswith("-") and any(h.startswith(flag) for h in have)), \
                f"{page} names {flag}, which no stoker command has"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_of_every_command_is_in_the_contract(command):
    discovery = README[README.index("## Service discovery"):]
    for action in _commands()[command]._actions:
        names = [s for s in action.option_strings if s != "-h"]
        if names and "--help" not in names:
            page = discovery if names[0].startswith("--announcer-") else CONTRACT
            assert any(re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", page) for s in names), \
                f"the docs do not name stoker {command} {names}"


def test_executor_help_lists_every_variable_it_reads():
    """docs/contract.md §1: `stoker executor --help` lists the variables it reads, the
    registry's and the code cache's too (the agent's own are checked in
    tests/e2e/test_cli_conventions.py)."""
    text = _commands()["executor"].format_help()
    for name, _ in variables(RegistrySettings):
        assert f"\n  {name} " in text, name
    assert "\n  STOKER_CODE_CACHE " in text


def test_every_metric_of_metrics_is_in_the_readme_s_table_and_no_other():
    """README, "Scraping a host with Prometheus": a row per metric `/metrics` writes, with
    its type (`executor/observe/metrics.py`)."""
    from executor.observe.metrics import FAMILIES

    section = README[README.index("### Scraping a host with Prometheus"):]
    section = section[:section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| `stoker_")]
    named = {name: row.split(" | ")[1] for row in rows for name in re.findall(r"`(stoker_[a-z_]+)`", row.split(" | ")[0])}
    assert named == {name: kind for name, (kind, _) in FAMILIES.items()}


def test_executor_help_lists_every_variable_of_the_readme_s_settings():
    """README, "Settings": each variable its table names (but `stoker run`'s own) is one
    `stoker executor --help` lists (MESOS_DOMAIN_SOCKET, MESOS_SLAVE_PID and
    LIBPROCESS_SSL_ENABLED were missing there)."""
    text = _commands()["executor"].format_help()
    named = {name for names, _, meaning in _settings_rows() if not meaning.startswith("`stoker run`")
             for name in names}
    assert {"MESOS_AGENT_ENDPOINT", "STOKER_CODE_CACHE", "LIBPROCESS_SSL_ENABLED"} <= named
    assert sorted(n for n in named if not re.search(rf"\n  {n}\b", text)) == []


VALUE = re.compile(r"\d|^/|^(on|off|auto|text|file|standard|all|none)$")


def _settings_rows() -> list[tuple[list[str], list[str], str]]:
    """(variables, flags, meaning) of each row of the README's "Settings" table."""
    section = README[README.index("### Settings"):]
    section = section[:section.index("\n#### ")]
    rows = []
    for line in section.splitlines()[4:]:
        if line.startswith("| "):
            var, flag, meaning = (cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:4])
            rows.append((re.findall(r"`([A-Z][A-Z0-9_]+)`", var), FLAG.findall(flag), meaning))
    return rows


def test_each_setting_s_variable_and_default_are_its_flag_s():
    """README, "Settings": a row's variable is the one its flag's help names (`[env VAR]`),
    and a default the row states is the one the help states, for every command with the flag
    (a row of several settings, the runner logger's, states several defaults: left out)."""
    actions = [(command, a) for command, p in _commands().items() for a in p._actions]
    first = re.compile(r"default:? `?([\w./$-]+)")
    checked = 0
    for names, flags, meaning in _settings_rows():
        own = [(c, a) for c, a in actions if set(flags) & set(a.option_strings)]
        if len({a.dest for _, a in own}) != 1:
            continue  # no flag, or several settings in one row
        for command, action in own:
            envs = re.search(r"\[env ([^\]]*)\]", action.help or "")
            if envs:
                assert set(names) <= set(envs.group(1).split(", ")), (command, flags, names)
            said, helped = first.search(meaning), first.search(action.help or "")
            if said and helped and VALUE.search(said.group(1)):  # a value, not words ("the waits")
                assert said.group(1) == helped.group(1), (command, flags, said.group(1), helped.group(1))
                checked += 1
    assert checked >= 20


# Flags of other programs that docs/mesos.md, docs/aurora.md and docs/design.md name: the
# Mesos agent's, `mesos-containerizer launch`'s, Thermos', Aurora's client's, `unshare`'s and
# the test processes' (`tests/support/fake_task.py`).
OTHERS = {
    "docs/mesos.md": {"--authenticate_http_executors", "--executor_environment_variables",
                      "--executor_registration_timeout", "--executor_reregistration_timeout",
                      "--http_executor_domain_sockets", "--recover"},
    "docs/aurora.md": {"--command", "--executor-sandbox", "--launch_info", "--rootfs", "--runtime_directory",
                       "--setuid", "--unshare_namespace_mnt", "--user", "--working_directory"},
    "docs/design.md": {"--time", "--daemonize-child", "--exit-after", "--exit-code", "--ignore-sigterm",
                       "--serve-health"},
    # pytest's and its plugins', unshare's, `bash --posix`, `git log --since`, apt-get's, and
    # the tools' own (checked below)
    "docs/testing.md": {"--collect-only", "--dist", "--durations", "--ignore", "--markers", "--hypothesis-seed",
                        "--hypothesis-show-statistics", "--time", "--boottime", "--posix", "--since",
                        "--no-install-recommends", "--tiers", "--max-children"},
}
# docs/testing.md's flags of Stoker's own tools: `make test-pythons PYTEST_ARGS=--tiers`, `make mutation`'s.
TOOL_FLAGS = {"--tiers": "tools/test_pythons.py", "--max-children": "tools/mutation.py"}


@pytest.mark.parametrize("page", sorted(OTHERS))
def test_every_flag_the_design_pages_name_is_stokers_or_named_as_anothers(page):
    """Outside their drawings (```), whose arrows are no flags."""
    text = re.sub(r"```.*?```", "", (REPO / page).read_text(), flags=re.S)
    have = set().union(*map(_flags, _commands().values())) | {"--version", "--help"}
    named = set(FLAG.findall(text)) - OTHERS[page]
    assert sorted(f for f in named if not (f in have or (f.endswith("-") and any(h.startswith(f) for h in have)))) == []


def test_the_tools_flags_docs_testing_md_names_are_theirs():
    for flag, tool in TOOL_FLAGS.items():
        assert flag in (REPO / "docs/testing.md").read_text()
        assert f'add_argument("{flag}"' in (REPO / tool).read_text(), (flag, tool)
