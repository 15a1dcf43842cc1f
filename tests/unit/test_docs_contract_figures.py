"""docs/contract.md's figures against the constants that are them (each figure's words are
built from its constant, so a change on either side fails here), §2's document keys, §5's
health defaults, and §9's exit table: a row for every command, the statuses of `stoker
executor` and `stoker run` their constants. (Names: tests/unit/test_docs_contract.py.)
"""
from __future__ import annotations

import argparse
import re

import pytest

from executor.cli.main import _parser
from tests.support.contractdoc import section

MIB = 1 << 20


def _commands() -> set[str]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


# ---- the figures §2-§5 give ----

def _figures() -> list[tuple[str, str]]:
    """(section, the words that give a figure, built from the constant that is it)."""
    import inspect

    from config.document import MAX_DOCUMENT_BYTES
    from config.loader import MAX_CONFIG_CHARS
    from config.refs import MAX_EXPANDED_CHARS
    from config.spec import MAX_ARGUMENT_BYTES, MAX_SECONDS
    from config.templates import BASE_STEPS, MAX_TEMPLATE_STEPS, STEPS_PER_REF
    from executor.host import control, entry, registry
    from executor.host.controlwire import MAX_GRACE_SECS
    from executor.local import service
    from executor.local.planahead import SLOW_SECS
    from executor.local.plancache import KEEP
    from executor.local.planning import PICK_TRIES, PLAN_TIMEOUT_SECS
    from executor.local.runstart import CLAIM_TRIES
    from executor.mesos.process import ACK_WAIT_SECS
    from executor.mesos.recordio import MAX_RECORD_BYTES
    from executor.procs.runprune import KEEP_RUNS
    from executor.task import journal, replay
    from executor.task.checkpoint import COMPACT_MIN_BYTES, MAX_READ_BYTES
    from healthcheck.base import MAX_BODY_BYTES, QUOTE_CHARS, STALL_SECS

    reset = inspect.signature(service.ServiceRules).parameters["reset_after_secs"].default
    return [
        ("1", f"at most {MAX_GRACE_SECS / 86400:g} days, longer is a usage error"),
        ("3", f"up to {CLAIM_TRIES} times, then the run stops"),
        ("3", f"past {PICK_TRIES} numbers the kernel offers"),
        ("4", f"within {control.REQUEST_WAIT_SECS:g} s of being accepted"),
        ("4", f"at most {control.MAX_CONNECTIONS} connections are served at once"),
        ("4", f"tries again every {control.ACCEPT_PAUSE_SECS:g} s"),
        ("4", f"looks at {registry.PRUNE_LOOK} entries at most and reads {registry.PRUNE_BATCH}"),
        ("4", f"a `stoker run`'s last {entry.EARLIER_TASK_IDS} earlier attempts' ids"),
        ("4", f"its format's `version` ({entry.FORMAT})"),
        ("6", f"{ACK_WAIT_SECS:g} s subscribed"),
        ("7", f"Its code gets {PLAN_TIMEOUT_SECS:g} s"),
        ("7", f"still not planned {SLOW_SECS:g} s after its child started"),
        ("7", f"longer than {MAX_CONFIG_CHARS >> 20} Mi characters"),
        ("7", f"the next ones after {service.ZERO_BASE_NEXT_SECS:g} s"),
        ("7", f"sooner than {reset:g} s after becoming RUNNING"),
        ("8", f"at most {KEEP} are kept"),
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
    assert named <= _commands(), named - _commands()
    assert _commands() - named == set()
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
