"""`stoker status`, `stoker ps` and the observer between two attempts of a `stoker run`: the
registry entry and the checkpoint are written a moment apart (the next attempt's id is
registered 0.05-0.12 s before its header is in the checkpoint, and a reader can read the
entry just before the header goes in), and neither reading may show one attempt's data
under the other's id; a sandbox with no checkpoint is told only by its own supervisor's
entry."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.procs.sandboxfs import dir_id
from tests.support.statuscli import RUNNING, header, status, write

pytestmark = pytest.mark.timeout(30)


def _between_attempts(tmp_path, me) -> float:
    """A live `stoker run` (this process) whose attempt web-0-1 failed with 3 runs and that
    registered its next attempt's id web-0-2, whose header is not in the checkpoint yet; when
    the restart before that attempt was due (1 s after it was decided, 1 s ago: the pending
    attempt's start, which its registration 0.05 s before is not)."""
    from executor.host.identity import boot_secs

    sandbox, now, boot = tmp_path / "sb", time.time(), boot_secs()
    write(sandbox, [dict(header(me.pid, me.start_ticks, wall=now - 60), boot=boot - 60), *RUNNING,
                    {"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "web failed", "wall": now - 2},
                    {"kind": "restart", "delay_secs": 1.0, "reason": "task failed (1 of 3)",
                     "wall": now - 1, "boot": boot - 1}])
    Registry(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=now - 0.05,
                      task_id="web-0-2", earlier_task_ids=("web-0-1",)))
    return now  # the restart's wall (now - 1) and its delay (1.0)


def test_a_new_task_id_registered_before_its_attempt_is_recorded_shows_none_of_the_attempt_before(
        tmp_path, capsys, monkeypatch):
    """`stoker run` registers its next attempt's id 0.05-0.12 s before that attempt's header
    is in the checkpoint: `stoker ps` (and the observer's pages and API, which share its
    inspection) showed web-0-2 with web-0-1's start, processes, attempt and health."""
    me = own_identity()
    due = _between_attempts(tmp_path, me)
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    assert main(["ps", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["task_id"] == "web-0-2" and row["state"] == "RESTARTING", row
    assert row["recorded_state"] is None and row["processes_total"] == 0 and row["health"] == "-", row
    # the restart's due time, not web-0-1's start (nor a time read after `stoker ps`, which a
    # loaded host can make late)
    assert row["started"] == pytest.approx(due, abs=0.001), row
    assert row["restart"]["attempt"] == 2 and row["restart"]["after_state"] == "FAILED", row


def test_the_observer_s_api_shows_a_new_task_id_without_the_attempt_before(tmp_path):
    """The same moment through the observer: /api/tasks/web-0-2 had web-0-1's attempt
    number, start and processes."""
    import urllib.request

    from executor.observe.reader import Reader
    from executor.observe.server import Limits
    from tests.support.observer_server import serving

    due = _between_attempts(tmp_path, own_identity())
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60.0))
    with serving(reader, Limits(idle_secs=5, loop_secs=1)) as server:
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}/api/tasks/web-0-2"
        with urllib.request.urlopen(url, timeout=10) as answer:
            doc = json.loads(answer.read())
    task = doc["task"]
    assert task["task_id"] == doc["status"]["task_id"] == "web-0-2" and task["state"] == "RESTARTING", task
    assert task["recorded_state"] is None and task["processes_total"] == 0, task
    assert task["started"] == pytest.approx(due, abs=0.001) and task["restart"]["attempt"] == 2, task


