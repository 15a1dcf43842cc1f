"""A forked copy of a test process that finds its way back into pytest ends there, named.

A test (or the code it runs in-process) that forks a child which is meant to end with
`os._exit` but instead raises or returns goes on as a second copy of the test process: it
reports the test as if it were the original, runs the test's teardown (killing what the
original still uses), and under pytest-xdist reads and writes the worker's channel to the
controller. One such copy ended a CI run: the controller heard a worker say it had finished
while it still held tests (`INTERNALERROR> assert not crashitem`), and 35 tests never ran.

The first hook such a copy reaches (the report of the phase it escaped from, or of a
collection) sees a process id that is not the one whose session it is (the one that
configured it: a child that begins a session of its own, as mutmut's do, is not escaped): it writes
the test, the phase and the exception that let it out to stderr and ends with exit status
70, before it reports, tears down or talks to anyone. The original goes on untouched: the
exit is the child's, and a test that waits for its child sees status 70.

Loaded by `tests/conftest.py`; a pytest run of files outside `tests/` loads it with
`-p tests.support.forkguard`.
"""
from __future__ import annotations

import os
import traceback

import pytest

ESCAPED_EXIT = 70  # EX_SOFTWARE
_OURS = os.getpid()  # the process whose session this is: set again as each session begins


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A session begun in a forked child is that child's own: mutmut forks one per mutant,
    which runs `pytest.main` anew (a new configuration), not the parent's session."""
    global _OURS
    _OURS = os.getpid()


def _end_if_escaped(where: str, error: BaseException | None) -> None:
    if os.getpid() == _OURS:
        return
    told = "(no exception: it returned)\n"
    if error is not None:  # the frames nearest the raise: the test's or the code it ran, not pytest's
        made = traceback.TracebackException.from_exception(error)
        made.stack = traceback.StackSummary.from_list(made.stack[-4:])
        told = "".join(made.format())
    os.write(2, (f"\nforkguard: {where}: a forked child (pid {os.getpid()}) of the test process (pid {_OURS}) "
                 f"came back into pytest; it ends here (exit {ESCAPED_EXIT}). It got out by:\n{told}").encode())
    os._exit(ESCAPED_EXIT)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    _end_if_escaped(f"{item.nodeid} ({call.when})", call.excinfo.value if call.excinfo else None)


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    _end_if_escaped(f"collecting {report.nodeid or 'the session'}", None)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _end_if_escaped("the session's end", None)
