"""Fault 5c: what a task plants in its own sandbox can neither freeze Stoker nor lead it out.

A task shares its sandbox with the Stoker process that supervises it and may put anything
there: a FIFO where Stoker will open a log file or the checkpoint (an open for writing of a
FIFO blocks until a reader comes, for ever, and froze the task's owner thread, so that KILL,
SHUTDOWN, SIGINT and SIGTERM never completed), a FIFO or a symlink as `.healthchecksnooze`,
or a symlink where Stoker expects a directory (the run's log directory while log rotation
renames and deletes in it, `.stoker` before a `stoker run` restart opens the checkpoint).

Each test plants one from inside a task process, as an attack would, and checks that the
task keeps being supervised (the next run starts, checks keep running), that SIGTERM,
SIGINT and KILL still finish within a few seconds, that the refusal names what was found,
and that nothing outside the sandbox was written, renamed or deleted.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from executor.task.checkpoint import read_records
from tests.support import proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.stoker_proc import REPO, StokerProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
STOP_SECS = 5.0  # a stop (signal or KILL) must be over well within this
RESOURCES = "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)"

# Run 0 plants a FIFO where run 1's stdout log will be opened, then fails; later runs sleep.
FIFO_LOG_ATTACK = ("echo $$ >> pids; "
                   "if [ ! -e .logs/p/1 ]; then mkdir -p .logs/p/1 && mkfifo .logs/p/1/stdout; exit 1; fi; "
                   "echo $$ > sleeper.pid; exec sleep 1000")


def _config(tmp_path: Path, name: str, processes: str, **task_fields: str) -> Path:
    """A service job `name` whose task runs `processes` (Process(...) source text)."""
    fields = "".join(f", {k}={v}" for k, v in task_fields.items())
    path = tmp_path / f"{name}.aurora"
    path.write_text(
        f"jobs = [Service(cluster='local', role='me', environment='test', name={name!r},\n"
        f"  task=Task(processes=[{processes}], finalization_wait=1, {RESOURCES}{fields}))]\n")
    return path


def _process(cmdline: str, **fields: object) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in fields.items())
    return f"Process(name='p', cmdline={cmdline!r}{extra})"


def _eventually(cond, timeout_secs: float) -> bool:  # type: ignore[no-untyped-def]
    """True once `cond()` holds within the deadline, False otherwise (the caller asserts)."""
    try:
        wait_for(cond, timeout_secs)
        return True
    except AssertionError:
        return False


def _read_pids(sandbox: Path) -> set[int]:
    return proc_scan.read_pid_files([sandbox / "pids", sandbox / "sleeper.pid"])


class Runs:
    """`stoker run` children of one test, each stopped (SIGKILL, then the task's processes by
    its marker) at teardown even when the test failed; never reads the sandbox's checkpoint,
    which a test may have replaced with a FIFO."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self._started: list[tuple[StokerProcess, Path]] = []
        self._markers: set[str] = set()

    def start(self, config: Path, sandbox: Path, *flags: str) -> StokerProcess:
        proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox), *flags], self._tmp)
        self._started.append((proc, sandbox))
        return proc

    def remember_marker(self, sandbox: Path) -> None:
        for pid in _read_pids(sandbox):
            marker = proc_scan.task_marker_of(pid)
            if marker:
                self._markers.add(marker)

    def close(self) -> None:
        for proc, sandbox in self._started:
            self.remember_marker(sandbox)
            proc.close()
            for marker in self._markers:
                proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}", _read_pids(sandbox))


@pytest.fixture
def runs(tmp_path):
    r = Runs(tmp_path)
    yield r
    r.close()


def _stop_secs(proc: StokerProcess, sig: int) -> float:
    """Send `sig`; how long `stoker run` took to exit (fails past STOP_SECS)."""
    started = time.monotonic()
    proc.signal(sig)
    try:
        proc.wait(STOP_SECS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"stoker run did not exit within {STOP_SECS} s of {signal.Signals(sig).name}"
                    f"\nstdout:\n{proc.stdout()}\nstderr:\n{proc.stderr()}")
    return time.monotonic() - started


