"""Fault 5c, nesting: what a task nests too deeply in its sandbox stops nothing.

`json.loads` raises RecursionError, not ValueError, for a document nested deeper than the
interpreter's recursion limit (about 1,000 levels: `[[[[...`). Every reader of a file a
task can write or plant took only ValueError for "not JSON", so one such line crashed the
supervisor (its checkpoint's first compaction reads the file back) and sent `stoker
status`, `stoker ps`, `stoker kill` and the observer's task page down with a traceback.
`shutil.rmtree` recurses once per directory level in the same way.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from executor.task.checkpoint import read_records
from tests.support.sandbox_runs import (
    STOP_SECS,
    eventually,
    job_config,
    left_in,
    process,
    stop_secs,
)
from tests.support.stoker_proc import REPO

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


DEEP = "[" * 5000  # fits the lock's and the control socket's 4 KiB too (4,000 of it)


def _stoker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    full_env.update(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True,
                          text=True, env=full_env, timeout=30)


def _ask_raw(sandbox: Path, line: bytes) -> bytes:
    """What the control socket answers one raw request line with (until it closes)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(sandbox / ".stoker/control.sock"))
        sock.sendall(line)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def test_a_deeply_nested_line_in_the_checkpoint_or_on_the_control_socket_stops_nothing(runs, tmp_path, figures):
    """Run 0 appends 70,000 `[` to the checkpoint and fails: the supervisor's next write
    passes 64 KiB and compacts, reading the line back. Run 1 must start, `stoker status` and
    `stoker ps` must answer, a request nested as deep on the control socket must be refused,
    and `stoker kill` must still work through it."""
    sandbox = tmp_path / "sandbox"
    cmdline = ("echo $$ >> pids; if [ ! -e planted ]; then "
               "(head -c 70000 /dev/zero | tr '\\0' '['; echo) >> .stoker/checkpoint.jsonl; "
               "touch planted; exit 1; fi; echo $$ > sleeper.pid; exec sleep 1000")
    run = runs.start(job_config(tmp_path, "deep", process(cmdline, max_failures=5, min_duration=0)), sandbox)
    # Run 1's start is in the checkpoint: the write that compacted went through.
    supervised = eventually(lambda: any(r.get("kind") == "process" and r.get("run") == 1
                                         and r.get("to") == "RUNNING" for r in read_records(sandbox)), 10)
    runs.remember_marker(sandbox)
    assert supervised, f"run 1's start never reached the checkpoint\n{run.stdout()}\n{run.stderr()}"
    status = _stoker("status", str(sandbox))
    ps = _stoker("ps")
    refused = _ask_raw(sandbox, DEEP[:4000].encode() + b"\n")
    killed = _stoker("kill", str(sandbox), "--grace", "1")
    figures.add("supervisors, status, ps and control servers a nested line stopped", 0)
    assert "Traceback" not in run.stderr(), run.stderr()[-3000:]
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr[-3000:]
    assert "state=RUNNING" in status.stdout, status.stdout
    compacted = (sandbox / ".stoker/checkpoint.jsonl").stat().st_size
    assert compacted < 70000, f"no compaction read the line back ({compacted} bytes)"
    assert ps.returncode == 0 and "Traceback" not in ps.stderr, ps.stderr[-3000:]
    assert b'"ok": false' in refused and b"JSON object" in refused, refused
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert run.wait(STOP_SECS) is not None
    assert not left_in(sandbox)



