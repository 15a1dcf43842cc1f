"""Stoker when the machine runs out of disk, inodes or descriptors (threads are in
test_audit_limits_threads.py).

Each test makes the shortage for real, on something of its own (a small tmpfs, unmounted
after; a resource limit in a child process), and checks what an operator needs: the
supervision goes on, no checkpoint record is lost, one log line names what failed.

- A checkpoint write that fails on a full disk used to lose its records for good (one ERROR
  line per step, and the step's records dropped): `stoker status` showed the task as it
  was before the disk filled. The writer now cuts a failed write back off the file, and the
  journal holds the records and writes them again at each step until a write works.
- A host-registry entry (or a plan-cache file) whose write failed on a full disk left its
  temporary file behind, holding what was written of it; it is now removed.
- A rotating log whose new file could not be made at a rotation (no inode or descriptor
  left) stayed dead for the rest of its run, its output dropped, even once there was room
  again (every later write failed on the closed file); it now resumes at the next write that
  works, with one WARNING saying how many bytes were dropped.
- The control socket when its supervisor has no descriptor left (EMFILE): one failed accept
  ended its thread for good, and every later `stoker kill` or `restart` heard that the
  supervisor "does not answer (it is gone)". The client now waits in the backlog and is
  answered once a descriptor is free again.
- Stoker's own log (under Mesos, SANDBOX/stderr) on a full disk: the first line that did not
  fit silenced it for the rest of the process, as a closed pipe does; now only the lines
  that did not fit are lost, and the next one written says how many. So for `stoker run`'s
  console (`stoker run > FILE`), which stopped printing for good."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from config.registry import RegistrySettings
from executor.events import TaskStage, TaskTransition
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.local.console import Output
from executor.procs.logpump import LogFile, LogPump, make_pipe
from executor.spool import Spool
from executor.task.checkpoint import CheckpointWriter, checkpoint_path, read_records
from executor.task.journal import Journal
from tests.support.journalsteps import HEADER, start_run
from tests.support.limits import KEEP_LOG_LINES, fill, fill_inodes, tmpfs
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_checkpoint_records_written_while_the_disk_is_full_are_kept_until_it_is_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        sandbox = fs / "sandbox"
        journal = Journal("web.0", wall_clock=lambda: 1_700_000_000.0)
        journal.open(CheckpointWriter(sandbox, label="web.0"), HEADER)
        journal.transition(TaskTransition(TaskStage.NEW, TaskStage.STARTING, "launched"))
        journal.flush()
        filler = fill(fs)
        caplog.set_level(logging.INFO, logger="executor.task.journal")
        run = 0
        while not _errors(caplog) and run < 200:
            start_run(journal, run)  # until a step's write crosses into a page the disk cannot give
            journal.flush()
            run += 1
        assert _errors(caplog), "the checkpoint never filled the disk"
        start_run(journal, run)  # a change while the disk is still full
        journal.flush()
        assert checkpoint_path(sandbox).read_bytes().endswith(b"\n"), "a torn line was left"
        filler.unlink()
        start_run(journal, run + 1)
        journal.flush()  # the disk has room again: everything held lands, in order
        journal.close()
        pids = [r["pid"] for r in read_records(sandbox) if r.get("kind") == "process"]
    assert pids == [1000 + n for n in range(run + 2)], pids
    failed = _errors(caplog)  # one line when it starts, naming why; none per step after it
    assert len(failed) == 1 and "checkpoint_write_failed" in failed[0] and "ENOSPC" in failed[0], failed
    assert "checkpoint_write_recovered" in caplog.text, caplog.text


def test_a_registry_entry_that_cannot_be_written_leaves_no_temporary_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        reg = Registry(RegistrySettings(registry_root=str(fs / "root")))
        me = own_identity()
        first = RegistryEntry(sandbox="/sb", supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                              supervisor_boot=me.boot_id, front_end=FrontEnd.RUN,
                              registered_wall=1_700_000_000.0, task_id="t-1")
        assert reg.write(first)
        filler = fill(fs)
        assert not reg.write(attrs.evolve(first, task_id="t-2"), prune=False)  # the disk is full
        left = sorted(os.listdir(fs / "root"))
        filler.unlink()
        entries = [item.entry.task_id for item in reg.entries()]
    assert left == [first.name], f"a temporary file stayed beside the entry: {left}"
    assert entries == ["t-1"]  # the old entry, whole
    assert "ENOSPC" in caplog.text and "cannot register task" in caplog.text, caplog.text


def test_a_rotating_log_whose_new_file_could_not_be_made_resumes_once_it_can(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="executor.procs.logpump")
    with tmpfs(tmp_path / "fs", inodes=16) as fs:
        run_dir = fs / "run"
        run_dir.mkdir()
        dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        pump = LogPump("web.0")
        read_fd, write_fd = make_pipe()
        try:
            pump.add(read_fd, LogFile(dir_fd, "stdout", run_dir / "stdout", max_bytes=100, backups=2),
                     None, "task=web.0 process=web run=0 stream=stdout")
            os.write(write_fd, b"a" * 99 + b"\n")
            wait_for(lambda: (run_dir / "stdout").stat().st_size == 100, 5)
            spare = fill_inodes(fs)[-1]  # the rotation's new `stdout` cannot be made
            os.write(write_fd, b"lost\n")
            wait_for(lambda: "log_write_failed" in caplog.text, 5)
            spare.unlink()
            os.write(write_fd, b"after\n")
            wait_for(lambda: (run_dir / "stdout").exists()
                     and (run_dir / "stdout").read_bytes() == b"after\n", 5, message="resumed")
        finally:
            os.close(write_fd)
            pump.stop(drain_secs=1.0)
            os.close(dir_fd)
        rotated = (run_dir / "stdout.1").read_bytes()
    assert rotated == b"a" * 99 + b"\n"
    assert 'error="No space left on device (ENOSPC)"' in caplog.text, caplog.text
    assert "log_write_recovered" in caplog.text and "dropped_bytes=5" in caplog.text, caplog.text


# A child process with a control server on argv[1] (a `.stoker`) answering every request
# "answered", and the log lines it writes kept in `lines` (the two control tests below).
CONTROL_PRELUDE = r"""
import json, logging, os, resource, socket, sys, time
sys.path.insert(0, sys.argv[2])
from executor.events import ControlReply
from executor.host.control import ControlServer
from executor.host.controlclient import ask
from executor.host.controlwire import KillControl

