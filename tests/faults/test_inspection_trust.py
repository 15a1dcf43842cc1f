"""Fault 16.6: read-only inspection does not trust the sandbox.

A task owns its sandbox and may plant anything in it. `stoker status`, `stoker tail` and
`stoker ps` must never read outside it (a `.logs/p/0/stdout -> /etc/shadow` symlink prints
nothing), never block (a FIFO where the checkpoint or a log should be is refused at once),
and never use unbounded memory (`.stoker/checkpoint.jsonl -> /dev/zero`, or a huge file
without a newline, costs a capped read). Each command runs as the real CLI, in a child
limited to 1 GiB of address space, so a read that followed /dev/zero would die of it.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

LIMIT_BYTES = 1 << 30
WITHIN_SECS = 20.0


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def stoker(*args, env=None) -> tuple[subprocess.CompletedProcess, float]:
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "executor", *map(str, args)], capture_output=True,
                          timeout=WITHIN_SECS * 3, env=full, preexec_fn=_limit)
    return done, time.monotonic() - started


def sandbox_with(tmp_path: Path, plant) -> Path:
    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True)
    plant(sandbox / ".stoker" / "checkpoint.jsonl")
    return sandbox


def huge_without_newline(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(2 * 1024 * 1024 * 1024)  # 2 GiB, sparse: zeros and no newline


PLANTS = {
    "a symlink to /dev/zero": (lambda p: os.symlink("/dev/zero", p), "is a symlink"),
    "a symlink to a file outside": (lambda p: os.symlink("/etc/passwd", p), "is a symlink"),
    "a FIFO": (os.mkfifo, "is a FIFO, not a regular file"),
    "a 2 GiB file without a newline": (huge_without_newline, "holds no record"),
}


@pytest.mark.parametrize("what, plant, said", [(k, *v) for k, v in PLANTS.items()], ids=PLANTS)
def test_status_of_a_planted_checkpoint_is_an_error_at_once(tmp_path, figures, what, plant, said):
    sandbox = sandbox_with(tmp_path, plant)
    done, took = stoker("status", sandbox)
    err = done.stderr.decode()
    assert done.returncode == 1 and said in err and "Traceback" not in err, err
    assert done.stdout == b""
    assert took < WITHIN_SECS
    figures.add(f"status of a checkpoint that is {what}", f"exit 1 in {took * 1000:.0f} ms "
                                                          f"(process start included): {said}")


def test_a_symlinked_stoker_directory_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    (outside / ".stoker").mkdir(parents=True)
    (outside / ".stoker" / "checkpoint.jsonl").write_text('{"kind": "header", "task": "secret.0"}\n')
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    os.symlink(outside / ".stoker", sandbox / ".stoker")
    done, _ = stoker("status", sandbox, "--json")
    assert done.returncode == 1 and b"secret" not in done.stdout
    assert b".stoker: it is a symlink, not a directory" in done.stderr


@pytest.mark.parametrize("target", ["/etc/shadow", "/etc/passwd"])
def test_tail_never_prints_a_file_a_symlink_points_to(tmp_path, figures, target):
    if not os.path.exists(target):
        pytest.skip(f"{target} does not exist here")
    (tmp_path / ".logs" / "p" / "0").mkdir(parents=True)
    os.symlink(target, tmp_path / ".logs" / "p" / "0" / "stdout")
    done, took = stoker("tail", tmp_path, "p", "-n", "5")
    assert done.returncode == 1 and done.stdout == b""
    assert b"stdout: it is a symlink, not a regular file" in done.stderr
    figures.add(f"tail of stdout -> {target}", f"exit 1 in {took * 1000:.0f} ms, nothing printed")


def test_tail_of_a_fifo_and_ps_of_a_planted_sandbox_never_hang(tmp_path):
    (tmp_path / ".logs" / "p" / "0").mkdir(parents=True)
    os.mkfifo(tmp_path / ".logs" / "p" / "0" / "stdout")
    done, took = stoker("tail", "-f", tmp_path, "p")
    assert done.returncode == 1 and b"is a FIFO" in done.stderr and took < WITHIN_SECS
    root = tmp_path / "registry"
    root.mkdir(mode=0o700)
    sandbox = sandbox_with(tmp_path / "task", os.mkfifo)
    entry = {"version": 1, "sandbox": str(sandbox), "supervisor_pid": 1, "supervisor_start": 1,
             "supervisor_boot": "gone", "front_end": "run", "registered": time.time(),
             "task_id": "planted", "job_key": "", "label": "", "marker": "", "ended": None}
    (root / "1-1.json").write_text(json.dumps(entry))
    done, took = stoker("ps", "--json", env={"STOKER_ROOT": str(root)})
    assert done.returncode == 0 and took < WITHIN_SECS, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["state"] == "LOST" and "is a FIFO" in row["problem"]
