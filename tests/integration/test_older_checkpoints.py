"""Checkpoints older Stokers wrote, read by this one (`stoker status`, `ps`'s row): a host
upgraded while tasks ran, or a sandbox kept from before. Each file under
`older_checkpoints/` is a real task's checkpoint as that Stoker wrote it (the date in its
name is its version's), but for its sandbox's path (`/sandbox`) and its supervisor's boot
(another boot's: its supervisor is gone), without the fields added since (`run_uid`,
`ends_as`, the header's `cgroup`; the 2026-11-29 ones without the boot clock's moments or
`restart` records). Each must read as what it recorded, never a traceback nor a problem."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.statuscli import status

pytestmark = pytest.mark.timeout(30)

OLDER = Path(__file__).parent / "older_checkpoints"


# each process's state and runs in the last attempt, and the restart its last record set (none: None)
@pytest.mark.parametrize("name, state, attempts, processes, restart_delay", [
    ("2026-11-29-finished", "FINISHED", 1, {"p": ("SUCCESS", 1)}, None),
    ("2026-11-29-health-failed-attempts-killed", "KILLED", 4, {"f": ("KILLED", 1), "s": ("KILLED", 1)}, None),
    ("2026-11-29-process-restarted-killed", "KILLED", 1, {"s": ("KILLED", 2)}, None),  # run 0 restarted
    ("2026-11-30-lost", "LOST", 1, {"s": ("RUNNING", 1)}, None),  # (its runs as recorded: LOST in the text)
    ("2026-11-30-service-stopped-between-attempts", "FAILED", 4, {"f": ("KILLED", 2), "s": ("KILLED", 1)}, 8.0),
])
def test_an_older_stokers_checkpoint_reads_as_it_recorded(tmp_path, capsys, monkeypatch, name, state, attempts,
                                                          processes, restart_delay):
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))  # no registry entry: the sandbox alone
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    os.mkdir(sandbox / ".stoker", 0o700)
    (sandbox / ".stoker" / "checkpoint.jsonl").write_bytes((OLDER / f"{name}.jsonl").read_bytes())
    code, out, err = status(capsys, sandbox, "--json")
    assert (code, err) == (0, ""), err
    view = json.loads(out)
    assert (view["state"], view.get("problem"), len(view["attempts"])) == (state, None, attempts), view
    last = view["attempts"][-1]
    assert {p["name"]: (p["state"], len(p["runs"])) for p in last["processes"]} == processes
    assert (last["restart"] or {}).get("delay_secs") == restart_delay, last["restart"]
    assert view["restart"] is None  # its supervisor is gone: no attempt is due
    assert view["task_uid_source"] == "sandbox_owner"  # no `run_uid` in an older header
    code, out, err = status(capsys, sandbox)
    assert code == 0 and err == "" and f"state={state}" in out.splitlines()[0], out + err
