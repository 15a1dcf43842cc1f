"""The fault suite's figures: each test reports its measured numbers, printed in one block.

Owns the `figures` fixture every fault test reports through, and the `pytest_terminal_summary`
hook that prints all of them in one block after the run (naming the short or full sizes, see
`tests/support/fault_sizes.py`), so the figures show even when output is captured; and `sim`,
an agent simulator on its own sandbox, closed (its executor killed with its process group)
and the sandbox's task processes killed after the test, the executor's log printed last.
"""
from __future__ import annotations

import pytest

from tests.support.agents import sandboxed_agent
from tests.support.fault_sizes import FULL
from tests.support.sandbox_runs import Runs

_FIGURES = pytest.StashKey[list]()


class Figures:
    """Collects one test's figures: `figures.add("restarts", 8)`; each is printed at once
    (visible with -s) and again in the end-of-run block."""

    def __init__(self, store: list, test: str) -> None:
        self._store = store
        self._test = test

    def add(self, name: str, value: object) -> None:
        line = f"{name}: {value}"
        print(f"[figure] {self._test}: {line}")
        self._store.append((self._test, line))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    name = request.node.nodeid.split("::", 1)[-1]
    return Figures(request.config.stash.setdefault(_FIGURES, []), name)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    store = config.stash.get(_FIGURES, [])
    if not store:
        return
    mode = "full (STOKER_FAULTS_FULL=1)" if FULL else "short"
    terminalreporter.section(f"stoker fault suite figures, {mode} sizes")
    current = None
    for test, line in store:
        if test != current:
            terminalreporter.write_line(test)
            current = test
        terminalreporter.write_line(f"    {line}")

@pytest.fixture
def sim(tmp_path):
    """`agent`'s shape (tests/support/agents.py), its log printed rather than checked."""
    with sandboxed_agent(tmp_path, check_log=False) as agent:
        yield agent
    print("---- executor log ----\n" + agent.executor_log()[-4000:])


@pytest.fixture
def runs(tmp_path):
    """`stoker run`s in sandboxes under tmp_path (the sandbox-files tests), each stopped
    and its processes killed at the end."""
    r = Runs(tmp_path)
    yield r
    r.close()
