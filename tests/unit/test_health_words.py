"""`healthcheck.base`'s words in a health attempt's reason: seconds, an answer quoted at its
head or a command's output at its tail (each on one line, marked when cut), a signal's name,
and a check that could not start a thread or open a descriptor, as one failed attempt and one
WARNING line (`tests/faults/test_audit_limits_fds.py` runs the descriptor cases too)."""
from __future__ import annotations

import logging

from healthcheck.base import quote, secs, signal_name, tail_quote
from healthcheck.shell import CommandResult, ShellChecker


def test_seconds_have_at_most_three_decimals():
    assert [secs(v) for v in (1, 0.25, 1.0005, 2.0004, 1 / 3)] == ["1.0", "0.25", "1.0", "2.0", "0.333"]


def test_a_head_quote_is_one_line_escaped_and_says_how_much_it_left_out():
    assert quote("a\\b\r\nc") == "a\\\\b\\r\\nc"
    assert quote("x" * 10, limit=10) == "x" * 10  # exactly the limit: whole
    assert quote("x" * 13, limit=10) == "x" * 10 + "... (3 more characters)"


def test_a_tail_quote_is_the_output_s_last_characters_on_one_line():
    assert tail_quote("  \n ") == "(no output)"
    assert tail_quote(" a\r\nb \n") == "a\\r\\nb"  # stripped first, then escaped
    assert tail_quote("y" * 10, limit=10) == "y" * 10
    assert tail_quote("head" + "y" * 10, limit=10) == "..." + "y" * 10


def test_a_signal_s_name_or_its_number():
    assert (signal_name(15), signal_name(9), signal_name(77)) == ("SIGTERM", "SIGKILL", "signal 77")


def shell_check(raised: BaseException, caplog) -> tuple[str, list]:
    def run(command: str, timeout_secs: float) -> CommandResult:
        raise raised

    with caplog.at_level(logging.INFO, logger="healthcheck"):
        attempt = ShellChecker("x", 1.0, run).check()
    assert attempt.outcome.value == "failed"
    return attempt.reason, [(r.levelname, r.exc_info, r.getMessage()) for r in caplog.records]


def test_a_check_with_no_thread_to_be_had_fails_with_one_warning(caplog):
    reason, lines = shell_check(RuntimeError("can't start new thread"), caplog)
    assert reason == ("internal health check error: no thread could be started for the check (the task's "
                      "process limit is reached)")
    assert lines == [("WARNING", None, 'health_check_internal_error check="shell: x" '
                                       'error="RuntimeError: can\'t start new thread"')]


def test_another_runtime_error_is_a_bug_s_with_its_traceback(caplog):
    reason, [(level, exc_info, _)] = shell_check(RuntimeError("another"), caplog)
    assert reason == "internal health check error: RuntimeError: another"
    assert level == "ERROR" and exc_info is not None
