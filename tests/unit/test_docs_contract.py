"""docs/contract.md against the code, so that a name renamed on either side fails here: §1's
option lists name every flag of `stoker run` and `stoker executor`, and `stoker inspect
--task-info --json` prints the keys §1 spells out; §4's sandbox names are the code's
constants; §5's health defaults are the schema's; §8's three tables give each setting the
variables, flags and default its declaration has (`config/sourced.py` rows); §9 has a row
for every command, and the statuses it gives `stoker executor` and `stoker run` are their
constants; every `snake_case` name it quotes (an event, a JSON field, a record's key) is a
string or a keyword the code writes. (Flags named anywhere: tests/unit/test_docs_flags.py;
variables and paths: test_docs_names.py.)
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import attrs
import pytest

from config.executorsettings import ExecutorSettings
from config.registry import RegistrySettings
from config.settings import RunSettings
from config.spec import LoggerSpec
from executor.cli.main import _parser

REPO = Path(__file__).resolve().parents[2]
CONTRACT = (REPO / "docs/contract.md").read_text()
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
MIB = 1 << 20


def section(number: str) -> str:
    start = CONTRACT.index(f"\n## {number}. ")
    end = CONTRACT.find("\n## ", start + 1)
    return CONTRACT[start:end if end > 0 else None]


def _commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# ---- §1 ----

@pytest.mark.parametrize("command", ["run", "executor"])
def test_the_options_list_of_a_command_s_row_names_each_of_its_flags(command):
    """Its row's `Options:` list, the announcer's left to the README (was: neither row named
    --disk-limit and --disk-check-interval)."""
    row = next(line for line in section("1").splitlines() if line.startswith(f"| `stoker {command}"))
    named = set(FLAG.findall(row[row.index("Options:"):]))
    flags = [a.option_strings for a in _commands()[command]._actions if a.option_strings[:1] != ["-h"]]
    missing = sorted(names[0] for names in flags if names and not names[0].startswith("--announcer-")
                     and not named & set(names))
    assert missing == []


def _keys(spec: str) -> set[str]:
    """The keys of a JSON object as §1 spells it, `{"a", "b": {...}, "c": "x" or "y"}`: its
    quoted words that follow its `{` or a comma, outside what it nests."""
    inner = spec.strip()[1:-1]
    while re.search(r"\{[^{}]*\}|<[^<>]*>|\([^()]*\)|\[[^\[\]]*\]", inner):
        inner = re.sub(r"\{[^{}]*\}|<[^<>]*>|\([^()]*\)|\[[^\[\]]*\]", "", inner)
    return set(re.findall(r'(?:^|, )"(\w+)"', inner))


def _nested(spec: str, opening: str) -> str:
    """The object (or `<...>`) that starts at `opening` in `spec`, brackets balanced."""
    start = spec.index(opening) + len(opening) - 1
    depth = 0
    for end in range(start, len(spec)):
        depth += spec[end] in "{<" and 1 or spec[end] in "}>" and -1 or 0
        if depth == 0:
            return spec[start:end + 1]
    raise AssertionError(f"{opening} is not closed in {spec}")


def test_inspect_task_info_json_prints_the_keys_section_1_spells_out(tmp_path, capsys):
    """`{"task_id", "instance", ... "executor": {"runs_as", ...}}`: the top level's keys, the
    bound task's, each logger's and the executor's."""
    from config.document import encode
    from config.loader import load_job
    from executor.cli.main import main
    from tests.support.agent_sim import make_task_info

    row = next(line for line in section("1").splitlines() if line.startswith("| `stoker inspect --task-info"))
    spec = _nested(row, "one object `{")
    path = tmp_path / "task_info.json"
    path.write_text(json.dumps(make_task_info("task-9", encode(load_job(REPO / "examples/http_service.aurora")),
                                              ports=[32001])))
    assert main(["inspect", "--task-info", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == _keys(spec) and len(shown) >= 13
    task = _nested(spec, '"task": <')
    assert set(shown["task"]) == set(task[task.index(": ") + 2:-1].split(", "))
    logger = _nested(spec, "{PROCESS: {")
    assert [set(each) for each in shown["loggers"].values()] == [_keys(logger)]
    assert set(shown["executor"]) == _keys(_nested(spec, '"executor": {'))


# ---- §8 ----

def _table(heading: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of the §8 table under the paragraph that starts `heading`, by column name."""
    text = section("8")
    text = text[text.index(heading):]
    lines = text[text.index("\n| "):].splitlines()[1:]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    assert tuple(cells[0]) == columns, cells[0]
    rows = []
    for line, row in zip(lines[2:], cells[2:]):
        if not line.startswith("| "):
            break
        rows.append(dict(zip(columns, row)))
    return rows


TABLES = {  # the class whose fields a table's rows are
    "`stoker executor` (the agent": (ExecutorSettings, ("variable", "flag", "default", "meaning")),
    "`stoker run`:": (RunSettings, ("argument or flag", "variable", "default", "meaning")),
    "The host registry (§4), for": (RegistrySettings, ("flag", "variable", "default", "meaning")),
}


def _field(cls: type, cell: str, variables: set[str]) -> list[attrs.Attribute]:
    """The fields a row names, in the order its flag cell names them."""
    fields = [f for f in attrs.fields(cls)
              if set(FLAG.findall(cell)) & {f.metadata["flag"], *f.metadata["aliases"]}
              or variables & set(f.metadata["env"])]
    return sorted(fields, key=lambda f: cell.find(f.metadata["flag"] or "\0"))


# What a process that sets no logger gets while no --runner-logger-* flag is given.
RUNNER_LOGGER = {"runner_logger_destination": LoggerSpec().destination.value,
                 "runner_logger_mode": LoggerSpec().mode.value,
                 "runner_rotate_log_size_mb": LoggerSpec().log_size_bytes // MIB,
                 "runner_rotate_log_backups": LoggerSpec().backups}


def _default_is(f: attrs.Attribute, said: str) -> bool:
    """Whether a row's default is the field's: `required`, `unset`, `on`/`off`, a value its
    parser reads as the default, or words for one computed where it is used."""
    said = said.strip("`")
    if f.default is attrs.NOTHING:
        return said == "required"
    if isinstance(f.default, attrs.Factory):
        return {os.getcwd: "the current directory", dict: "free loopback ports",
                tuple: "none"}[f.default.factory] in said
    if f.metadata["default_from"] is not None:  # the registry's root
        return said.startswith("`/var/run/stoker` for root".strip("`"))
    if isinstance(f.default, bool):
        return said == ("on" if f.default else "off")
    if f.name in RUNNER_LOGGER:  # None: not given, a plain logger's then
        return f.metadata["parse"](said) == RUNNER_LOGGER[f.name]
    if f.default is None:
        return said in ("unset", "none") or said.startswith(("the ", "a fresh directory"))
    return f.metadata["parse"](said) == f.default


@pytest.mark.parametrize("heading", sorted(TABLES))
def test_each_row_of_a_settings_table_is_its_field_s_variables_flags_and_default(heading):
    cls, columns = TABLES[heading]
    checked = set()
    for row in _table(heading, columns):
        cell = row[columns[0]] if columns[0] != "variable" else row["flag"]
        flags = set(FLAG.findall(cell))
        variables = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row["variable"]))
        fields = _field(cls, cell, variables)
        if not fields:
            assert not flags and (variables or re.match(r"`[A-Z]+`$", row[columns[0]])), row
            continue  # LIBPROCESS_SSL_* (docs/mesos.md §14); CONFIG and JOBKEY are positional
        for f in fields:
            checked.add(f.name)
            assert set(f.metadata["env"]) <= variables, (row, f.metadata["env"])
            named = {f.metadata["flag"], *f.metadata["aliases"]}
            assert f.metadata["flag"] is None or named & flags, (row, named)
        said = row["default"].removeprefix("Thermos' (").removesuffix(")")  # the image flags'
        defaults = [d.strip() for d in said.split(", ")] if len(fields) > 1 else [said]
        for f, said in zip(fields, defaults):
            assert _default_is(f, said), (f.name, said, f.default)
    flagged = {f.name for f in attrs.fields(cls)
               if (f.metadata["flag"] or "").startswith("--") and not f.name.startswith("announce")}
    assert flagged - checked == set() and len(checked) >= 2

