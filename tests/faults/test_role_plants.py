"""A root executor's task, run as its role, plants what it can where its supervisor (root)
still writes and reads after the task's processes run: `.stoker` (the checkpoint, lock,
control socket, `task.json`, `usage.json`, `held.json`) and `.logs` renamed away and put
back as directories of the role's whose every name is a symlink to a root file outside
the sandbox or a FIFO, a FIFO and a symlink to `/` where the disk-limit check walks, a
FIFO for `.healthchecksnooze`. Then the process fails and its next run's logs are made
(in the role's `.logs`: its planted stdout is refused, the run after starts in a run
directory of the role's, whose `stdout.1` is a symlink and `stdout.2` a FIFO, and writes
enough to be rotated twice, 100 KB a file), the disk
check samples twice, the health check goes on, and the agent kills the task (the final
records). The role's process may not connect to the control socket, nor can it by
renaming `.stoker` (root's directory, 0700; the socket 0600; beyond them the
supervisor answers only root and its own user, `SO_PEERCRED`). (`stoker restart` is refused once `.stoker` is not its supervisor's: the role
may deny the operator's control of its own task, never the agent's.)

Root must not write, truncate, chmod or chown the file outside, nor block on a
FIFO: the task ends KILLED in bounded time, the executor exits 0, and the file is as it
was, its bytes, mode, owner and times.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.agent_sim import make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.users import as_user, needs_root, open_agent_sim, throwaway_user
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60), needs_root]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
NAMES = ("checkpoint.jsonl", "supervisor.lock", "control.sock", "task.json", "usage.json")
PLANT = """
    set -e
    until [ -d .stoker ] && [ -d .logs/web/0 ]; do sleep 0.01; done
    mv .stoker .stoker.theirs && mkdir .stoker
    for name in %(names)s; do ln -s %(target)s .stoker/$name; done
    mkfifo .stoker/held.json .stoker/.usage.json.tmp
    mv .logs .logs.theirs && mkdir -p .logs/web/0 .logs/web/1
    for run in 0 1; do ln -s %(target)s .logs/web/$run/stdout; mkfifo .logs/web/$run/stderr; done
    ln -s %(target)s .logs/web/1/stdout.1
    mkdir .logs/web/2 && ln -s %(target)s .logs/web/2/stdout.1 && mkfifo .logs/web/2/stdout.2
    mkfifo fifo .healthchecksnooze && ln -s / rootlink && ln -s %(target)s targetlink
    touch planted
