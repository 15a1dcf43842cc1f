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


def _object_after(text: str, words: str) -> str:
    """The first `{...}` after `words` in `text`, its blanks made single spaces."""
    text = re.sub(r"\s+", " ", text)
    at = text.index("{", text.index(words))
    return _nested(text[at:], "{")


def test_usage_json_s_fields_are_the_ones_its_writer_writes():
    spec = _object_after(section("4"), "`usage.json` (0600)")
    keys = _keys(spec) | _keys(_nested(spec, '"disk_sample": {'))
    assert keys == _dict_keys("executor/task/usagefile.py") and len(keys) == 14


def test_held_json_is_written_with_the_fields_section_4_names():
    from executor.task.heldfile import held_json

    spec = _object_after(section("4"), "`held.json` (0600)")
    assert set(json.loads(held_json("m" * 32, {}, watchdog=1))) == _keys(spec) == {"marker", "boot", "held", "watchdog"}



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


# ---- the figures §2-§5 give ----

def _figures() -> list[tuple[str, str]]:
    """(section, the words that give a figure, built from the constant that is it)."""
    from config.document import MAX_DOCUMENT_BYTES
    from config.refs import MAX_EXPANDED_CHARS
    from config.spec import MAX_ARGUMENT_BYTES, MAX_SECONDS
    from config.templates import BASE_STEPS, MAX_TEMPLATE_STEPS, STEPS_PER_REF
    from executor.mesos.recordio import MAX_RECORD_BYTES
    from executor.procs.runprune import KEEP_RUNS
    from executor.task import journal, replay
    from executor.task.checkpoint import COMPACT_MIN_BYTES, MAX_READ_BYTES
    from healthcheck.base import MAX_BODY_BYTES, QUOTE_CHARS, STALL_SECS

    return [
        ("2", f"a document over {MAX_DOCUMENT_BYTES // MIB} MiB"),
        ("2", f"A LAUNCH event over {MAX_RECORD_BYTES // MIB} MiB"),
        ("3", f"expand to more than {MAX_EXPANDED_CHARS // MIB} MiB"),
        ("3", f"{BASE_STEPS:,} steps plus {STEPS_PER_REF} per reference written in the job (at most "
              f"{MAX_TEMPLATE_STEPS:,};"),
        ("4", f"of its last {KEEP_RUNS} runs"),
        ("4", f"past {COMPACT_MIN_BYTES // 1024} KiB it is compacted to what `stoker status` shows (the last "
              f"{replay.ATTEMPTS_KEPT} attempts, per attempt the last {replay.HEALTH_HISTORY} health attempts and "
              f"per process the last {replay.RUNS_KEPT} runs"),
        ("4", f"At most {journal.MAX_HELD_RECORDS:,} records are held"),
        ("4", f"once {journal.HELD_RETRY_FROM:,} are held, they are tried again every {journal.HELD_RETRY_SECS:g} s"),
        ("4", f"at most {MAX_READ_BYTES // MIB} MiB of it are read"),
        ("5", f"At most {MAX_BODY_BYTES // 1024} KiB of body is read"),
        ("5", f"a reason quotes at most {QUOTE_CHARS // 1024} KiB"),
        ("5", f"more than {STALL_SECS * 1000:.0f} ms past the deadline"),
        ("5", f"at most {MAX_SECONDS:,} ({MAX_SECONDS // 86400} days"),
        ("5", f"longer than {MAX_ARGUMENT_BYTES:,} bytes once bound"),
    ]


@pytest.mark.parametrize("number, words", _figures())
def test_each_figure_is_the_code_s(number, words):
    """The words are built from the constants: a constant changed, or the page, fails here."""
    assert words in re.sub(r"\s+", " ", section(number))


def test_the_task_document_s_keys_are_the_ones_section_2_names():
    from config.document import TaskDocumentError, decode

    text = section("2")
    named = re.findall(r"^- `(\w+)`", text[:text.index("### 2.1")], re.M)
    with pytest.raises(TaskDocumentError, match=rf"expected: {', '.join(named)}\)"):
        decode(b'{"job": {}, "other": 1}')

# ---- §5 ----

def test_the_health_check_defaults_section_5_gives_are_the_schema_s():
    from config.schema.aurora import HealthCheckConfig, HttpHealthChecker

    text = section("5")
    opening = text[text.index("(`HealthCheckConfig`:"):text.index("by default)")]
    said = dict(re.findall(r"`(\w+)`\s+([\d.]+)", opening))
    assert len(said) == 5
    assert {name: float(value) for name, value in said.items()} == {
        name: float(getattr(HealthCheckConfig(), name)().get()) for name in said}
    assert re.search(r"`endpoint` \(default `/health`\)", text)
    assert HttpHealthChecker().endpoint().get() == "/health"
    assert re.search(r"`expected_response` lower-cased \(default `ok`", text)
    assert HttpHealthChecker().expected_response().get() == "ok"


# ---- §9 ----

def _exit_rows() -> list[tuple[str, str, str]]:
    """(command cell, status cell, when) of each row of §9's table."""
    rows = []
    for line in section("9").splitlines():
        if line.startswith("| ") and not line.startswith(("| ---", "| command |")):
            command, status, when = (c.strip() for c in re.split(r"(?<!\\)\|", line)[1:4])
            rows.append((command, status, when))
    return rows


def test_every_command_has_its_row_in_section_9_and_each_row_names_commands():
    rows = _exit_rows()
    named = {word for command, _, _ in rows for word in re.findall(r"`(\w+)`", command)}
    assert named <= set(_commands()), named - set(_commands())
    assert set(_commands()) - named == set()
    assert {command for command, _, _ in rows if not command.startswith("`")} == {
        "any", "any but `run`, `executor`; `--help` and `--version` of any"}


def test_the_statuses_section_9_gives_the_executor_and_run_are_their_constants():
    from executor.cli.main import EXIT_USAGE
    from executor.local.ended import EXIT_INTERNAL_ERROR as RUN_INTERNAL_ERROR
    from executor.mesos import process

    rows = {(command, status) for command, status, _ in _exit_rows()}
    assert ("any", str(EXIT_USAGE)) in rows
    assert ("`run`", str(RUN_INTERNAL_ERROR)) in rows
    assert ("`executor`", str(process.EXIT_OK)) in rows
    assert ("`executor`", str(process.EXIT_INTERNAL_ERROR)) in rows
    assert ("`executor`", " / ".join(map(str, (process.EXIT_NEVER_SUBSCRIBED, process.EXIT_AGENT_LOST,
                                                process.EXIT_UNACKNOWLEDGED)))) in rows
    assert ("`run`, `executor`", str(process.CLI_CANNOT_GO_ON)) in rows


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
    missing = sorted(name for name in names - NOT_STOKERS
                     if not re.search(rf"""["']{name}["']|[(,\s]{name}=""", code)
                     and COMPOSED.get(name, "\0") not in code)
    assert missing == []


def test_the_events_a_json_log_of_stoker_run_has_are_the_ones_it_prints():
    """§8, `--log-level` of `stoker run`: the events its text stderr leaves to stdout
    (`executor/cli/main.py` RUN_PRINTED_EVENTS) are the ones the row names."""
    from executor.cli.main import RUN_PRINTED_EVENTS

    (row,) = [row for row in _table("`stoker run`:", TABLES["`stoker run`:"][1]) if row["argument or flag"] == "`--log-level`"]
    said = row["meaning"][row["meaning"].index("a JSON one has them too"):]
    assert set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", said)) == set(RUN_PRINTED_EVENTS)
