"""One supervisor per sandbox, end to end: a second `stoker run` or `stoker executor` on a held
sandbox is refused, its `stoker kill` suggestion a shell word even for a name with a format
character, and a `.stoker` the task planted in place of its supervisor's is not trusted. The
`ops` fixture and the job helpers are tests/e2e/test_operations.py's."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_operations import ops, running, service  # noqa: F401  (its fixture `ops` too)
from tests.support.shellwords import fake_sh
from tests.support.stoker_proc import live

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("shell", ["/bin/sh", "bash"])
def test_the_kill_a_held_sandbox_s_refusal_suggests_names_a_sandbox_with_a_format_character(ops, tmp_path, shell):  # noqa: F811
    """The refusal's `stoker kill WORD` passes through the log's escaping (`stoker: error:`
    lines write a format character out, `\\u202e`): its shell word held the right-to-left
    override as it is, so the line read `stoker kill '.../sb\\u202ex'`, a sandbox that is not
    there. The word now writes it as printf's bytes, which a shell reads back."""
    job = service(tmp_path, f"exec {fake_sh()}")
    sandbox = tmp_path / "sb\u202ex"
    run = ops.run(job, "--sandbox", str(sandbox))
    running(run)
    second = ops.stoker("run", job, "--sandbox", sandbox)
    assert second.returncode == 2 and "\u202e" not in second.stderr
    word = second.stderr.split("(`stoker kill ", 1)[1].split("`)", 1)[0]
    read = subprocess.run([shell, "-c", f"printf %s {word}"], capture_output=True, timeout=10)
    assert read.stdout == os.fsencode(sandbox)


def test_a_second_supervisor_on_a_held_sandbox_is_refused(ops, tmp_path):  # noqa: F811
    job = service(tmp_path, f"exec {fake_sh()}")
    run = ops.run(job)
    running(run)
    second = ops.stoker("run", job, "--sandbox", run.sandbox)
    assert second.returncode == 2
    assert second.stderr == (f"stoker: error: sandbox '{run.sandbox}' is held by a live stoker run "
                             f"(pid {run.pid}, since {second.stderr.split('since ')[1].split(')')[0]}): "
                             f"one supervisor per sandbox; stop it first (`stoker kill {shlex.quote(str(run.sandbox))}`) "
                             f"or use another sandbox\n")
    agent_env = {"MESOS_SANDBOX": str(run.sandbox), "MESOS_AGENT_ENDPOINT": "127.0.0.1:9",
                 "MESOS_FRAMEWORK_ID": "fw", "MESOS_EXECUTOR_ID": "ex"}
    executor = ops.stoker("executor", env=agent_env)
    assert executor.returncode == 2 and "is held by a live stoker run" in executor.stderr
    assert [r["supervisor_pid"] for r in ops.ps()] == [run.pid]
    assert "Traceback" not in second.stderr + executor.stderr


PLANTED_SUPERVISOR = """
import json, os, socket, sys
os.chdir(sys.argv[1])  # a sandbox's path may be longer than a socket address
server = socket.socket(socket.AF_UNIX)
server.bind("control.sock")
server.listen()
fields = open(f"/proc/{os.getpid()}/stat").read().rpartition(")")[2].split()
boot = open("/proc/sys/kernel/random/boot_id").read().strip()
with open("supervisor.lock", "w") as lock:
    json.dump({"pid": os.getpid(), "start": int(fields[19]), "boot": boot, "front_end": "run", "since": 1.0}, lock)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.recv(4096)
    conn.sendall(b'{"ok": true, "done": true, "message": "task KILLED (planted)"}\\n')
    conn.close()
"""


def test_a_stoker_dir_the_task_planted_is_not_trusted(ops, tmp_path):  # noqa: F811
    # A task that owns its sandbox (Mesos, run as its role) may rename .stoker and plant its
    # own: a lock naming a process of its own, a socket that answers "KILLED". The registry
    # (which the task cannot write) pins the real one; kill, status and ps trust no other.
    run = ops.run(service(tmp_path, f"exec {fake_sh()}"))
    running(run)
    (row,) = ops.ps()
    real, planted = run.sandbox / ".stoker", run.sandbox / ".stoker-planted"
    planted.mkdir()
    (planted / "checkpoint.jsonl").write_bytes((real / "checkpoint.jsonl").read_bytes())
    fake = subprocess.Popen([sys.executable, "-c", PLANTED_SUPERVISOR, str(planted)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert fake.stdout.readline() == "ready\n"
        real.rename(run.sandbox / ".stoker-real")
        planted.rename(real)
        for target in (row["task_id"], run.sandbox):
            done = ops.stoker("kill", target)
            assert done.returncode == 1, (done.stdout, done.stderr)
            assert "is not the directory its supervisor made" in done.stderr
            assert "planted" not in done.stdout + done.stderr
        status = ops.stoker("status", row["task_id"])
        assert "is not the directory its supervisor made" in status.stdout + status.stderr
        # An entry from before .stoker was pinned: the lock's holder must still be the
        # supervisor the registry names.
        (entry_file,) = Path(ops.env["STOKER_ROOT"]).glob(f"{run.pid}-*.json")
        doc = json.loads(entry_file.read_text())
        entry_file.write_text(json.dumps(dict(doc, stoker_dir="")))
        done = ops.stoker("kill", row["task_id"])
        assert done.returncode == 1 and f"names pid {fake.pid}, not the supervisor the host registry names " \
                                        f"(pid {run.pid})" in done.stderr, done.stderr
        entry_file.write_text(json.dumps(doc))
    finally:
        fake.kill()
        fake.wait()
        if (run.sandbox / ".stoker-real").exists():
            real.rename(planted)
            (run.sandbox / ".stoker-real").rename(real)
    assert live({run.pid})  # nothing above reached the real supervisor
    done = ops.stoker("kill", row["task_id"], "--grace", "2")  # the real one answers again
    assert done.returncode == 0, done.stderr
    assert run.wait(30) == 0
