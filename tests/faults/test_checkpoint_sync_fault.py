"""A compaction's rename that cannot be made durable, provoked for real: a `stoker run` whose
fsync of `.stoker` fails with EIO (an LD_PRELOAD library, `tests/support/failsync.py`), as a
disk's write error fails it, from the compaction at its first batch until the test clears
the fault (docs/contract.md §4, `checkpoint.jsonl`).

The supervisor says so once (`checkpoint_sync_failed`), holds the next records (one
`checkpoint_write_failed`) while the name cannot be made again and synced, and once it can,
writes them (`checkpoint_write_recovered`): every state change the run logged is in the file
once, in order, no stray `.compact` file is left, and `stoker status` reads the task: the
state last written while the fault holds, the attempt's end after it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor.task.checkpoint import CheckpointWriter
from tests.support.failsync import FailingSync
from tests.support.sandbox_runs import job_config, process
from tests.support.statuscli import GONE, header
from tests.support.stoker_proc import REPO, StokerProcess, checkpoint_records
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

KINDS = {"task_state": "task", "process_state": "process", "task_phase": "phase"}


def earlier_attempt(sandbox: Path) -> None:
    """An ended attempt whose checkpoint is past 64 KiB (the least a compaction waits for),
    left whole: the next attempt's first batch compacts it."""
    health = [{"kind": "health", "outcome": "passed", "reason": "", "latency_secs": 0.001, "state": "RUNNING",
               "attempts": n, "consecutive_failures": 0, "consecutive_successes": n, "wall": 1000.0 + n}
              for n in range(1, 400)]
    writer = CheckpointWriter(sandbox, compact_min_bytes=1 << 30)
    writer.append_many([header(GONE, 1),
                        {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1000.0},
                        *health, {"kind": "task", "from": "STARTING", "to": "KILLED", "reason": "killed", "wall": 1400.0}])
    writer.close()


def status(sandbox: Path) -> dict:
    said = subprocess.run([sys.executable, "-m", "executor", "status", "--json", str(sandbox)], cwd=REPO,
                          capture_output=True, text=True, timeout=20)
    assert said.returncode == 0, said.stdout + said.stderr
    return json.loads(said.stdout)


def test_records_held_after_a_compaction_s_failed_directory_sync_all_land_and_status_reads_them(tmp_path, figures):
    sandbox = tmp_path / "sb"
    earlier_attempt(sandbox)
    # the checkpoint's opening (the writer's first sync of `.stoker`) works; the compaction's fails
    fault = FailingSync(tmp_path, "/.stoker", after=1)
    fault.fail()
    config = job_config(tmp_path, "sync", process("while [ ! -e release ]; do sleep 0.01; done"))
    config.write_text(config.read_text().replace("Service(", "Job("))  # ends FINISHED, once
    started = time.monotonic()
    proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox), "--root", str(tmp_path / "root"),
                          "--log-format", "json", "--log-level", "INFO"], tmp_path, env=fault.env())
    try:
        wait_for(lambda: "checkpoint_write_failed" in proc.stderr() or proc.proc.poll() is not None, 10,
                 message="the records after the compaction, held")
        during = status(sandbox)
        failed = fault.recover()
        (sandbox / "release").touch()
        proc.exited(0)
    finally:
        proc.close()
    said = proc.events()
    names = [e["event"] for e in said]
    assert names.count("checkpoint_sync_failed") == 1, names
    assert names.count("checkpoint_write_failed") == 1 and names.count("checkpoint_write_recovered") == 1, names
    sync_failed = said[names.index("checkpoint_sync_failed")]
    assert sync_failed["level"] == "ERROR" and sync_failed["error"] == "Input/output error (EIO)", sync_failed
    recovered = said[names.index("checkpoint_write_recovered")]
    assert recovered["records_lost"] == 0, recovered
    assert "Traceback" not in proc.stderr(), proc.stderr()
    assert len(failed) >= 2 and set(failed) == {str(sandbox / ".stoker")}, failed  # the compaction's, a batch's
    # every state change the run logged, in the file once, in order, after the attempt's header
    records = checkpoint_records(sandbox)
    headers = [i for i, r in enumerate(records) if r["kind"] == "header"]
    ours = records[headers[-1]:]
    assert len(headers) == 2 and ours[0]["task"] == "sync.0", records
    logged = [(KINDS[e["event"]], e["from"], e["to"], e["reason"]) for e in said if e["event"] in KINDS]
    written = [(r["kind"], r["from"], r["to"], r["reason"]) for r in ours if r["kind"] in KINDS.values()]
    assert written == logged and len(logged) == 7, (written, logged)
    assert not (sandbox / ".stoker" / "checkpoint.jsonl.compact").exists()
    # `stoker status`: what was written while the fault held (the batch the compaction kept), then the end
    assert (during["task_id"], during["attempts"][-1]["state"]) == (ours[0]["task_id"], "STARTING"), during
    after = status(sandbox)
    last = after["attempts"][-1]
    assert (after["task_id"], len(after["attempts"]), last["state"]) == (ours[0]["task_id"], 2, "FINISHED"), after
    assert [(r["run"], r["state"]) for r in last["processes"][0]["runs"]] == [(0, "SUCCESS")], last
    figures.add("syncs of .stoker failed", len(failed))
    figures.add("records held, then written", recovered["records"])
    figures.add("run, fault to end (s)", f"{time.monotonic() - started:.2f}")