def test_a_checkpoint_grown_by_a_line_without_end_does_not_stall_the_supervisor(runs, tmp_path, figures):
    """Run 0 makes its checkpoint 1 TiB longer (`truncate`: zeros, no newline, no disk) and
    fails. The first compaction reads the file back, on the owner's thread: it joined the
    unfinished line's blocks one by one, each copy longer than the last (16 MiB took 2 s,
    all of it in memory). Run 1 must start and be recorded, and SIGTERM work."""
    sandbox = tmp_path / "sandbox"
    checkpoint = sandbox / ".stoker/checkpoint.jsonl"
    cmdline = ("echo $$ >> pids; if [ ! -e planted ]; then truncate -s +1T .stoker/checkpoint.jsonl; "
               "touch planted; exit 1; fi; echo $$ > sleeper.pid; exec sleep 1000")
    run = runs.start(job_config(tmp_path, "long", process(cmdline, max_failures=5, min_duration=0)), sandbox)
    run.wait_output("p[1]             WAITING → RUNNING", 10)
    started = time.monotonic()
    compacted = eventually(lambda: checkpoint.stat().st_size < 1 << 20, 10)
    figures.add("a 1 TiB sparse line in the checkpoint → compacted (ms)",
                round((time.monotonic() - started) * 1000))
    runs.remember_marker(sandbox)
    secs = stop_secs(run, signal.SIGTERM)
    assert compacted, f"the checkpoint was never compacted\n{run.stdout()}\n{run.stderr()}"
    assert secs < STOP_SECS
    records = read_records(sandbox)
    assert any(r.get("kind") == "process" and r.get("run") == 1 and r.get("to") == "RUNNING"
               for r in records), records
    assert not left_in(sandbox)

def test_deeply_nested_json_planted_in_a_sandbox_or_the_registry_is_reported(tmp_path, figures):
    """`.stoker/task.json` (the observer's task page), `.stoker/supervisor.lock` (`stoker
    kill`) and a registry entry (`stoker ps`), each planted as nested JSON."""
    from executor.task.definition import read_definition

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker/task.json").write_text('{"x": ' + DEEP + "]" * len(DEEP) + "}")  # JSON, to 3.13's parser
    (sandbox / ".stoker/supervisor.lock").write_text(DEEP[:4000])
    root = tmp_path / "registry"
    root.mkdir(mode=0o700)
    (root / "4242-1.json").write_text(DEEP)
    definition, problem = read_definition(sandbox)
    killed = _stoker("kill", str(sandbox))
    ps = _stoker("ps", "--all", env={"STOKER_ROOT": str(root)})
    figures.add("planted nested JSON files that raised", 0)
    assert definition is None and "task.json is nested deeper than 100 levels" in problem, problem
    assert killed.returncode != 0 and "Traceback" not in killed.stderr, killed.stderr[-3000:]
    assert killed.stderr.startswith("stoker: error: no live supervisor holds"), killed.stderr
    assert ps.returncode == 0 and "Traceback" not in ps.stderr, ps.stderr[-3000:]


def test_an_early_start_given_up_survives_a_sandbox_nested_deeper_than_rmtree_recurses(tmp_path):
    """An early start given up removes the sandbox it made, with whatever its runs put there;
    `shutil.rmtree` recurses once per level, and its `ignore_errors` covers OSError only: a
    run's `mkdir -p a/a/a/...` 1,200 levels deep made `stoker run` die with a RecursionError.
    In a child process (`abandon` kills and reaps every child of the process it runs in),
    whose recursion limit of 100 makes 300 levels as deep as 1,200 are under the default
    (making 1,200 directories here costs a second)."""
    sandbox = tmp_path / "sandbox"
    code = textwrap.dedent(f"""
        import os, sys
        from executor.host.early import EarlyStart
        os.mkdir({str(sandbox)!r})
        fd = os.open({str(sandbox)!r}, os.O_RDONLY)
        for _ in range(300):
            os.mkdir("a", dir_fd=fd)
            fd, old = os.open("a", os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        early = EarlyStart(entry="none", sandbox={str(sandbox)!r}, lease_fd=-1, task_id="t", marker="m")
        sys.setrecursionlimit(100)
        early.abandon()
        print("given up")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (done.returncode, done.stdout) == (0, "given up\n"), done.stderr[-2000:]