# ---- a FIFO as the next run's log file ----


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_fifo_planted_as_the_next_runs_log_does_not_freeze_stoker_run(runs, tmp_path, figures, sig):
    sandbox = tmp_path / "sandbox"
    config = _config(tmp_path, "fifo", _process(FIFO_LOG_ATTACK, max_failures=5, min_duration=0))
    run = runs.start(config, sandbox)
    # Supervision goes on: run 1 cannot start (its log is a FIFO), run 2 starts and sleeps.
    supervised = _eventually(lambda: "p[2]             WAITING → RUNNING" in run.stdout(), 10)
    runs.remember_marker(sandbox)
    secs = _stop_secs(run, sig)
    figures.add(f"{signal.Signals(sig).name} → stoker run exited (ms)", round(secs * 1000))
    out = run.stdout()
    assert supervised, f"run 2 never started: the supervisor froze\n{out}\n{run.stderr()}"
    failed = [line for line in out.splitlines() if "p[1]" in line and "FIFO" in line]
    assert failed, out
    assert "could not start" in failed[0] and ".logs/p/1/stdout" in failed[0], failed[0]
    assert (sandbox / ".logs/p/1/stdout").is_fifo()  # refused, left alone
    assert not proc_scan.live(_read_pids(sandbox))


def test_a_fifo_planted_as_the_next_runs_log_does_not_freeze_the_executor(tmp_path, figures):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    job = load_job(_config(tmp_path, "fifo", _process(FIFO_LOG_ATTACK, max_failures=5, min_duration=0)))
    sim = AgentSimulator(sandbox=sandbox)
    markers: set[str] = set()
    try:
        sim.launch_executor(EXECUTOR, cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", encode(job)))
        sim.wait_for_state("task-1", "TASK_RUNNING", 10)
        supervised = _eventually(lambda: (sandbox / "sleeper.pid").exists(), 10)
        markers.update(m for m in map(proc_scan.task_marker_of, _read_pids(sandbox)) if m)
        started = time.monotonic()
        sim.kill("task-1", grace_secs=1.0)
        killed = sim.wait_for_state("task-1", "TASK_KILLED", STOP_SECS)
        figures.add("KILL → TASK_KILLED, a FIFO as run 1's log (ms)",
                    round((time.monotonic() - started) * 1000))
        assert killed.message == "killed by the agent (KILL)"
        assert sim.wait_exit(STOP_SECS) == 0
        assert supervised, "run 2 never started: the supervisor froze"
        log = sim.executor_log()
        assert "FIFO" in log and ".logs/p/1/stdout" in log, log[-3000:]
        assert not proc_scan.live(_read_pids(sandbox))
    finally:
        sim.close()
        for marker in markers:
            proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}", _read_pids(sandbox))


# ---- a FIFO as the checkpoint ----


def test_a_fifo_planted_as_the_checkpoint_does_not_freeze_stoker_run(runs, tmp_path, figures):
    """Attempt 0 swaps the checkpoint for a FIFO and fails; `stoker run` starts attempt 1,
    whose process fills the FIFO's pipe buffer: an owner writing its checkpoint there blocks
    for ever. The FIFO must be refused, and the task supervised and stopped as usual."""
    sandbox = tmp_path / "sandbox"
    cmdline = ("echo $$ >> pids; cp=.stoker/checkpoint.jsonl; "
               "if [ ! -p $cp ]; then rm -f $cp && mkfifo $cp; exit 1; fi; "
               "(head -c 70000 /dev/zero > $cp &); sleep 0.3; touch filled; "
               "echo $$ > sleeper.pid; exec sleep 1000")
    run = runs.start(_config(tmp_path, "cpfifo", _process(cmdline, max_failures=1)), sandbox,
                     "--restart-backoff", "0.1")
    filled = _eventually(lambda: (sandbox / "filled").exists(), 15)
    runs.remember_marker(sandbox)
    secs = _stop_secs(run, signal.SIGTERM)
    figures.add("SIGTERM → stoker run exited, a FIFO as the checkpoint (ms)", round(secs * 1000))
    assert filled, run.stdout() + run.stderr()
    err = run.stderr()
    assert "checkpoint.jsonl" in err and "FIFO" in err, err
    assert "task             KILLING → KILLED" in run.stdout()
    assert not proc_scan.live(_read_pids(sandbox))