""" + KEEP_LOG_LINES + r"""
stoker_dir = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
server = ControlServer(stoker_dir, lambda request, reply: reply(ControlReply(ok=True, done=True,
                                                                            message="answered")))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

def logged_once_limit_back():
    # The server's control_ lines, once one came (at most 5 s), with the limit put back.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("control_" in line for line in lines):
        time.sleep(0.01)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return [line for line in lines if "control_" in line]

def report(out):
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(json.dumps(out), flush=True)
    server.close()
"""


# The control socket when its supervisor has no descriptor left: before, one accept that
# failed with EMFILE ended the control thread for good (`control_failed`), and every later
# `stoker kill` or `stoker restart` was told the supervisor "does not answer (it is gone)".
# Now the client waits in the backlog and is answered once a descriptor is free again.
CONTROL_CHILD = CONTROL_PRELUDE + r"""
server.start()
out = {}
try:  # a first request, answered and closed on both sides: the server's loop is up, and
    # no descriptor below the limit set next frees up later
    first = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    first.connect(f"/proc/self/fd/{stoker_dir}/control.sock")
    out["first"] = [reply.message for reply in ask(first, KillControl(grace_secs=None))]  # serving
    first.close()
    def sockets():
        return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
                   for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))
    deadline = time.monotonic() + 5
    while sockets() > 1 and time.monotonic() < deadline:  # the server closed its side too
        time.sleep(0.01)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lowest = os.dup(0)  # the lowest free descriptor
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))  # no descriptor left
    sock.connect(f"/proc/self/fd/{stoker_dir}/control.sock")  # waits in the backlog
    out["log"] = logged_once_limit_back()
    sock.settimeout(5)
    out["replies"] = [reply.message for reply in ask(sock, KillControl(grace_secs=None))]
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
finally:
    report(out)
"""


def control_child(script: str, tmp_path: Path) -> tuple[dict, str]:
    """What a control server's child (CONTROL_PRELUDE's) reported, and its stderr; it must exit 0."""
    (tmp_path / ".stoker").mkdir()
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / ".stoker"), str(REPO)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_the_control_socket_answers_once_a_descriptor_is_free_again(tmp_path: Path) -> None:
    out, _ = control_child(CONTROL_CHILD, tmp_path)
    assert out.get("first") == ["answered"] and out.get("replies") == ["answered"], out
    assert len(out["log"]) == 1 and "control_accept_failed" in out["log"][0], out
    assert "EMFILE" in out["log"][0], out


# The control server with no descriptor left for its selector (EMFILE as its thread starts):
# before, its thread died ("Exception in thread control" and a traceback on stderr) and the
# task had no control socket for the rest of its run; now one WARNING line, and it tries
# again every ACCEPT_PAUSE_SECS until it can serve.
SELECTOR_CHILD = CONTROL_PRELUDE + r"""
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lowest = os.dup(0)  # the lowest free descriptor
os.close(lowest)
resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + 1, hard))  # the listener's, no more
out = {}
try:
    server.start()
    out["log"] = logged_once_limit_back()
    sock.connect(f"/proc/self/fd/{stoker_dir}/control.sock")
    sock.settimeout(3)
    out["replies"] = [reply.message for reply in ask(sock, KillControl(grace_secs=None))]
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
finally:
    report(out)
