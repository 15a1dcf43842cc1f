"""`ExitStatus`: a run's wait status decoded (real children's, from `os.waitpid`), the one
rule of its fields, and its words."""
from __future__ import annotations

import os
import signal

import pytest

from executor.events import ExitStatus


def _wait_status(script: str) -> int:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", script], os.environ)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize(("script", "expected"), [
    ("exit 0", ExitStatus(exit_code=0)),
    ("exit 3", ExitStatus(exit_code=3)),
    ("exit 255", ExitStatus(exit_code=255)),
    ("kill -TERM $$", ExitStatus(signal=signal.SIGTERM)),
    ("kill -KILL $$", ExitStatus(signal=signal.SIGKILL)),
])
def test_a_wait_status_is_decoded_to_the_code_or_the_signal(script, expected):
    status = ExitStatus.from_wait_status(_wait_status(script))
    assert status == expected
    assert status.success is (expected.exit_code == 0)


@pytest.mark.parametrize("fields", [{}, {"exit_code": 1, "signal": 9}, {"killer": "someone"}])
def test_exactly_one_of_the_code_and_the_signal_or_it_says_so(fields):
    with pytest.raises(ValueError) as raised:
        ExitStatus(**fields)
    assert str(raised.value) == "ExitStatus needs exactly one of exit_code and signal"


@pytest.mark.parametrize(("status", "words"), [
    (ExitStatus(exit_code=0), "exit status 0"),
    (ExitStatus(exit_code=7), "exit status 7"),
    (ExitStatus(signal=signal.SIGKILL), "killed by SIGKILL"),
    (ExitStatus(signal=signal.SIGKILL, killer="the kernel's OOM killer"), "killed by the kernel's OOM killer"),
])
def test_the_words_name_the_code_the_signal_or_who_sent_it(status, words):
    assert status.describe() == words
