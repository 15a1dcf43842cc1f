"""What `stoker status` tells of a sandbox whose checkpoint says little or was damaged, and
what it trusts there: real `stoker run`s, their real checkpoints cut or damaged, lock files
written as a task that owns its sandbox could write them."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.statuscli import status
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, live, task_pids

FAILING = """
    jobs = [Job(cluster='local', role='me', environment='test', name='fails',
                task=Task(processes=[Process(name='bad', cmdline='exit 3', max_failures=1)],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
"""
SERVICE = """
    jobs = [Service(cluster='local', role='me', environment='test', name='web',
                    task=Task(processes=[Process(name='web', cmdline='exec sleep 300')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
"""


def _stoker_run(tmp_path: Path, job: str) -> tuple[StokerProcess, Path]:
    """`stoker run` of `job` in TMP/sb, its registry in TMP/root (not the host's)."""
    config, sandbox, work = tmp_path / "job.aurora", tmp_path / "sb", tmp_path / "work"
    config.write_text(textwrap.dedent(job))
    work.mkdir()
    return StokerProcess(["run", str(config), "--sandbox", str(sandbox)], work,
                         env={"STOKER_ROOT": str(tmp_path / "root")}), sandbox


def _status_json_locked(capsys, sandbox: Path, root: Path) -> tuple[int, str]:
    """`stoker status SANDBOX --json` while this process holds the sandbox's supervisor lock
    (made if missing), as a starting supervisor holds it: its exit code and output."""
    fd = os.open(sandbox / ".stoker" / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, out, _ = status(capsys, sandbox, "--json", "--root", root)
    finally:
        os.close(fd)
    return code, out


def test_status_json_of_a_sandbox_without_a_record_names_the_user_its_leftovers_are_judged_against(
        tmp_path, capsys, monkeypatch):
    """A real `stoker run` SIGKILLed, its checkpoint cut inside its header (no whole record):
    `--json` printed the short form (`supervisor_pid`, `problem`, leftovers) without
    `task_uid` / `task_uid_source`, which the contract names for every view: it is the
    sandbox's owner (no header names the task's user), as for an older Stoker's checkpoint."""
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    proc, sandbox = _stoker_run(tmp_path, SERVICE)
    try:
        proc.wait_output("task             STARTING → RUNNING", timeout_secs=30)
        pids = task_pids(sandbox)
        os.killpg(proc.pid, 9)
        proc.wait()
        kill_leftovers(pids)
        checkpoint = sandbox / ".stoker" / "checkpoint.jsonl"
        checkpoint.write_bytes(checkpoint.read_bytes()[:60])  # its header cut
        code, out, _ = status(capsys, sandbox, "--json")
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"]) == (0, "LOST", proc.pid), doc
    assert "holds no record" in doc["problem"]
    assert (doc["task_uid"], doc["task_uid_source"]) == (os.stat(sandbox).st_uid, "sandbox_owner"), doc


def test_status_json_of_a_starting_supervisor_names_the_sandbox_owner_as_the_task_s_user(tmp_path, capsys):
    """No checkpoint, the lock held (a supervisor starting: NEW): the short form carries
    `task_uid` too."""
    (tmp_path / ".stoker").mkdir()
    code, out = _status_json_locked(capsys, tmp_path, tmp_path / "root")
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"]) == (0, "NEW", os.getpid()), doc
    assert (doc["task_uid"], doc["task_uid_source"]) == (os.stat(tmp_path).st_uid, "sandbox_owner")


@pytest.fixture
def stranger():
    """A live process that is no supervisor of anything."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _plant(sandbox: Path, pid: int) -> None:
    """The lock file as a task that owns its sandbox may write it: naming a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    (sandbox / ".stoker").mkdir(parents=True, exist_ok=True)
    (sandbox / ".stoker" / "supervisor.lock").write_text(json.dumps(
        {"pid": pid, "start": int(fields[19]), "boot": boot, "front_end": "run", "since": 1000.0}))


def test_a_lock_file_naming_a_live_process_that_does_not_hold_it_names_no_supervisor(
        tmp_path, capsys, stranger):
    """A lock file naming a live process, nothing holding the lock: status said "its
    supervisor (pid X) is starting" (NEW) of any process the task named. A supervisor holds
    the lock all its life: this one is none; nothing holds the lock, so none is starting."""
    sandbox = tmp_path / "sb"
    _plant(sandbox, stranger)
    code, out, _ = status(capsys, sandbox, "--json", "--root", tmp_path / "root")
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"], doc["supervisor_alive"]) == (0, "LOST", None, False), doc
    assert str(stranger) not in doc["problem"]
    assert "a process that does not hold the lock" in doc["problem"]


def test_a_lock_file_naming_another_process_than_its_holder_names_the_holder(tmp_path, capsys, stranger):
    """The lock held (a supervisor starting), its file naming another live process: the
    holder is the supervisor, not the process the file names."""
    sandbox = tmp_path / "sb"
    _plant(sandbox, stranger)
    code, out = _status_json_locked(capsys, sandbox, tmp_path / "root")
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"]) == (0, "NEW", os.getpid()), doc
    assert str(stranger) not in doc["problem"]


def test_kill_and_restart_of_a_sandbox_whose_lock_file_names_a_stranger_reach_no_one(
        tmp_path, monkeypatch, stranger):
    """A real `stoker run`'s sandbox, after it ended, its lock file rewritten to name a live
    process of another: `stoker kill` and `stoker restart` of the sandbox (no registry entry
    names it) took that process for the supervisor ("the supervisor ... does not answer",
    "the control socket ... not to the sandbox's supervisor (pid X)"). Now: no live
    supervisor holds the sandbox; exit 1; the process lives on."""
    sandbox = _failed_run(tmp_path, monkeypatch, FAILING)
    _plant(sandbox, stranger)
    env = {**os.environ, "STOKER_ROOT": str(tmp_path / "elsewhere")}
    for args in (["kill", str(sandbox), "--grace", "1"], ["restart", str(sandbox), "bad"]):
        done = subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True, text=True,
                              env=dict(env, PYTHONPATH=str(REPO)), timeout=30, cwd=tmp_path)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "no live supervisor holds" in done.stderr and f"pid {stranger}" not in done.stderr, done.stderr
        assert "is starting" not in done.stderr
    assert live({stranger}) == {stranger}


def _failed_run(tmp_path, monkeypatch, job: str):
    """A real `stoker run` of `job`, its task FAILED (exit 1), ended: its sandbox."""
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "root"))
    proc, sandbox = _stoker_run(tmp_path, job)
    try:
        proc.exited(1)
    finally:
        kill_leftovers(task_pids(sandbox))
    return sandbox


@pytest.fixture
def failed(tmp_path, monkeypatch):
    """A real `stoker run` whose task FAILED, ended: its sandbox and its checkpoint's bytes."""
    sandbox = _failed_run(tmp_path, monkeypatch, FAILING)
    checkpoint = sandbox / ".stoker" / "checkpoint.jsonl"
    return sandbox, checkpoint, checkpoint.read_bytes()


def _last_line_at(data: bytes) -> int:
    return data.rstrip(b"\n").rfind(b"\n") + 1


@pytest.mark.parametrize("damage", ["cut", "nul", "kind"])
def test_a_checkpoint_damaged_at_its_task_end_shows_the_end_its_supervisor_s_phase_recorded(
        failed, capsys, damage):
    """The task record of the end (RUNNING -> FAILED) is the checkpoint's last; its `phase`
    record before it says FAILED. Cut (a crash), a byte made NUL, or a byte of its kind
    changed (a kind not known: ignored), it was shown LOST, as a task that might run on.
    It is FAILED, its reason saying the last record is damaged."""
    sandbox, checkpoint, data = failed
    end = _last_line_at(data)
    assert json.loads(data[end:])["to"] == "FAILED" and json.loads(data[end:])["kind"] == "task"
    changed = {"cut": data[:end + 30],
               "nul": data[:end + 20] + b"\0" + data[end + 21:],
               "kind": data[:end] + data[end:].replace(b'"kind":"task"', b'"kind":"tYsk"', 1)}[damage]
    checkpoint.write_bytes(changed)
    code, out, err = status(capsys, sandbox, "--json")
    doc = json.loads(out)
    assert (code, doc["state"], doc["ended"], doc["supervisor_alive"]) == (0, "FAILED", True, False), doc
    (attempt,) = doc["attempts"]
    assert attempt["state"] == "FAILED" and "its last record damaged or unknown" in attempt["reason"]
    assert "exit status 3" in attempt["reason"]  # the phase's words
    code, out, _ = status(capsys, sandbox)
    assert out.startswith("task fails.0  key=local/me/test/fails  state=FAILED  attempt=1\n"), out
    assert "LOST" not in out


SICK = """
    jobs = [Job(cluster='local', role='me', environment='test', name='sick',
                task=Task(processes=[Process(name='web', cmdline='exec sleep 300')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1),
                health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig(
                    shell=ShellHealthChecker(shell_command='exit 1')), interval_secs=0.2,
                    initial_interval_secs=0.2, timeout_secs=5),
                lifecycle=DisableLifecycle)]
"""


def test_a_task_end_cut_after_a_kill_a_failure_began_is_not_taken_for_the_phase_s_kill(
        tmp_path, capsys, monkeypatch):
    """A real `stoker run` whose health check fails: task STARTING -> KILLING, the phase
    CLEANING -> KILLED, then the task's end KILLING -> FAILED (the kill's cause, not the
    phase). That end cut: status showed KILLED ("ended as its supervisor's terminal phase"),
    a failure shown as an operator's kill. The KILLING record names the cause: FAILED, as
    for a supervisor that died while killing (it was LOST while no record named it)."""
    sandbox = _failed_run(tmp_path, monkeypatch, SICK)
    checkpoint = sandbox / ".stoker" / "checkpoint.jsonl"
    data = checkpoint.read_bytes()
    end = _last_line_at(data)
    assert json.loads(data[end:])["from"] == "KILLING" and json.loads(data[end:])["to"] == "FAILED"
    checkpoint.write_bytes(data[:end + 30])
    code, out, _ = status(capsys, sandbox, "--json")
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_alive"], doc["ended"]) == (0, "FAILED", False, True), doc
    assert doc["attempts"][0]["killing_ends_as"] == "FAILED"
    code, out, _ = status(capsys, sandbox)
    assert "state=FAILED (its supervisor died while killing; recorded KILLING)" in out.splitlines()[0]


def test_a_damaged_record_before_an_intact_task_end_changes_nothing(failed, capsys):
    """Only an end not read after the terminal phase is taken from it: a record damaged
    earlier (a process record) leaves the task's own end and reason as recorded."""
    sandbox, checkpoint, data = failed
    lines = data.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if b'"kind":"process"' in line)
    lines[at] = lines[at][:15] + b"\0" + lines[at][16:]
    checkpoint.write_bytes(b"".join(lines))
    code, out, err = status(capsys, sandbox, "--json")
    (attempt,) = json.loads(out)["attempts"]
    assert (code, attempt["state"]) == (0, "FAILED") and "damaged" not in attempt["reason"], attempt
    assert "skipped" in err


def _mount(tmp_path: Path, fs: str) -> list[list[str]]:
    """The mounts (`mount`'s arguments) that make TMP/top such a directory (`elsewhere`)."""
    if fs == "overlay":  # its lower layer another file system (a tmpfs): a file has its layer's st_dev
        lower, upper, work = (tmp_path / n for n in ("lower", "upper", "ovwork"))
        return [["-t", "tmpfs", "lower", str(lower)],
                ["-t", "overlay", "top", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
                 str(tmp_path / "top")]]
    image = tmp_path / "btrfs.img"  # each subvolume a device of its own
    os.truncate(os.open(image, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600), 200 << 20)
    done = subprocess.run(["mkfs.btrfs", "-q", str(image)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.skip(f"mkfs.btrfs: {done.stderr.strip()}")
    return [["-o", "loop", str(image), str(tmp_path / "top")]]


@pytest.fixture(params=["overlay", "btrfs"])
def elsewhere(request, tmp_path):
    """TMP/top, a directory where a file's `st_dev` is not the device /proc/locks lists its
    locks under: an overlay on layers of two file systems, or btrfs (two subvolumes, `a`
    and `b`, which number their inodes alike). Needs root; unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    if request.param == "btrfs" and shutil.which("mkfs.btrfs") is None:
        pytest.skip("no mkfs.btrfs")
    for name in ("lower", "upper", "ovwork", "top"):
        (tmp_path / name).mkdir()
    mounted = []
    try:
        for args in _mount(tmp_path, request.param):
            done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                pytest.skip(f"cannot mount: {done.stderr.strip()}")
            mounted.insert(0, args[-1])
        if request.param == "btrfs":
            for sub in ("a", "b"):
                subprocess.run(["btrfs", "-q", "subvolume", "create", str(tmp_path / "top" / sub)],
                               check=True, capture_output=True, timeout=60)
        yield tmp_path / "top"
    finally:
        for point in mounted:
            subprocess.run(["umount", "-l", point], timeout=60, check=False)


def _decoy(directory: Path, ino: int) -> int | None:
    """An fd of a file of `directory` numbered `ino` (made until one is, at most 50), its
    `flock` held: a lock /proc/locks lists under the same device and inode as another
    subvolume's file. None: no such number came."""
    for n in range(50):
        fd = os.open(directory / f"decoy{n}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if os.fstat(fd).st_ino == ino:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd
        os.close(fd)
    return None


def test_kill_of_a_supervisor_whose_lock_file_s_st_dev_is_not_the_one_proc_locks_names(tmp_path, elsewhere):
    """A real `stoker run` in a sandbox there: /proc/locks names the lock's file by the
    mount's device, its `stat` by the layer's or subvolume's. `lock.holds` found nobody
    holding the lock, so `stoker kill` refused the live supervisor ("does not hold the
    lock"). The holder is found by the mount's device too (on btrfs, among the holders of
    the same number in another subvolume, this process's lock): killed, exit 0."""
    config, work = tmp_path / "job.aurora", tmp_path / "work"
    config.write_text(textwrap.dedent(SERVICE))
    work.mkdir()
    btrfs = (elsewhere / "b").is_dir()
    sandbox = elsewhere / "b" / "sb" if btrfs else elsewhere / "sb"
    env = {"STOKER_ROOT": str(tmp_path / "root")}
    proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], work, env=env)
    decoy = None
    try:
        proc.wait_output("task             STARTING → RUNNING", timeout_secs=30)
        st = os.stat(sandbox / ".stoker" / "supervisor.lock")
        assert f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} " not in \
            Path("/proc/locks").read_text()  # the case this is about
        if btrfs:
            decoy = _decoy(elsewhere / "a", st.st_ino)
            assert decoy is not None
        done = subprocess.run([sys.executable, "-m", "executor", "kill", str(sandbox), "--grace", "1"],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={**os.environ, **env, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert proc.wait() == 0 and "killed by the operator (stoker kill)" in proc.stdout(), proc.stdout()
    finally:
        if decoy is not None:
            os.close(decoy)
        proc.close()
        kill_leftovers(task_pids(sandbox))