def _entry_behind(tmp_path, age: float) -> RegistrySettings:
    """A live `stoker run` (this process) whose attempt web-0-2 started `age` s ago while its
    registry entry still names web-0-1, the attempt before."""
    from executor.host.identity import boot_secs

    me, now, boot = own_identity(), time.time(), boot_secs()
    sandbox = tmp_path / "sb"
    write(sandbox, [dict(header(me.pid, me.start_ticks, wall=now - 60), boot=boot - 60), *RUNNING,
                    {"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "web failed", "wall": now - 2},
                    {"kind": "restart", "delay_secs": 0.1, "reason": "task failed (1 of 3)",
                     "wall": now - 1, "boot": boot - 1},
                    dict(header(me.pid, me.start_ticks, wall=now - age), task_id="web-0-2", boot=boot - age),
                    {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": now - age}])
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60.0)
    Registry(settings).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=now - 60,
                      task_id="web-0-1"))
    return settings


def test_an_entry_read_just_before_the_next_attempt_s_header_shows_none_of_that_attempt(
        tmp_path, capsys, monkeypatch):
    """The other side of the same moment: a reader (`stoker ps`, the observer) that read the
    entry, still naming web-0-1, just before web-0-2's header went in (2 of 30 restarts of a
    real run polled every 10 ms) showed web-0-2's attempt under web-0-1: STARTING with no
    runs, and in /metrics web-0-1's attempt 2 and its runs counter falling."""
    import urllib.request

    from executor.observe.reader import Reader
    from executor.observe.server import Limits
    from tests.support.observer_server import serving

    settings = _entry_behind(tmp_path, 0.0)
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    assert main(["ps", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["task_id"] == "web-0-1" and row["recorded_state"] is None and row["processes_total"] == 0, row
    with serving(Reader(settings), Limits(idle_secs=5, loop_secs=1)) as server:
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
    assert 'stoker_task_supervisor_alive{' in text and 'task_id="web-0-1"' in text, text
    shown = [line for line in text.splitlines() if line.startswith(("stoker_task_attempt{", "stoker_process_runs_total{"))]
    assert shown == [], shown


def test_an_entry_its_supervisor_could_not_update_still_shows_the_attempt_that_runs(tmp_path, capsys, monkeypatch):
    """A registry it could not write (full, read-only) leaves the entry naming web-0-1 for the
    whole of web-0-2: past STALE_SECS that attempt is shown (under the id the entry names),
    never a running task with no processes."""
    _entry_behind(tmp_path, 10.0)
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    assert main(["ps", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["task_id"], row["recorded_state"], row["processes_total"]) == ("web-0-1", "STARTING", 1), row


def test_a_sandbox_without_a_checkpoint_is_not_told_by_the_entry_of_another_process_with_its_pid(
        tmp_path, capsys, monkeypatch):
    """The lock file names a supervisor (pid P) that died before it recorded or registered
    anything; the registry still lists an earlier one of the sandbox with the same pid P (from
    before a reboot, or before the pids wrapped), which stopped with 'cannot go on': that one's
    reason was printed as why this one stopped, and LOST said as NEW."""
    me = own_identity()
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker" / "supervisor.lock").write_text(json.dumps(
        {"pid": me.pid, "start": me.start_ticks + 100, "boot": me.boot_id, "front_end": "run", "since": 1000.0}))
    root = tmp_path / "root"
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + 50,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time() - 5,
                      ended_wall=time.time() - 4, ended_reason="cannot go on: no thread could be started"))
    monkeypatch.setenv("STOKER_ROOT", str(root))
    code, out, _ = status(capsys, sandbox)
    assert code == 0 and out.startswith(f"sandbox {sandbox}  state=LOST\n"), out
    assert f"its supervisor (pid {me.pid}) died before it recorded anything" in out and "cannot go on" not in out


def test_an_entry_whose_attempts_later_runs_pushed_out_is_not_the_lock_holders(tmp_path):
    """An ended supervisor's entry, its attempts pushed out of the checkpoint's view by a later
    run's 20 that holds the sandbox now: its task is its own, gone (LOST), not the later run's
    live supervisor's, which holds the lock (what a sandbox without any checkpoint tells)."""
    from executor.host.lock import SandboxLock
    from executor.host.sandbox import open_stoker_dir
    from executor.task.inspection import inspect_sandbox
    from executor.task.replay import ATTEMPTS_KEPT

    me, sandbox, gone = own_identity(), tmp_path / "sb", own_identity().pid + 1_000_000
    write(sandbox, [header(gone, 7), *RUNNING, *(header(me.pid, me.start_ticks, wall=1000.0 + n)
                                                  for n in range(ATTEMPTS_KEPT))])
    entry = RegistryEntry(sandbox=str(sandbox), supervisor_pid=gone, supervisor_start=7, supervisor_boot=me.boot_id,
                          front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="web-0-1")
    fd = open_stoker_dir(sandbox)
    held = SandboxLock.acquire(fd, str(sandbox), me, "run", time.time(), time.clock_gettime(time.CLOCK_BOOTTIME))
    try:
        found = inspect_sandbox(sandbox, entry)
    finally:
        held.release()
        os.close(fd)
    assert (found.supervisor_pid, found.truth.alive, found.truth.state) == (gone, False, "LOST"), found
    assert "keeps no attempt of its supervisor" in found.problem, found.problem


