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
import time
from pathlib import Path

import pytest

from config.document import encode
from config.loader import load_job
from executor.task.checkpoint import read_records
from tests.support import proc_scan
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.sandbox_runs import (
    RESOURCES,
    STOP_SECS,
    eventually,
    job_config,
    left_in,
    process,
    read_pids,
    stop_secs,
)
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

EXECUTOR = [sys.executable, "-m", "executor", "executor"]

# Run 0 plants a FIFO where run 1's stdout log will be opened, then fails; later runs sleep.
FIFO_LOG_ATTACK = ("echo $$ >> pids; "
                   "if [ ! -e .logs/p/1 ]; then mkdir -p .logs/p/1 && mkfifo .logs/p/1/stdout; exit 1; fi; "
                   "echo $$ > sleeper.pid; exec sleep 1000")


# ---- a FIFO as the next run's log file ----


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_fifo_planted_as_the_next_runs_log_does_not_freeze_stoker_run(runs, tmp_path, figures, sig):
    sandbox = tmp_path / "sandbox"
    config = job_config(tmp_path, "fifo", process(FIFO_LOG_ATTACK, max_failures=5, min_duration=0))
    run = runs.start(config, sandbox)
    # Supervision goes on: run 1 cannot start (its log is a FIFO), run 2 starts and sleeps.
    supervised = eventually(lambda: "p[2]             WAITING → RUNNING" in run.stdout(), 10)
    runs.remember_marker(sandbox)
    secs = stop_secs(run, sig)
    figures.add(f"{signal.Signals(sig).name} → stoker run exited (ms)", round(secs * 1000))
    out = run.stdout()
    assert supervised, f"run 2 never started: the supervisor froze\n{out}\n{run.stderr()}"
    failed = [line for line in out.splitlines() if "p[1]" in line and "FIFO" in line]
    assert failed, out
    assert "could not start" in failed[0] and ".logs/p/1/stdout" in failed[0], failed[0]
    assert (sandbox / ".logs/p/1/stdout").is_fifo()  # refused, left alone
    assert not left_in(sandbox)


def test_a_fifo_planted_as_the_next_runs_log_does_not_freeze_the_executor(tmp_path, figures):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    job = load_job(job_config(tmp_path, "fifo", process(FIFO_LOG_ATTACK, max_failures=5, min_duration=0)))
    sim = AgentSimulator(sandbox=sandbox)
    markers: set[str] = set()
    try:
        sim.launch_executor(EXECUTOR, cwd=sandbox)
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info("task-1", encode(job)))
        sim.wait_for_state("task-1", "TASK_RUNNING", 10)
        supervised = eventually(lambda: (sandbox / "sleeper.pid").exists(), 10)
        markers.update(m for m in map(proc_scan.task_marker_of, read_pids(sandbox)) if m)
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
        assert not left_in(sandbox)
    finally:
        sim.close()
        for marker in markers:
            proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={marker}", read_pids(sandbox))


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
    run = runs.start(job_config(tmp_path, "cpfifo", process(cmdline, max_failures=1)), sandbox,
                     "--restart-backoff", "0.1")
    filled = eventually(lambda: (sandbox / "filled").exists(), 15)
    runs.remember_marker(sandbox)
    secs = stop_secs(run, signal.SIGTERM)
    figures.add("SIGTERM → stoker run exited, a FIFO as the checkpoint (ms)", round(secs * 1000))
    assert filled, run.stdout() + run.stderr()
    err = run.stderr()
    assert "checkpoint.jsonl" in err and "FIFO" in err, err
    assert "task             KILLING → KILLED" in run.stdout()
    assert not left_in(sandbox)


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
        f"  task=Task(processes=[{process(cmdline)}], finalization_wait=1, {RESOURCES}),\n"
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
    stop_secs(run, signal.SIGTERM)
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
    run = runs.start(job_config(tmp_path, "rotate", process), sandbox)
    wait_for(lambda: (sandbox / "swapped").exists(), 10)
    runs.remember_marker(sandbox)
    moved = sandbox / ".logs/p/0.moved"
    # 20001 bytes of x's and a newline after "before\n": the pump rotates four times, and
    # the newest 4096-byte file plus its three backups hold the end of the output.
    done = eventually(lambda: (moved / "stdout").exists()
                       and (moved / "stdout").read_bytes().endswith(b"x\n"), 10)
    stop_secs(run, signal.SIGTERM)
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
    run = runs.start(job_config(tmp_path, "cpdir", process(cmdline, max_failures=1)), sandbox,
                     "--restart-backoff", "0.1")
    second = eventually(lambda: (sandbox / "sleeper.pid").exists(), 15)
    runs.remember_marker(sandbox)
    stop_secs(run, signal.SIGTERM)
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
    assert not left_in(sandbox)


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
    run = runs.start(job_config(tmp_path, "stderr", process(cmdline, max_failures=1)), sandbox,
                     "--restart-backoff", "5")
    run.wait_output("p[0]             RUNNING → FAILED", 10)
    secs = stop_secs(run, signal.SIGTERM)
    kind = "FIFO" if plant.startswith("mkfifo") else "symlink"
    figures.add(f"SIGTERM → stoker run exited, a failed run's stderr swapped for a {kind} (ms)",
                round(secs * 1000))
    out = run.stdout()
    assert "SECRET-LINE" not in out, out
    assert "p[0]             RUNNING → FAILED" in out, out


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
    run = runs.start(job_config(tmp_path, "links", process(cmdline, max_failures=5, min_duration=0)), sandbox)
    supervised = eventually(lambda: "p[2]             WAITING → RUNNING" in run.stdout(), 10)
    runs.remember_marker(sandbox)
    stop_secs(run, signal.SIGTERM)
    found = {name: (outside / name).read_text() for name in precious}
    figures.add("files outside the sandbox written through planted hard links", sum(
        found[name] != text for name, text in precious.items()))
    assert found == precious
    assert supervised, run.stdout() + run.stderr()
    refused = [line for line in run.stdout().splitlines() if "p[1]" in line and "hard link" in line]
    assert refused and ".logs/p/1/stdout" in refused[0], run.stdout()
    assert not left_in(sandbox)
