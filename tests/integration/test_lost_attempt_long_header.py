"""A re-run in a sandbox whose lost attempt's header is past the readers' 1 MiB line cap (a
task of thousands of processes): `leftovers.end_lost_attempts` reads it when the re-run's own
job would write one as long, and ends what that attempt left running."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from executor.host.identity import own_identity
from executor.procs.spawn import TASK_MARKER
from executor.task.checkpoint import CheckpointWriter
from executor.task.leftovers import end_lost_attempts, header_bytes

pytestmark = pytest.mark.timeout(30)


def lost_sandbox(sandbox: Path, marker: str, processes: list[str]) -> None:
    """A checkpoint whose attempt of `processes` recorded RUNNING and whose supervisor is gone."""
    me = own_identity()
    writer = CheckpointWriter(sandbox)
    writer.append_many([
        {"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
         "sandbox": str(sandbox), "ports": {"http": 31000}, "supervisor_pid": me.pid,
         "supervisor_start": me.start_ticks + 100, "supervisor_boot": me.boot_id, "marker": marker,
         "processes": processes, "health": "none", "wall": 1000.0},
        {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": 1000.0},
        {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "started", "wall": 1001.0}])
    writer.close()


def test_a_lost_attempt_s_header_past_the_line_cap_is_read_by_a_rerun_of_its_job(tmp_path):
    """Was: the header of an attempt of 10,000 processes (1.2 MB) was skipped as any line past
    1 MiB, the attempt not seen, and what its SIGKILLed supervisor left ran on beside the
    re-run's processes (the same ports and files), unsaid. A line longer than the re-run's
    own job would write is still not read (a planted one costs no more memory)."""
    marker = f"l0ng{os.getpid()}{tmp_path.name}"
    names = [f"process-{number:05d}-{'n' * 100}" for number in range(10_000)]
    lost_sandbox(tmp_path, marker, names)
    assert (tmp_path / ".stoker" / "checkpoint.jsonl").stat().st_size > 1 << 20
    left = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], TASK_MARKER: marker})
    try:
        assert end_lost_attempts(tmp_path, header_bytes=header_bytes(names[:10], {"http": 31000})) == []
        (lost,) = end_lost_attempts(tmp_path, header_bytes=header_bytes(names, {"http": 31000}))
        assert lost.killed == (left.pid,)
        assert left.wait(10) == -9
    finally:
        left.kill()
        left.wait()