"""


def test_a_control_server_with_no_descriptor_for_its_selector_serves_once_it_has_one(
        tmp_path: Path) -> None:
    out, err = control_child(SELECTOR_CHILD, tmp_path)
    assert "Traceback" not in err, err
    assert out.get("replies") == ["answered"], out
    assert len(out["log"]) == 1 and "control_selector_failed" in out["log"][0], out
    assert "EMFILE" in out["log"][0], out


# Stoker's own log on a full disk (under Mesos, SANDBOX/stderr): before, the first line that
# did not fit made the handler "go quiet" for good, as for a closed pipe, and point stderr at
# /dev/null: nothing the executor logged for the rest of the task was kept, once the disk
# had room again either.
LOG_CHILD = r"""
import logging, os, sys
sys.path.insert(0, sys.argv[2])
from executor.cli.logsetup import configure
configure()
log = logging.getLogger("executor.test")
log.warning("before the disk filled")
with open(os.path.join(sys.argv[1], "filler"), "wb", buffering=0) as f:
    try:
        while True:
            f.write(b"x" * 4096)
    except OSError:
        pass  # full: what comes next is written to a full disk
for n in range(100):
    log.warning("while the disk is full %d %s", n, "y" * 100)
os.unlink(os.path.join(sys.argv[1], "filler"))
log.warning("once the disk has room again")
"""


def test_stoker_s_own_log_goes_on_once_a_full_disk_has_room_again(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        with open(fs / "stderr", "wb") as stderr:
            done = subprocess.run([sys.executable, "-c", LOG_CHILD, str(fs), str(REPO)],
                                  stderr=stderr, timeout=30)
        lines = (fs / "stderr").read_text().splitlines()
    assert done.returncode == 0, lines[-5:]
    assert lines[-1].endswith("once the disk has room again"), lines[-3:]
    assert "log_lines_dropped count=" in lines[-2], lines[-3:]


def test_stoker_run_s_console_goes_on_once_a_full_disk_has_room_again(tmp_path: Path) -> None:
    """`stoker run > FILE` on a full disk: before, the first line that did not fit made
    stdout "gone" for good (state changes no longer printed, its descriptor pointed at
    /dev/null), as for a closed pipe."""
    spool = Spool()
    with tmpfs(tmp_path / "fs") as fs, open(fs / "stdout", "w") as stream:
        out = Output(stream, spool)
        out.write("before the disk filled\n")
        assert spool.drain(5)
        filler = fill(fs)
        for n in range(100):
            out.write(f"while the disk is full {n} {'y' * 100}\n")
        assert spool.drain(5)
        filler.unlink()
        out.write("once the disk has room again\n")
        assert spool.drain(5)
        lines = (fs / "stdout").read_text().splitlines()
    assert not out.gone
    assert lines[-1] == "once the disk has room again", lines[-3:]
    assert re.match(r"\[stoker: \d+ lines lost: the disk was full\]$", lines[-2]), lines[-3:]


# A sandbox on a full disk (its `.stoker` made, its lock file's pid and start not written):
# `stoker executor` said 'stoker: error: [Errno 28] No space left on device', naming
# nothing; both supervisors now name the sandbox and the lock file, and exit 2.
@pytest.mark.parametrize("command", ["run", "executor"])
def test_a_sandbox_on_a_full_disk_is_refused_naming_its_lock_file(tmp_path: Path,
                                                                  command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    env.update(PYTHONPATH=str(REPO), STOKER_ROOT=str(tmp_path / "registry"),
               STOKER_PLAN_CACHE="off")
    with tmpfs(tmp_path / "fs") as fs:
        sandbox = fs / "sandbox"
        sandbox.mkdir()
        fill(fs)
        if command == "executor":
            env.update(MESOS_AGENT_ENDPOINT="127.0.0.1:1", MESOS_FRAMEWORK_ID="f",
                       MESOS_EXECUTOR_ID="e", MESOS_SANDBOX=str(sandbox))
            args = ["executor"]
        else:
            args = ["run", str(REPO / "examples" / "hello_world.aurora"), "--sandbox", str(sandbox)]
        done = subprocess.run([sys.executable, "-m", "executor", *args], cwd=sandbox, env=env,
                              capture_output=True, text=True, timeout=30)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("stoker: error:")]
    assert errors == [f"stoker: error: cannot use sandbox '{sandbox}': its .stoker directory or "
                      "its lock file (.stoker/supervisor.lock): No space left on device (ENOSPC)"
                      ], done.stderr[-2000:]
    assert done.returncode == 2, done.stderr[-2000:]
