"""`stoker status` on hand-made sandboxes: what it says when there is nothing to show, a task
whose supervisor is gone (LOST, since when and from what, its leftover processes), one whose
supervisor runs, and a task found by its id in the registry (a damaged checkpoint's:
test_status_damaged.py)."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import identity_of, is_stopped, own_identity
from executor.host.registry import Registry
from tests.support.statuscli import RUNNING, header, registered_as_web_0_1, status, write
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def test_nothing_to_show_is_one_error_line_and_exit_1(tmp_path, capsys):
    assert status(capsys, tmp_path) == (
        1, "", f"stoker: error: no checkpoint in {tmp_path}/.stoker (is this a task sandbox?)\n")
    (tmp_path / ".stoker").mkdir()
    (tmp_path / ".stoker" / "checkpoint.jsonl").write_text("not json\n")
    assert status(capsys, tmp_path)[2] == (
        f"stoker: error: the checkpoint in {tmp_path}/.stoker holds no readable record (its one "
        "line, at offset 0, is garbled, not JSON: 'not json')\n")
    (tmp_path / ".stoker" / "checkpoint.jsonl").write_text('{"kind":"header","ta')  # torn at the end
    assert status(capsys, tmp_path)[2] == (
        f"stoker: error: the checkpoint in {tmp_path}/.stoker holds no record\n")


def test_a_task_whose_supervisor_is_gone_is_lost_with_its_leftovers(tmp_path, capsys):
    me = own_identity()
    write(tmp_path, [header(me.pid, me.start_ticks + 100), *RUNNING])  # not this process: gone
    env = {"PATH": os.environ["PATH"], "STOKER_TASK_MARKER": "m4rk3r",
           "STOKER_RUN_MARKER": "m4rk3r/web/2"}
    leftover = subprocess.Popen(["sleep", "60"], env=env)
    try:
        code, out, _ = status(capsys, tmp_path)
        assert code == 0
        first = out.splitlines()[0]
        assert first.startswith("task web.0  key=c/r/e/web  state=LOST (supervisor gone since ")
        assert first.endswith("its checkpoint's last record); recorded RUNNING  attempt=1")
        assert "(gone)" in out and " up " not in out
        web_row = next(line for line in out.splitlines() if line.startswith("web "))
        assert web_row.split()[:4] == ["web", "LOST", "2", "4242"]
        assert ("leftover processes (they carry the task's marker, or its watchdog held them; "
                "its supervisor is gone):") in out
        row = next(line for line in out.splitlines() if line.strip().startswith(str(leftover.pid)))
        assert row.split()[:4] == [str(leftover.pid), "web", "2", "sleep"]
        code, out, _ = status(capsys, tmp_path, "--json")
        doc = json.loads(out)
        assert (doc["state"], doc["supervisor_alive"], doc["lost_since"]) == ("LOST", False, 1002.0)
        assert doc["lost_since_source"] == "its checkpoint's last record"
        assert doc["leftovers"] == [{"pid": leftover.pid, "process": "web", "run": 2,
                                     "command": "sleep 60"}]
    finally:
        leftover.kill()
        leftover.wait()


def test_a_leftover_whose_run_marker_only_looks_like_a_number_is_listed(tmp_path, capsys):
    """A task's process may start a daemon with its own STOKER_RUN_MARKER: '²' passes
    str.isdigit() and int() refuses it, which made `stoker status` (and `stoker ps`) of the
    LOST task die with a traceback."""
    me = own_identity()
    write(tmp_path, [header(me.pid, me.start_ticks + 100), *RUNNING])
    env = {"PATH": os.environ["PATH"], "STOKER_TASK_MARKER": "m4rk3r",
           "STOKER_RUN_MARKER": "m4rk3r/web/\u00b2"}
    leftover = subprocess.Popen(["sleep", "60"], env=env)
    try:
        code, out, _ = status(capsys, tmp_path, "--json")
        assert code == 0
        assert json.loads(out)["leftovers"] == [{"pid": leftover.pid, "process": "web", "run": None,
                                                 "command": "sleep 60"}]
    finally:
        leftover.kill()
        leftover.wait()

def test_a_live_supervisor_s_task_is_what_it_recorded(tmp_path, capsys):
    me = own_identity()
    write(tmp_path, [header(me.pid, me.start_ticks, wall=time.time()), *RUNNING])
    code, out, _ = status(capsys, tmp_path)
    assert code == 0 and "state=RUNNING  attempt=1" in out and "(running)" in out
    assert "leftover" not in out


def test_a_pid_reused_since_an_old_checkpoint_was_written_is_not_its_supervisor(tmp_path, capsys):
    old = dict(header(os.getpid(), None), wall=1000.0)  # written in 1970: no start recorded
    write(tmp_path, [old, *RUNNING])
    assert "state=LOST" in status(capsys, tmp_path)[1]


def test_a_task_id_is_found_in_the_registry(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    sandbox = tmp_path / "sb"
    me = own_identity()
    write(sandbox, [header(me.pid, me.start_ticks, wall=time.time()), *RUNNING])
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN,
                      registered_wall=time.time(), task_id="web-0-1"))
    monkeypatch.setenv("STOKER_ROOT", str(root))
    code, out, _ = status(capsys, "web-0-1")
    assert code == 0 and out.startswith("task web.0") and "state=RUNNING" in out
    code, _, err = status(capsys, "web-0-2")
    others = "; a task of another user's is in that user's registry: name its sandbox" if os.geteuid() == 0 else ""
    assert (code, err) == (2, f"stoker: error: sandbox 'web-0-2' does not exist, and no task in the "
                              f"registry '{root}' has that id, or an id that begins so (`stoker ps --all` lists them){others}\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="a registry of another user's needs root to make")
def test_a_registry_that_cannot_be_read_is_an_error_never_an_empty_list(tmp_path, capsys):
    """`sudo stoker ps --root ~alice/.local/state/stoker` (a registry root does not trust)
    and a non-root `stoker ps --root /var/run/stoker` (one it may not read) used to print
    "no live tasks in the registry ..." with exit 0, and `stoker status TASK_ID` "no task
    has that id": the operator concluded nothing ran. Now each says why it could not read."""
    root = tmp_path / "alice-root"
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(tmp_path / "sb"), supervisor_pid=1, supervisor_start=1,
                      supervisor_boot="b", front_end=FrontEnd.RUN, registered_wall=time.time(),
                      task_id="web-0-1"))
    os.chown(root, 65534, 65534)
    assert main(["ps", "--root", str(root)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"stoker: error: cannot read the registry {root}: {root} is not trusted: it "
                   f"belongs to uid 65534, mode 700\n")
    code, _, err = status(capsys, "web-0-1", "--root", root)
    assert code == 2
    assert err.startswith("stoker: error: sandbox 'web-0-1' does not exist, and no task id can be "
                          f"looked up: cannot read the registry {root}: ")


@pytest.mark.parametrize("pinned", [False, True], ids=["no pin", "its .stoker pinned"])
def test_a_task_whose_sandbox_was_deleted_under_it_is_named_with_its_supervisor(tmp_path, capsys, pinned):
    """`rm -rf` of a running task's sandbox (a /tmp cleaner, a careless operator): `stoker
    kill ID` said "/sb is not a task sandbox: .stoker: No such file or directory" (exit 1),
    `status ID` "no checkpoint ... (is this a task sandbox?)", and `ps` showed the task NEW
    with 0/0 processes and no word why. Now each says the sandbox is gone and, while the
    supervisor runs, its pid and how to stop it (its control socket went with the sandbox).
    With the `.stoker` a supervisor pins in its entry, `ps` said that `.stoker` was renamed
    or removed and to rename it back (README: the line says the sandbox was deleted)."""
    root = tmp_path / "root"
    sandbox = tmp_path / "deleted"
    (sandbox / ".stoker").mkdir(parents=True)
    pin = f"{os.stat(sandbox / '.stoker').st_dev}:{os.stat(sandbox / '.stoker').st_ino}" if pinned else ""
    shutil.rmtree(sandbox)
    me = own_identity()
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN,
                      registered_wall=time.time(), task_id="web-0-1", stoker_dir=pin))
    gone = (f"task 'web-0-1': its sandbox '{sandbox}' no longer exists; its supervisor (pid {me.pid}) "
            f"still runs, but without its sandbox it cannot be reached: `kill {me.pid}` (SIGTERM) "
            f"stops it gracefully")
    for command in (["status", "web-0-1"], ["kill", "web-0-1"], ["restart", "web-0-1", "web"],
                    ["tail", "web-0-1", "web"]):
        assert main([*command, "--root", str(root)]) == 2
        assert capsys.readouterr().err == f"stoker: error: {gone}\n"
    assert main(["ps", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"web-0-1: the sandbox {sandbox} no longer exists (renamed or deleted); {gone.split('; ', 1)[1]}\n" in out


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfds", "no pidfds"])
def test_a_supervisor_that_went_away_is_waited_for_before_its_task_is_judged(tmp_path, monkeypatch, pidfds):
    """`stoker kill` / `restart` whose conversation the supervisor ended without an answer:
    its socket closes as it exits, a moment before /proc shows it gone, and a look at that
    moment said "the task is RUNNING" (seen under load). The look waits for its exit; without
    pidfds (a kernel before 5.3; a seccomp profile that denies pidfd_open, EPERM, emulated
    here) by reading /proc, where it was not waited for at all."""
    from executor.cli.control import _after_the_supervisor
    from executor.host.identity import identity_of

    def denied(pid: int, flags: int = 0) -> int:
        raise PermissionError(errno.EPERM, "Operation not permitted")
    if not pidfds:
        monkeypatch.setattr(os, "pidfd_open", denied)
    supervisor = subprocess.Popen(["sleep", "0.3"])
    try:
        write(tmp_path, [header(supervisor.pid, identity_of(supervisor.pid).start_ticks), *RUNNING])
        started = time.monotonic()
        inspection = _after_the_supervisor(tmp_path)
        assert inspection.truth.state == "LOST" and time.monotonic() - started < 2.0
    finally:
        supervisor.kill()
        supervisor.wait()


def test_a_sandbox_whose_supervisor_recorded_nothing_says_who_took_it_and_whether_it_runs(
        tmp_path, capsys, monkeypatch):
    """A supervisor SIGKILLed before its first checkpoint record: `status` said "no
    checkpoint ... (is this a task sandbox?)" (exit 1). Now it says what the lock file, the
    lock's holder in /proc/locks or the registry entry tell: LOST, or starting (exit 0)."""
    import fcntl

    me = own_identity()
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    lock = sandbox / ".stoker" / "supervisor.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # an early start: locked, nothing written into it yet
        code, out, _ = status(capsys, sandbox)
        assert code == 0 and out.startswith(f"sandbox {sandbox}  state=NEW\n"), out
        assert f"its supervisor (pid {me.pid}) is starting and has recorded nothing" in out
    finally:
        os.close(fd)
    code, out, _ = status(capsys, sandbox)  # the lock let go, no pid in it: an early start's death
    assert code == 0 and out.startswith(f"sandbox {sandbox}  state=LOST\n"), out
    assert "died before it recorded anything, in its early start" in out
    lock.write_text(json.dumps({"pid": me.pid, "start": me.start_ticks + 100, "boot": me.boot_id,
                                "front_end": "run", "since": 1000.0}))
    code, out, _ = status(capsys, sandbox, "--json")
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"], doc["supervisor_alive"]) == (0, "LOST", me.pid, False)
    assert doc["problem"].endswith(f"its supervisor (pid {me.pid}) died before it recorded anything")
    registered_as_web_0_1(tmp_path, monkeypatch, sandbox, me)
    code, out, _ = status(capsys, "web-0-1")
    assert code == 0 and f"supervisor_pid: {me.pid} (gone)" in out
    assert main(["ps"]) == 0
    out = capsys.readouterr().out
    assert f"web-0-1: no checkpoint in {sandbox}/.stoker: its supervisor (pid {me.pid}) died" in out
    assert "web-0-1: LOST (supervisor gone since" in out


def test_a_running_runs_uptime_is_the_kernels_whatever_the_wall_clock_did_since(tmp_path, capsys):
    """Its start was recorded three days "ago" by the wall clock, as after the clock was
    stepped forward (a VM resumed after days): `up 3d00h` for a run of a second. The
    supervisor (this process) runs and the run is its child: its 'up' is the kernel's."""
    me = own_identity()
    run = subprocess.Popen(["sleep", "30"])
    try:
        then = time.time() - 3 * 86400
        records = [dict(r, wall=then) for r in RUNNING]
        records[1]["pid"] = run.pid
        write(tmp_path, [header(me.pid, me.start_ticks, wall=then), *records])
        code, out, _ = status(capsys, tmp_path)
    finally:
        run.kill()
        run.wait()
    web = next(line for line in out.splitlines() if line.startswith("web "))
    assert code == 0 and web.split()[:4] == ["web", "RUNNING", "2", str(run.pid)]
    assert " up " in web and " up 3d" not in web and re.search(r" up \d+\.\ds ", web), web


def _registered(monkeypatch, root, sandbox, me) -> None:
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0)).write(
        RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                      supervisor_boot=me.boot_id, front_end=FrontEnd.RUN,
                      registered_wall=time.time(), task_id="web-0-1"))
    monkeypatch.setenv("STOKER_ROOT", str(root))


