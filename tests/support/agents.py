"""An agent simulator with a sandbox of its own, cleaned up after: the shape of every tier's
`agent` (or `sim`) fixture (tests/conftest.py, tests/faults/conftest.py, and the modules
whose agent differs: a token, a log to print rather than check)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.agent_sim import AgentSimulator
from tests.support.stoker_proc import kill_leftovers, task_pids


@contextlib.contextmanager
def sandboxed_agent(tmp_path: Path, *, check_log: bool = True, **kwargs: Any) -> Iterator[AgentSimulator]:
    """An AgentSimulator (`kwargs`: its own, `auth_token=...`) with the fresh sandbox
    TMP/sandbox. Afterwards, failed or not, it is closed and every process its task left is
    killed; then (`check_log`) the executor's log must hold no traceback."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    sim = AgentSimulator(sandbox=sandbox, **kwargs)
    try:
        yield sim
    finally:
        sim.close()
        kill_leftovers(task_pids(sandbox))
    if check_log:
        assert "Traceback" not in sim.executor_log(), sim.executor_log()[-3000:]