"""
JOB = """
    web = Process(name='web', cmdline='''[ -e planted ] || { sh plant.sh; exit 1; }
                                         head -c 300000 /dev/zero; touch written; exec sleep 600''',
                  max_failures=3, min_duration=0,
                  logger=Logger(mode='rotate', rotate=RotatePolicy(log_size=100*KB, backups=2)))
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='plants',
                    task=Task(processes=[web], resources=Resources(cpu=0.1, ram=8*MB, disk=64*MB),
                              finalization_wait=1),
                    health_check_config=HealthCheckConfig(initial_interval_secs=2.0, interval_secs=0.05,
                        health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true'))))]
"""


def _sampled_since(usage: Path, wall: float) -> bool:
    """Whether the disk check has sampled since `wall` (its record in the `.stoker` the
    supervisor pinned, which the role renamed)."""
    try:
        sample = json.loads(usage.read_text()).get("disk_sample") or {}
    except (OSError, ValueError):
        return False
    return sample.get("wall", 0) > wall


def _connect(path: Path) -> str:
    """What a connect to the socket at `path` came to: 'connected' or the error's name."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
        return "connected"
    except OSError as exc:
        return type(exc).__name__


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _runs(log: str) -> int:
    """The runs of `web` started (its run 1 is refused: its planted stdout is a symlink)."""
    return sum(1 for line in log.splitlines() if " process_state " in line and " process=web " in line
               and " pid=" in line and " to=RUNNING " in line)


def _root_file_beside(sandbox: Path) -> Path:
    """A file of root's, 0644, next to the sandbox: what a planted link points at."""
    outside = sandbox.parent / f"{sandbox.name}-outside"
    outside.write_text("root's, outside the sandbox\n")
    outside.chmod(0o644)
    return outside


def _fingerprint(path: Path) -> tuple:
    st = os.stat(path)
    return path.read_bytes(), st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def test_nothing_a_role_plants_makes_its_root_supervisor_touch_a_file_outside(tmp_path, figures):
    with throwaway_user() as (user, _group), open_agent_sim() as sim:
        sandbox = sim.sandbox
        outside = _root_file_beside(Path(sandbox))
        try:
            before = _fingerprint(outside)
            (sandbox / "plant.sh").write_text(textwrap.dedent(PLANT % dict(names=" ".join(NAMES), target=outside)))
            job = tmp_path / "plants.aurora"
            job.write_text(textwrap.dedent(JOB % dict(role=user.pw_name)))
            sim.launch_executor(EXECUTOR, cwd=sandbox, shutdown_grace="5secs",
                                env_overrides={"STOKER_DISK_CHECK_INTERVAL": "0.1"})
            sim.wait_subscribed(timeout_secs=15)
            sim.launch(make_task_info("task-1", assigned_task(client_json(job), role=user.pw_name,
                                                              name="plants")))
            sim.wait_for_state("task-1", "TASK_RUNNING", 20)
            wait_for(lambda: (sandbox / "planted").exists(), 10)
            assert (sandbox / ".stoker").stat().st_uid == user.pw_uid  # the role's now
            # `stoker restart` would be refused (`.stoker` is not the one its supervisor made):
            # the run's own failure brings the second run, whose logs are made meanwhile.
            wait_for(lambda: _runs(sim.executor_log()) >= 2 and (sandbox / "written").exists(), 10)
            run2 = sandbox / ".logs/web/2"  # the role's directory: root rotated its stdout in it
            wait_for(lambda: all(_regular(run2 / f"stdout.{n}") for n in (1, 2)), 10)  # two rotations
            rotated = sorted((p.name, _regular(p)) for p in run2.iterdir())
            real = sandbox / ".stoker.theirs"
            modes = {p.name: (stat.S_IMODE(p.lstat().st_mode), p.lstat().st_uid) for p in (real, real / "control.sock")}
            role_connects = as_user(user.pw_uid, user.pw_gid, lambda: _connect(real / "control.sock"))
            planted_at = time.time()
            wait_for(lambda: _sampled_since(sandbox / ".stoker.theirs/usage.json", planted_at), 10)
            again = time.time()
            wait_for(lambda: _sampled_since(sandbox / ".stoker.theirs/usage.json", again), 10)
            sim.kill("task-1", grace_secs=0.5)
            sim.wait_for_state("task-1", "TASK_KILLED", 15)
            assert sim.wait_exit(15) == 0
            log = sim.executor_log()
        finally:
            after = _fingerprint(outside)
            outside.unlink()
    figures.add("names planted", len(NAMES) + 10)
    assert after == before, (after, before)
    assert "Traceback" not in log
    # The control socket: root's directory, 0700, and its socket 0600, even renamed by the role.
    assert modes == {".stoker.theirs": (0o700, 0), "control.sock": (0o600, 0)}, modes
    assert role_connects == "PermissionError", role_connects
    # Rotation renamed over the planted symlink and FIFO: neither followed nor opened.
    assert rotated == [("stderr", True), ("stdout", True), ("stdout.1", True), ("stdout.2", True)], rotated
    assert "cannot open the log file" in log and "it is a symlink, not a regular file" in log
    assert "stoker_dir_moved" in log  # the checkpoint went on in the `.stoker` the supervisor made


def test_a_stoker_another_user_made_stops_the_executor_before_it_subscribes(tmp_path):
    """A `.stoker` of the role's in the sandbox before the executor starts (a sandbox the
    role could write in: the agent's, reused, or one given by an ACL), with a symlink at
    `control.sock` it could swap back in after each bind: the executor takes no lock,
    binds no socket and follows nothing in it, and says whose the directory is."""
    with throwaway_user() as (user, _group), open_agent_sim() as sim:
        sandbox = sim.sandbox
        outside = _root_file_beside(Path(sandbox))
        try:
            before = _fingerprint(outside)
            theirs = sandbox / ".stoker"
            theirs.mkdir()
            (theirs / "control.sock").symlink_to(outside)
            for path in (theirs, theirs / "control.sock"):
                os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
            sim.launch_executor(EXECUTOR, cwd=sandbox, shutdown_grace="5secs")
            code = sim.wait_exit(15)
            log = sim.executor_log()
            left = sorted((p.name, p.is_symlink()) for p in theirs.iterdir())
        finally:
            after = _fingerprint(outside)
            outside.unlink()
    assert after == before
    assert code != 0 and not sim.calls("SUBSCRIBE")
    assert f"{theirs} belongs to uid {user.pw_uid}, not to this supervisor's user (uid 0)" in log, log
    assert left == [("control.sock", True)], left