def test_stoker_status_of_a_fifo_checkpoint_answers_at_once(tmp_path):
    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True)
    os.mkfifo(sandbox / ".stoker/checkpoint.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    env["PYTHONPATH"] = str(REPO)
    try:
        result = subprocess.run([sys.executable, "-m", "executor", "status", str(sandbox)],
                                capture_output=True, text=True, timeout=10, env=env,
                                start_new_session=True)
    except subprocess.TimeoutExpired:
        pytest.fail("stoker status blocked opening a FIFO planted as the checkpoint")
    assert result.returncode != 0
    assert result.stderr.startswith("stoker: error: ") and "FIFO" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ---- .healthchecksnooze ----


@pytest.mark.parametrize("plant, snoozes", [
    ("mkfifo .healthchecksnooze", False),
    ("ln -s {outside} .healthchecksnooze", False),
    ("touch .healthchecksnooze", True),  # the control: a regular file does snooze
], ids=["fifo", "symlink to a file outside", "regular file"])
def test_only_a_regular_snooze_file_snoozes_and_none_blocks(runs, tmp_path, plant, snoozes):
    sandbox = tmp_path / "sandbox"
    outside = tmp_path / "outside-file"
    outside.write_text("not the sandbox's\n")
    cmdline = f"echo $$ >> pids; {plant.format(outside=outside)}; echo $$ > sleeper.pid; exec sleep 1000"
    health = ("HealthCheckConfig(initial_interval_secs=0.1, interval_secs=0.05, timeout_secs=1.0,"
              " health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true')))")
    config = tmp_path / "snooze.aurora"
    config.write_text(
        "jobs = [Service(cluster='local', role='me', environment='test', name='snooze',\n"
        f"  task=Task(processes=[{_process(cmdline)}], finalization_wait=1, {RESOURCES}),\n"
        f"  health_check_config={health})]\n")
    run = runs.start(config, sandbox)
    wait_for(lambda: (sandbox / "sleeper.pid").exists(), 10)
    runs.remember_marker(sandbox)
    # Attempts after the plant: the stdout of `stoker run` shows each change of outcome.
    run.wait_output("task             STARTING → RUNNING", 10)
    wait_for(lambda: _health_outcomes(sandbox), 10)
    # An attempt in flight when the plant was seen may have looked before it: skip two.
    before = len(_health_outcomes(sandbox)) + 2
    outcomes = wait_for(lambda: (lambda o: o if len(o) >= before + 5 else None)(_health_outcomes(sandbox)), 10)
    _stop_secs(run, signal.SIGTERM)
    recent = outcomes[before:]
    expected = "snoozed" if snoozes else "passed"
    assert set(recent) == {expected}, recent
    assert outside.read_text() == "not the sandbox's\n"


def _health_outcomes(sandbox: Path) -> list[str]:
    return [r.get("outcome") for r in read_records(sandbox) if r.get("kind") == "health"]


# ---- symlinks where Stoker expects directories ----


def test_log_rotation_stays_in_a_run_directory_swapped_for_a_symlink(runs, tmp_path, figures):
    """Mid-run, the task moves its run directory aside and puts a symlink to a directory
    outside the sandbox in its place, then writes enough to rotate its log several times:
    rotation must rename, create and delete only in the run's own directory."""
    sandbox = tmp_path / "sandbox"
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = {name: f"precious {name}\n" for name in ("stdout", "stdout.1", "stdout.2", "stdout.3")}
    for name, text in precious.items():
        (outside / name).write_text(text)
    cmdline = (f"echo $$ >> pids; echo before; mv .logs/p/0 .logs/p/0.moved && ln -s {outside} .logs/p/0; "
               "head -c 20000 /dev/zero | tr '\\0' x; echo; touch swapped; "
               "echo $$ > sleeper.pid; exec sleep 1000")
    process = (f"Process(name='p', cmdline={cmdline!r}, logger=Logger(mode='rotate', "
               "rotate=RotatePolicy(log_size=4096, backups=3)))")
    run = runs.start(_config(tmp_path, "rotate", process), sandbox)
    wait_for(lambda: (sandbox / "swapped").exists(), 10)
    runs.remember_marker(sandbox)
    moved = sandbox / ".logs/p/0.moved"
    # 20001 bytes of x's and a newline after "before\n": the pump rotates four times, and
    # the newest 4096-byte file plus its three backups hold the end of the output.
    done = _eventually(lambda: (moved / "stdout").exists()
                       and (moved / "stdout").read_bytes().endswith(b"x\n"), 10)
    _stop_secs(run, signal.SIGTERM)
    found = {p.name: p.read_text() for p in outside.iterdir()}
    figures.add("files outside the sandbox written, renamed or deleted by rotation",
                len(set(found.items()) ^ set(precious.items())))
    assert found == precious
    assert done, "the end of the output never reached the run's own directory"
    names = sorted(p.name for p in moved.iterdir())
    assert names == ["stderr", "stdout", "stdout.1", "stdout.2", "stdout.3"], names
    assert all(len((moved / n).read_bytes()) <= 4096 for n in names)


def test_a_stoker_run_restart_does_not_follow_a_symlinked_checkpoint_directory(runs, tmp_path, figures):
    """Attempt 0 replaces `.stoker` with a symlink to a directory outside the sandbox and
    fails; attempt 1 must not open its checkpoint there. It writes its checkpoint into the
    `.stoker` the session pinned (wherever the task moved it) and is supervised and stopped
    as usual."""
    sandbox = tmp_path / "sandbox"
    outside = tmp_path / "outside"
    outside.mkdir()
    cmdline = (f"echo $$ >> pids; if [ ! -L .stoker ]; then mv .stoker .stoker.moved && "
               f"ln -s {outside} .stoker; exit 1; fi; echo $$ > sleeper.pid; exec sleep 1000")
    run = runs.start(_config(tmp_path, "cpdir", _process(cmdline, max_failures=1)), sandbox,
                     "--restart-backoff", "0.1")
    second = _eventually(lambda: (sandbox / "sleeper.pid").exists(), 15)
    runs.remember_marker(sandbox)
    _stop_secs(run, signal.SIGTERM)
    written = sorted(p.name for p in outside.iterdir())
    figures.add("files written outside the sandbox through a symlinked .stoker", len(written))
    assert not written, f"the checkpoint was written outside the sandbox: {written}"
    assert second, run.stdout() + run.stderr()
    assert "Traceback" not in run.stderr(), run.stderr()
    # The second attempt keeps its checkpoint: written, as the first was, into the `.stoker`
    # the session pinned (renamed `.stoker.moved` by the task), never through the symlink.
    records = [json.loads(line) for line in (sandbox / ".stoker.moved" / "checkpoint.jsonl").read_text().splitlines()]
    headers = [r for r in records if r["kind"] == "header"]
    assert len(headers) == 2 and headers[0]["task_id"] != headers[1]["task_id"], headers
    assert [r["to"] for r in records if r["kind"] == "task"][-1] == "KILLED"
    assert not proc_scan.live(_read_pids(sandbox))


# ---- JSON nested deeper than Python's parser recurses ----
#
# `json.loads` raises RecursionError, not ValueError, for a document nested deeper than the
# interpreter's recursion limit (about 1,000 levels: `[[[[...`). Every reader of a file a
# task can write or plant took only ValueError for "not JSON", so one such line crashed the
# supervisor (its checkpoint's first compaction reads the file back) and sent `stoker
# status`, `stoker ps`, `stoker kill` and the observer's task page down with a traceback.

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
    run = runs.start(_config(tmp_path, "deep", _process(cmdline, max_failures=5, min_duration=0)), sandbox)
    # Run 1's start is in the checkpoint: the write that compacted went through.
    supervised = _eventually(lambda: any(r.get("kind") == "process" and r.get("run") == 1
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
    assert not proc_scan.live(_read_pids(sandbox))



def test_a_checkpoint_grown_by_a_line_without_end_does_not_stall_the_supervisor(runs, tmp_path, figures):
    """Run 0 makes its checkpoint 1 TiB longer (`truncate`: zeros, no newline, no disk) and
    fails. The first compaction reads the file back, on the owner's thread: it joined the
    unfinished line's blocks one by one, each copy longer than the last (16 MiB took 2 s,
    all of it in memory). Run 1 must start and be recorded, and SIGTERM work."""
    sandbox = tmp_path / "sandbox"
    checkpoint = sandbox / ".stoker/checkpoint.jsonl"
    cmdline = ("echo $$ >> pids; if [ ! -e planted ]; then truncate -s +1T .stoker/checkpoint.jsonl; "
               "touch planted; exit 1; fi; echo $$ > sleeper.pid; exec sleep 1000")
    run = runs.start(_config(tmp_path, "long", _process(cmdline, max_failures=5, min_duration=0)), sandbox)
    run.wait_output("p[1]             WAITING → RUNNING", 10)
    started = time.monotonic()
    compacted = _eventually(lambda: checkpoint.stat().st_size < 1 << 20, 10)
    figures.add("a 1 TiB sparse line in the checkpoint → compacted (ms)",
                round((time.monotonic() - started) * 1000))
    runs.remember_marker(sandbox)
    secs = _stop_secs(run, signal.SIGTERM)
    assert compacted, f"the checkpoint was never compacted\n{run.stdout()}\n{run.stderr()}"
    assert secs < STOP_SECS
    records = read_records(sandbox)
    assert any(r.get("kind") == "process" and r.get("run") == 1 and r.get("to") == "RUNNING"
               for r in records), records
    assert not proc_scan.live(_read_pids(sandbox))

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


# ---- a failed run's stderr, shown under it by `stoker run` ----


@pytest.mark.parametrize("plant", ["mkfifo .logs/p/0/stderr", "ln -s {outside} .logs/p/0/stderr"],
                         ids=["fifo", "symlink to a file outside"])
def test_a_failed_runs_stderr_log_swapped_before_it_ends_is_neither_waited_on_nor_followed(
        runs, tmp_path, figures, plant):
    """`stoker run` prints the last lines of a failed run's stderr under its FAILED line, on
    the owner's thread: a FIFO put in the log's place froze the whole supervisor in its open
    (no stop, no restart), and a symlink printed a file from outside the sandbox."""
    sandbox = tmp_path / "sandbox"
    outside = tmp_path / "outside-secret"
    outside.write_text("SECRET-LINE outside the sandbox\n")
    cmdline = (f"echo $$ >> pids; echo 'its own words' >&2; rm .logs/p/0/stderr; "
               f"{plant.format(outside=outside)}; exit 1")
    run = runs.start(_config(tmp_path, "stderr", _process(cmdline, max_failures=1)), sandbox,
                     "--restart-backoff", "5")
    run.wait_output("p[0]             RUNNING → FAILED", 10)
    secs = _stop_secs(run, signal.SIGTERM)
    kind = "FIFO" if plant.startswith("mkfifo") else "symlink"
    figures.add(f"SIGTERM → stoker run exited, a failed run's stderr swapped for a {kind} (ms)",
                round(secs * 1000))
    out = run.stdout()
    assert "SECRET-LINE" not in out, out
    assert "p[0]             RUNNING → FAILED" in out, out


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


# ---- hard links to files outside the sandbox ----
#
# Where hard links are not protected (fs.protected_hardlinks=0, the kernel's own default),
# a task's user may link any file on the sandbox's file system into its sandbox, one it can
# neither read nor write included. Stoker then opened it as a log (the next run appended
# its output to it), truncated it as the checkpoint's compaction file and renamed the
# compacted checkpoint over it, and `stoker tail` printed it. The test links the files
# itself (as root: the same links a task makes on such a host).


def test_hard_links_planted_in_the_sandbox_lead_no_write_outside_it(runs, tmp_path, figures):
    sandbox = tmp_path / "sandbox"
    outside = tmp_path / "outside"
    outside.mkdir()
    precious = {name: f"precious {name}\n" for name in ("log", "compact")}
    for name, text in precious.items():
        (outside / name).write_text(text)
    cmdline = (f"echo $$ >> pids; if [ ! -e planted ]; then mkdir -p .logs/p/1 && "
               f"ln {outside}/log .logs/p/1/stdout && ln {outside}/compact .stoker/checkpoint.jsonl.compact && "
               "(head -c 70000 /dev/zero | tr '\\0' x; echo) >> .stoker/checkpoint.jsonl; "
               "touch planted; exit 1; fi; echo run $$; echo $$ > sleeper.pid; exec sleep 1000")
    run = runs.start(_config(tmp_path, "links", _process(cmdline, max_failures=5, min_duration=0)), sandbox)
    supervised = _eventually(lambda: "p[2]             WAITING → RUNNING" in run.stdout(), 10)
    runs.remember_marker(sandbox)
    _stop_secs(run, signal.SIGTERM)
    found = {name: (outside / name).read_text() for name in precious}
    figures.add("files outside the sandbox written through planted hard links", sum(
        found[name] != text for name, text in precious.items()))
    assert found == precious
    assert supervised, run.stdout() + run.stderr()
    refused = [line for line in run.stdout().splitlines() if "p[1]" in line and "hard link" in line]
    assert refused and ".logs/p/1/stdout" in refused[0], run.stdout()
    assert not proc_scan.live(_read_pids(sandbox))