def registered_t1(tmp_path, sandbox, me) -> Path:
    """A registry of the test's own naming task T1's supervisor (this process, 500 ticks later
    than it started) in SANDBOX, its `.stoker` pinned as it is now; the registry's root."""
    fd = os.open(sandbox / ".stoker", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pinned = dir_id(fd)
    finally:
        os.close(fd)
    root = tmp_path / "root"
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + 500,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
                      task_id="T1", stoker_dir=pinned))
    return root


def test_a_run_again_killed_before_its_first_record_is_lost_not_gone_to_the_run_before(tmp_path, capsys):
    """`stoker run` again in a sandbox whose last run (task T0) ended, killed before it
    recorded anything (an early start's runs may live on): its checkpoint keeps T0's attempts
    only, the run before's. LOST, "killed before it recorded anything" (was: GONE, "its
    sandbox no longer holds its checkpoint: now task T0's", the earlier task named a later one)."""
    me, sandbox = own_identity(), tmp_path / "sb"
    write(sandbox, [dict(header(me.pid, me.start_ticks + 300, wall=time.time() - 100), task_id="T0"), *RUNNING,
                    {"kind": "task", "from": "RUNNING", "to": "FINISHED", "reason": "done", "wall": 1003.0}])
    root = registered_t1(tmp_path, sandbox, me)
    code, out, _ = status(capsys, "T1", "--root", root)
    assert code == 0 and out.startswith(f"sandbox {sandbox}  state=LOST\n"), out
    assert f"keeps no attempt of its supervisor (pid {me.pid}), only other runs' of the sandbox: it is gone" in out


def test_a_later_task_after_a_wall_clock_step_back_is_gone_not_lost(tmp_path, capsys):
    """A later task's attempt in the sandbox whose wall clock was stepped back after the
    entry's supervisor registered (NTP, by more than the time between): its supervisor
    started after the entry's on the boot's clock, so the checkpoint is a later task's:
    GONE, "now task T2's" (was: LOST, its header's wall before the registration read as the
    run before's)."""
    me, sandbox = own_identity(), tmp_path / "sb"
    write(sandbox, [dict(header(me.pid, me.start_ticks + 700, wall=time.time() - 100), task_id="T2"), *RUNNING])
    root = registered_t1(tmp_path, sandbox, me)
    code, out, _ = status(capsys, "T1", "--root", root)
    assert code == 0 and out.startswith(f"sandbox {sandbox}  state=GONE\n"), out
    assert "its sandbox no longer holds its checkpoint: now task T2's" in out, out


def test_a_sandbox_s_path_shows_its_running_supervisor_that_recorded_nothing_not_the_run_before(
        tmp_path, capsys, monkeypatch):
    """A `stoker run` again in a sandbox whose last run was killed, on a full disk: the new
    supervisor runs the task, its header held in memory until the disk has room. `status
    SANDBOX` showed the run before (`state=KILLED`, its supervisor gone) and never named the
    one running, which its lock and registry entry name (`status TASK_ID` and `ps` did)."""
    from executor.host.lock import SandboxLock
    from executor.host.sandbox import open_stoker_dir
    me, sandbox = own_identity(), tmp_path / "sb"
    write(sandbox, [header(me.pid, me.start_ticks + 100), *RUNNING,  # another process of this pid: gone
                    {"kind": "task", "from": "RUNNING", "to": "KILLED", "reason": "killed", "wall": 1003.0}])
    fd = open_stoker_dir(sandbox)
    held = SandboxLock.acquire(fd, str(sandbox), me, "run", time.time(), time.clock_gettime(time.CLOCK_BOOTTIME))
    try:
        Registry(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60.0)).write(
            RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                          supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
                          task_id="web-0-2", stoker_dir=dir_id(fd)))
        monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
        code, out, _ = status(capsys, sandbox)
    finally:
        held.release()
        os.close(fd)
    assert code == 0 and out.startswith(f"sandbox {sandbox}  state=NEW\n"), out
    assert f"keeps no attempt of its supervisor (pid {me.pid}), only other runs' of the sandbox: it has " \
           "recorded none yet" in out, out
    assert f"supervisor_pid: {me.pid} (running)" in out, out
