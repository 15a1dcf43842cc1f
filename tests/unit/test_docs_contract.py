"""docs/contract.md's names against the code, so that a name renamed on either side fails
here: §1's option lists name every flag of `stoker run` and `stoker executor`, `stoker
inspect --task-info --json` prints the keys §1 spells out and `stoker status --json` has
every field its row names; §4's sandbox names are the code's constants and `held.json`'s and
`usage.json`'s fields their writers'; §8's three tables give each setting the variables,
flags and default its declaration has (`config/sourced.py` rows), and `stoker run`'s JSON
log the events it prints; every `snake_case` name it quotes (an event, a JSON field, a
record's key) is a string or a keyword the code writes. (Figures, §5's defaults and §9:
test_docs_contract_figures.py; flags named anywhere: test_docs_flags.py; variables and
paths: test_docs_names.py.)
"""
from __future__ import annotations

import argparse
import json
import os
import re

import attrs
import pytest

from config.executorsettings import ExecutorSettings
from config.registry import RegistrySettings
from config.settings import RunSettings
from config.spec import LoggerSpec
from executor.cli.main import _parser
from tests.support.configs import REPO
from tests.support.contractdoc import CONTRACT, keys, nested, object_after, section

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
MIB = 1 << 20


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


def test_inspect_task_info_json_prints_the_keys_section_1_spells_out(tmp_path, capsys):
    """`{"task_id", "instance", ... "executor": {"runs_as", ...}}`: the top level's keys, the
    bound task's, each logger's and the executor's."""
    from config.document import encode
    from config.loader import load_job
    from executor.cli.main import main
    from tests.support.agent_sim import make_task_info

    row = next(line for line in section("1").splitlines() if line.startswith("| `stoker inspect --task-info"))
    spec = nested(row, "one object `{")
    path = tmp_path / "task_info.json"
    path.write_text(json.dumps(make_task_info("task-9", encode(load_job(REPO / "examples/http_service.aurora")),
                                              ports=[32001])))
    assert main(["inspect", "--task-info", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == keys(spec) and len(shown) >= 13
    task = nested(spec, '"task": <')
    assert set(shown["task"]) == set(task[task.index(": ") + 2:-1].split(", "))
    logger = nested(spec, "{PROCESS: {")
    assert [set(each) for each in shown["loggers"].values()] == [keys(logger)]
    assert set(shown["executor"]) == keys(nested(spec, '"executor": {'))


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



# ---- §4 ----

def test_the_sandbox_names_section_4_gives_are_the_code_s():
    """`.stoker/` holds exactly the files the code names, and the sandbox's other names are
    the constants their modules use."""
    from executor.host import sandbox
    from executor.procs.logstage import STAGED_PREFIX
    from executor.procs.runenv import PROFILE
    from executor.task.disklimit import ATTEMPT_LOGS_PREFIX
    from executor.task.wiring import SNOOZE_FILE

    text = section("4")
    held = text[text.index("`SANDBOX/.stoker/` is the supervisor's"):]
    held = held[held.index("It holds:"):held.index("\n- The host registry")]
    listed = re.findall(r"^  - `([^`]+)`", held, re.M)
    files = (sandbox.CHECKPOINT_FILE, sandbox.LOCK_FILE, sandbox.CONTROL_SOCKET, sandbox.TASK_FILE,
             sandbox.HELD_FILE, sandbox.USAGE_FILE)
    assert listed == list(files)
    named = set(re.findall(r"`([^`\s]+)`", text))
    for name in (f"SANDBOX/{sandbox.STOKER_DIR}/", f"SANDBOX/{SNOOZE_FILE}", f"SANDBOX/{PROFILE}",
                 "SANDBOX/.logs/PROCESS/RUN/stdout", f"{ATTEMPT_LOGS_PREFIX}N", f".logs/PROCESS/{STAGED_PREFIX}N"):
        assert name in named, name


def _dict_keys(module: str) -> set[str]:
    """The string keys of the dict literals `module`'s code writes."""
    import ast

    tree = ast.parse((REPO / module).read_text())
    return {k.value for node in ast.walk(tree) if isinstance(node, ast.Dict)
            for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def test_usage_json_s_fields_are_the_ones_its_writer_writes():
    spec = object_after(section("4"), "`usage.json` (0600)")
    named = keys(spec) | keys(nested(spec, '"disk_sample": {'))
    assert named == _dict_keys("executor/task/usagefile.py") and len(named) == 14


def test_held_json_is_written_with_the_fields_section_4_names():
    from executor.task.heldfile import held_json

    spec = object_after(section("4"), "`held.json` (0600)")
    assert set(json.loads(held_json("m" * 32, {}, watchdog=1))) == keys(spec) == {"marker", "boot", "held", "watchdog"}



def test_status_json_has_each_field_the_status_row_names(tmp_path, capsys, monkeypatch):
    """Every name the row's `--json` sentences quote is a field of the JSON (its top level,
    `resources`, `restart`, an attempt's or a foreign process's) or one of the two values of
    `task_uid_source`: a live `stoker run` (this process) between two attempts, and a sandbox
    whose supervisor died before its first record (`supervisor_pid`, `problem`)."""
    import time

    from executor.host.identity import boot_secs, own_identity
    from executor.task.leftoverprocs import Foreign
    from tests.support.statuscli import RUNNING, header, status, write

    row = next(line for line in section("1").splitlines() if line.startswith("| `stoker status"))
    said = row[row.index("`--json` prints the same view as JSON, with"):row.index("The text shows the same below")]
    names = set(re.findall(r"`([a-z_]+)`", said)) - {"_iso"}  # `disk_sampled` (and `_iso`)
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    me, now, boot = own_identity(), time.time(), boot_secs()
    write(tmp_path / "sb", [dict(header(me.pid, me.start_ticks, wall=now - 60), boot=boot - 60, run_uid=os.getuid()), *RUNNING,
                            {"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "web failed", "wall": now - 2},
                            {"kind": "restart", "delay_secs": 60.0, "reason": "task failed (1 of 3)",
                             "wall": now - 1, "boot": boot - 1}])
    code, out, _ = status(capsys, tmp_path / "sb", "--json")
    shown = json.loads(out)
    assert (code, shown["state"]) == (0, "RESTARTING"), shown
    (tmp_path / "new" / ".stoker").mkdir(parents=True)
    (tmp_path / "new" / ".stoker" / "supervisor.lock").write_text(json.dumps(
        {"pid": me.pid, "start": me.start_ticks + 100, "boot": me.boot_id, "front_end": "run", "since": 1000.0}))
    code, out, _ = status(capsys, tmp_path / "new", "--json")
    unrecorded = json.loads(out)
    assert (code, unrecorded["state"]) == (0, "LOST"), unrecorded
    fields = (set(shown) | set(shown["resources"]) | set(shown["restart"]) | set(shown["attempts"][0])
              | {f.name for f in attrs.fields(Foreign)} | {"supervisor_pid", "problem"} & set(unrecorded))
    assert sorted(names - fields - {"checkpoint_header", "sandbox_owner"}) == []
    assert shown["task_uid_source"] == "checkpoint_header" and unrecorded["task_uid_source"] == "sandbox_owner"
    assert len(names) >= 45


# ---- every name ----

# Names §1-§9 quote that are not Stoker's to write: Python's proxy variable, pystachio's
# json_dumps, stat's st_blocks, the Aurora job's update_config.
NOT_STOKERS = {"http_proxy", "json_dumps", "st_blocks", "update_config"}
# Written composed: `stoker_{kind}` (executor/cli/logsetup.py), for `stoker_error` and `stoker_warning`.
COMPOSED = {"stoker_error": 'f"stoker_{kind}"', "stoker_warning": 'f"stoker_{kind}"'}


def test_every_snake_case_name_the_contract_quotes_is_one_the_code_writes():
    """An event (`log_write_failed`), a JSON field (`supervisor_alive`), a record's key
    (`run_uid`): a string literal of the code's or a keyword it passes (`log_event(...,
    dropped_bytes=N)`), not only a word in its comments."""
    code = "\n".join(path.read_text() for package in ("executor", "config", "healthcheck")
                     for path in sorted((REPO / package).rglob("*.py")))
    names = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", CONTRACT))
    assert len(names) >= 100
    written = set(re.findall(r"""(?=["']([a-z][a-z0-9_]*)["'])|(?=[(,\s]([a-z][a-z0-9_]*)=)""", code))
    written = {word for pair in written for word in pair if word}  # quoted, or a keyword passed
    missing = sorted(name for name in names - NOT_STOKERS
                     if name not in written and COMPOSED.get(name, "\0") not in code)
    assert missing == []


def test_the_events_a_json_log_of_stoker_run_has_are_the_ones_it_prints():
    """§8, `--log-level` of `stoker run`: the events its text stderr leaves to stdout
    (`executor/cli/main.py` RUN_PRINTED_EVENTS) are the ones the row names."""
    from executor.cli.main import RUN_PRINTED_EVENTS

    (row,) = [row for row in _table("`stoker run`:", TABLES["`stoker run`:"][1]) if row["argument or flag"] == "`--log-level`"]
    said = row["meaning"][row["meaning"].index("a JSON one has them too"):]
    assert set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", said)) == set(RUN_PRINTED_EVENTS)


def test_the_mesos_names_section_6_gives_are_the_ones_the_executor_sends():
    """Its updates' states (every one the executor sends, §6's table naming each), reasons
    and source."""
    from executor.events import TaskState
    from executor.mesos.executor import REASON_TASK_INVALID
    from executor.mesos.reporter import REASON_HEALTH
    from executor.mesos.wire import SOURCE_EXECUTOR

    text = section("6")
    updates = [re.split(r"(?<!\\)\|", line)[2] for line in text.splitlines()
               if line.startswith("| ") and not line.startswith("| ---")]  # each row's `update` cell
    states = {name for cell in updates for name in re.findall(r"\bTASK_[A-Z]+", cell)}
    assert states == {f"TASK_{state.value}" for state in TaskState}
    assert set(re.findall(r"\bREASON_[A-Z_]+", text)) == {REASON_TASK_INVALID, REASON_HEALTH}
    assert set(re.findall(r"\bSOURCE_[A-Z_]+", text)) == {SOURCE_EXECUTOR}