def test_a_live_tasks_age_and_its_next_attempts_due_time_are_counted_on_the_boot_clock(
        tmp_path, capsys, monkeypatch):
    """Recorded by a wall clock an hour behind today's (it was stepped forward since: NTP, a
    VM resumed): `stoker ps` and the observer gave a task of seconds an hour's age, and a
    RESTARTING task whose next attempt was 9 s away "is starting". Its supervisor (this
    process) runs: both count from the boot-clock moments its records carry."""
    from executor.host.identity import boot_secs

    me, sandbox = own_identity(), tmp_path / "sb"
    now, boot = time.time(), boot_secs()
    stepped = now - 3600
    write(sandbox, [dict(header(me.pid, me.start_ticks, wall=stepped - 5), boot=boot - 5),
                    *(dict(r, wall=stepped - 4) for r in RUNNING),
                    {"kind": "task", "from": "RUNNING", "to": "FAILED", "reason": "web failed",
                     "wall": stepped - 2},
                    {"kind": "restart", "delay_secs": 10.0, "reason": "task failed (1 of 3)",
                     "wall": stepped - 1, "boot": boot - 1}])
    _registered(monkeypatch, tmp_path / "root", sandbox, me)
    assert main(["ps", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert abs(row["started"] - (now - 5)) < 1, row
    assert 8 < row["restart"]["due"] - now < 10, row
    code, out, _ = status(capsys, sandbox)
    assert code == 0 and re.search(r"state=RESTARTING \(attempt 1 ended FAILED; attempt 2 starts in [89]\.\ds\)", out), out


def test_an_older_stokers_live_task_counts_its_age_from_its_supervisors_kernel_start(
        tmp_path, capsys, monkeypatch):
    """Records without the boot clock's moments (a supervisor of an older Stoker, still
    running): the attempt that supervisor began with is as old as that supervisor, as the
    kernel counts it; its recorded wall time, an hour behind, is not used."""
    from executor.host.identity import started_wall

    me, sandbox = own_identity(), tmp_path / "sb"
    write(sandbox, [header(me.pid, me.start_ticks, wall=time.time() - 3600), *RUNNING])
    _registered(monkeypatch, tmp_path / "root", sandbox, me)
    assert main(["ps", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["started"] == pytest.approx(started_wall(me), abs=0.005), row  # (now less the boot clock, read twice)


def test_a_stopped_supervisor_and_a_stopped_run_are_said_to_be_stopped(tmp_path, capsys):
    """Before, a supervisor a task's `kill -STOP $PPID` had stopped showed as `(running)`,
    and a run that had stopped itself as RUNNING: nothing said that no one supervised,
    nor that the run did nothing."""
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE)
    assert shell.stdout is not None
    child = int(shell.stdout.readline())
    try:
        supervisor = identity_of(shell.pid)
        assert supervisor is not None
        records = [dict(r) for r in RUNNING]
        records[1]["pid"] = child
        write(tmp_path, [header(shell.pid, supervisor.start_ticks), *records])
        os.kill(child, signal.SIGSTOP)
        os.kill(shell.pid, signal.SIGSTOP)
        wait_for(lambda: is_stopped(shell.pid) and is_stopped(child), 5)
        code, out, _ = status(capsys, tmp_path)
        doc = json.loads(status(capsys, tmp_path, "--json")[1])
    finally:
        for pid in (child, shell.pid):
            os.kill(pid, signal.SIGKILL)
        shell.wait()
    assert code == 0, out
    assert (f"supervisor_pid: {shell.pid} (stopped: SIGSTOP or a debugger; nothing is supervised "
            f"until it is continued, kill -CONT {shell.pid})") in out
    web = next(line for line in out.splitlines() if line.startswith("web "))
    assert web.split()[:5] == ["web", "RUNNING", "(stopped)", "2", str(child)], web
    # the same for a script (before, --json had neither)
    assert (doc["supervisor_stopped"], doc["stopped_processes"]) == (True, ["web"]), doc
    assert (doc["supervisor_frozen"], doc["supervisor_frozen_cgroup"]) == (False, None), doc  # stopped, not frozen



def test_a_frozen_supervisor_that_recorded_nothing_is_said_frozen(tmp_path, capsys):
    """A supervisor its cgroup froze before its first record (`docker pause` as it starts):
    `status` said it "is starting" and `--json` had no `supervisor_frozen` (nor its cgroup),
    where a frozen one that recorded has both, and the warning. A real process holds the
    lock, in a real cgroup the test freezes."""
    from tests.support import cgroups as test_cgroups

    if (why := test_cgroups.unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                               str(sandbox / ".stoker" / "supervisor.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with test_cgroups.frozen_in_a_cgroup(holder.pid) as directory:
            code, out, err = status(capsys, sandbox, "--json")
        doc = json.loads(out)
        assert (code, doc["supervisor_pid"], doc["supervisor_alive"]) == (0, holder.pid, True)
        assert (doc["supervisor_frozen"], doc["supervisor_frozen_cgroup"]) == (True, directory)
        assert f"the supervisor (pid {holder.pid}) is frozen (its cgroup {directory})" in err
    finally:
        holder.kill()
        holder.wait()
