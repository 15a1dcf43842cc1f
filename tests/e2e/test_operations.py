"""Operating Stoker on a host, end to end with the real CLI and real processes: every task
listed by `stoker ps`, a killed supervisor shown LOST at once, `stoker kill` and
`stoker restart` through the running supervisor, and `stoker tail -f` into the next run
(one supervisor per sandbox: test_held_sandbox.py). Each test has a registry of its own
(STOKER_ROOT)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.support import proc_scan
from tests.support.shellwords import fake_sh
from tests.support.stoker_proc import REPO, StokerProcess, checkpoint_records, kill_leftovers, live, task_pids
from tests.support.waiting import stopped_whole, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def ops(tmp_path):
    """Starts `stoker run`s and runs `stoker` commands against one private registry."""
    root = tmp_path / "registry"
    started: list[StokerProcess] = []

    class Ops:
        env = {"STOKER_ROOT": str(root)}

        def run(self, config: Path, *args: str, workdir: Path | None = None) -> StokerProcess:
            workdir = workdir or tmp_path
            workdir.mkdir(parents=True, exist_ok=True)
            proc = StokerProcess(["run", str(config), *args], workdir, env=self.env)
            started.append(proc)
            out = proc.wait_output("stoker run: sandbox ", timeout_secs=30)
            proc.sandbox = Path(out.split("stoker run: sandbox ", 1)[1].split("\n", 1)[0])
            return proc

        def stoker(self, *args: str, timeout: float = 60, env: dict | None = None):
            full = dict(os.environ, PYTHONPATH=str(REPO), **self.env, **(env or {}))
            return subprocess.run([sys.executable, "-m", "executor", *map(str, args)],
                                  capture_output=True, text=True, timeout=timeout, env=full,
                                  cwd=tmp_path)

        def ps(self, *args: str) -> list[dict]:
            done = self.stoker("ps", "--json", *args)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

    yield Ops()
    for proc in started:
        proc.close()
        if getattr(proc, "sandbox", None):
            kill_leftovers(task_pids(proc.sandbox))


def config(tmp_path: Path, body: str, name: str = "job.aurora") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def service(tmp_path: Path, cmdline: str, extra: str = "", name: str = "svc") -> Path:
    return config(tmp_path, f"""
        p = Process(name='p', cmdline={cmdline!r}, min_duration=30)
        jobs = [Service(cluster='local', role='me', environment='test', name='{name}',
                        task=Task(processes=[p{extra}], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                                  finalization_wait=5))]
    """, name=f"{name}.aurora")


def running(proc: StokerProcess) -> None:
    proc.wait_output("task             STARTING → RUNNING", timeout_secs=30)


def test_two_runs_from_different_directories_are_both_listed(ops, tmp_path):
    job = service(tmp_path, f"exec {fake_sh()}")
    first = ops.run(job, workdir=tmp_path / "here")
    second = ops.run(job, workdir=tmp_path / "there")
    running(first)
    running(second)
    assert first.sandbox.parent == tmp_path / "here" and second.sandbox.parent == tmp_path / "there"
    rows = {r["supervisor_pid"]: r for r in ops.ps()}
    assert set(rows) == {first.pid, second.pid}
    for proc in (first, second):
        row = rows[proc.pid]
        assert (row["state"], row["sandbox"], row["job_key"]) == ("RUNNING", str(proc.sandbox),
                                                                  "local/me/test/svc")
        assert row["task_id"].startswith("svc-0-") and row["processes_running"] == 1
        assert row["started_iso"][:4].isdigit() and row["health"] == "none"
    text = ops.stoker("ps").stdout.splitlines()
    assert text[0].split() == ["TASK_ID", "JOB_KEY", "STATE", "PID", "SANDBOX", "STARTED", "PROCS", "HEALTH"]
    assert len(text) == 3 and all(" RUNNING " in line for line in text[1:])
    assert text[1].index("RUNNING") == text[2].index("RUNNING")  # columns line up


def test_a_killed_supervisor_is_lost_at_the_next_look_with_its_leftovers(ops, tmp_path):
    run = ops.run(service(tmp_path, f"exec {fake_sh()}"))
    running(run)
    marker = next(r["marker"] for r in checkpoint_records(run.sandbox) if r["kind"] == "header")
    worker = wait_for(lambda: proc_scan.task_pids_by_marker(marker))
    (watchdog,) = [c for c in psutil.Process(run.pid).children() if "stoker-watchdog" in c.cmdline()]
    # So that the task's process outlives its supervisor: a watchdog stopped while its
    # supervisor is (a live supervisor continues a stopped watchdog at once).
    run.signal(signal.SIGSTOP)
    wait_for(lambda: stopped_whole(run.pid), 5, message="the supervisor stopped, every thread")
    watchdog.suspend()
    try:
        run.signal(signal.SIGKILL)
        run.wait(10)
        (row,) = ops.ps()
        assert row["state"] == "LOST" and not row["supervisor_alive"]
        assert row["lost_since_source"] == "its checkpoint's last record"
        assert [p["pid"] for p in row["leftovers"]] == sorted(worker)
        assert {(p["process"], p["run"]) for p in row["leftovers"]} == {("p", 0)}
        status = ops.stoker("status", run.sandbox)
        assert status.returncode == 0
        first = status.stdout.splitlines()[0]
        assert "state=LOST (supervisor gone since 20" in first and "recorded RUNNING" in first
        assert "its checkpoint's last record" in first
        assert "leftover processes (they carry the task's marker" in status.stdout
        assert str(min(worker)) in status.stdout and " up " not in status.stdout
        assert "LOST" in ops.stoker("ps").stdout
    finally:
        watchdog.resume()  # it finds its pipe closed and kills what is left
        proc_scan.kill_carrying(f"STOKER_TASK_MARKER={marker}")
    wait_for(lambda: not proc_scan.task_pids_by_marker(marker), 10)
    (row,) = ops.ps()
    assert row["state"] == "LOST" and row["leftovers"] == []


def test_stoker_kill_stops_a_service_gracefully_its_final_process_runs_and_it_stays_stopped(ops, tmp_path):
    job = service(tmp_path, f"exec {fake_sh()}",
                  extra=", Process(name='fin', cmdline='echo done > final.txt', final=True)")
    run = ops.run(job)
    running(run)
    (row,) = ops.ps()
    assert row["task_id"].startswith("svc-0-")
    done = ops.stoker("kill", "svc-0", "--grace", "2")  # the beginning of its id names it
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("stoker kill: killing task svc.0: killed by the operator (stoker kill)")
    assert lines[-1] == "stoker kill: task svc.0 KILLED: killed by the operator (stoker kill)"
    assert (run.sandbox / "final.txt").read_text() == "done\n"
    assert run.wait(30) == 0  # an operator's stop: no restart by the service rules, exit as for Ctrl-C
    assert "stopped on request; task KILLED (exit 0)" in run.stdout()
    assert run.stdout().count("NEW → STARTING") == 1
    (row,) = ops.ps("--all")
    assert (row["state"], row["ended"]) == ("KILLED", True)
    assert ops.ps() == []
    gone = ops.stoker("kill", run.sandbox)
    assert gone.returncode == 1 and "no live supervisor holds" in gone.stderr


def test_stoker_kill_in_the_restart_delay_ends_the_run_at_once_as_a_stop_on_request(ops, tmp_path):
    """Between two attempts nothing runs: `stoker ps` and `stoker status` say RESTARTING, with
    the next attempt and when; `stoker kill` ends the run at once, with the exit status of a
    stop on request (1: the last task FAILED), the line says who stopped it, and the task is
    left FAILED, as it ended."""
    run = ops.run(service(tmp_path, "exit 3"), "--restart-backoff", "30")
    run.wait_output("restarting in 30.0 s")
    (row,) = ops.ps()
    assert (row["state"], row["recorded_state"], row["supervisor_alive"]) == ("RESTARTING", "FAILED", True)
    assert {k: row["restart"][k] for k in ("attempt", "after_state", "delay_secs")} == {
        "attempt": 2, "after_state": "FAILED", "delay_secs": 30.0}
    assert 0 < row["restart"]["due"] - time.time() <= 30
    first = ops.stoker("status", row["task_id"]).stdout.splitlines()[0]
    assert "state=RESTARTING (attempt 1 ended FAILED; attempt 2 starts in " in first
    done = ops.stoker("kill", run.sandbox)
    assert done.returncode == 0, done.stderr
    assert "no task was running (the supervisor was between attempts)" in done.stdout
    assert run.wait(10) == 1
    assert run.stdout().rstrip().endswith("stopped by `stoker kill` during the restart delay (exit 1)")
    (row,) = ops.ps("--all")
    assert (row["state"], row["ended"], row["restart"]) == ("FAILED", True, None)


def test_a_restart_is_seen_in_its_back_off_and_the_next_attempt_replaces_it(ops, tmp_path):
    """A small back-off: the status read in it says RESTARTING (attempt 2 due); the next
    attempt's records then make the view that attempt's, and the run that used up its
    failures leaves it FAILED, as before."""
    from executor.task.inspection import inspect_sandbox  # in-process: a read in 0.4 s
    from executor.task.inspectionjson import status_json

    job = config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='flaky', max_task_failures=2,
                    task=Task(processes=[Process(name='a', cmdline='exit 3')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = ops.run(job, "--restart-backoff", "0.4")
    between = wait_for(lambda: (doc := status_json(inspect_sandbox(run.sandbox)))["state"] == "RESTARTING"
                       and doc, 20, interval_secs=0.02)
    assert (between["attempts"][-1]["number"], between["supervisor_alive"], between["ended"]) == (1, True, False)
    assert between["restart"]["attempt"] == 2 and between["restart"]["delay_secs"] == 0.4
    assert "task failed (1 of max_task_failures=2); restarting in 0.4 s" in between["restart"]["reason"]
    assert run.wait(20) == 1
    final = status_json(inspect_sandbox(run.sandbox))
    assert (final["state"], final["ended"], final["restart"]) == ("FAILED", True, None)
    assert [a["number"] for a in final["attempts"]] == [1, 2] and final["attempts"][1]["state"] == "FAILED"


def test_stoker_restart_gives_the_process_a_new_pid_and_the_task_stays_running(ops, tmp_path):
    run = ops.run(service(tmp_path, f"exec {fake_sh()}"))
    running(run)
    (row,) = ops.ps()
    before = wait_for(lambda: task_pids(run.sandbox))
    assert row["job_key"] == "local/me/test/svc"
    done = ops.stoker("restart", "local/me/test/svc/0", "p")  # its job key and instance name it
    assert done.returncode == 0, done.stderr
    first, last = done.stdout.splitlines()
    assert first == ("stoker restart: restarting process 'p': SIGTERM to run 0 now, SIGKILL 5 s "
                     "later; run 1 starts as soon as it has ended")
    new_pid = int(last.rsplit("pid ", 1)[1].rstrip(")"))
    assert last == f"stoker restart: process 'p' run 1 started (pid {new_pid})"
    assert new_pid not in before and live({new_pid}) and not live(before)
    status = json.loads(ops.stoker("status", run.sandbox, "--json").stdout)
    assert status["state"] == "RUNNING"
    (p,) = status["attempts"][-1]["processes"]
    assert [(r["run"], r["state"]) for r in p["runs"]] == [(0, "RESTARTED"), (1, "RUNNING")]
    assert p["runs"][1]["pid"] == new_pid
    refused = ops.stoker("restart", run.sandbox, "nope")
    assert refused.returncode == 1
    assert refused.stderr == "stoker restart: task 'p' has no process 'nope' (its processes: p)\n"


def test_a_restart_name_s_format_characters_are_written_out_in_the_supervisor_s_log(ops, tmp_path):
    """An operator's `stoker restart` NAME reaches the supervisor's `restart_requested` line
    and the refusal `stoker restart` prints:
    a right-to-left override in it was logged as it is (the rest of the line shown reversed),
    and a line break in it began what read as a line of its own."""
    run = ops.run(service(tmp_path, f"exec {fake_sh()}"))
    running(run)
    refused = ops.stoker("restart", run.sandbox, "we\u202eb\nrestart_requested task=x accepted=True")
    assert refused.returncode == 1 and refused.stderr == (
        "stoker restart: task 'p' has no process 'we\\u202eb\\nrestart_requested task=x accepted=True' "
        "(its processes: p)\n")
    wait_for(lambda: "restart_requested" in run.stderr(), 10, message="the supervisor's restart_requested line")
    (line,) = [line for line in run.stderr().splitlines() if "restart_requested" in line]
    assert "\u202e" not in run.stderr()
    assert ' process="we\\u202eb\\nrestart_requested task=x accepted=True" accepted=False ' in line


def test_a_task_whose_supervisor_died_while_killing_shows_the_kill_s_end(ops, tmp_path):
    """`stoker kill`, then the supervisor killed -9 while its process ignores the SIGTERM:
    was LOST (the kill's cause in no record); the KILLING record says the kill ends it
    KILLED, as Aurora shows a kill's end."""
    run = ops.run(service(tmp_path, f"exec {fake_sh('--ignore-sigterm')}"))
    running(run)
    env = dict(os.environ, PYTHONPATH=str(REPO), **ops.env)
    kill = subprocess.Popen([sys.executable, "-m", "executor", "kill", str(run.sandbox), "--grace", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        wait_for(lambda: any(r.get("to") == "KILLING" for r in checkpoint_records(run.sandbox)), 30,
                 message="the KILLING record")
        os.kill(run.pid, signal.SIGKILL)  # the supervisor alone: its watchdog ends the task's processes
        run.wait()
        kill.wait(30)
    finally:
        if kill.poll() is None:
            os.killpg(kill.pid, signal.SIGKILL)
            kill.wait(10)
    (killing,) = [r for r in checkpoint_records(run.sandbox) if r.get("to") == "KILLING"]
    assert killing["ends_as"] == "KILLED"
    doc = json.loads(ops.stoker("status", run.sandbox, "--json").stdout)
    assert (doc["state"], doc["ended"], doc["supervisor_alive"]) == ("KILLED", True, False)
    text = ops.stoker("status", run.sandbox).stdout
    assert "state=KILLED (its supervisor died while killing; recorded KILLING)  attempt=1" in text
    assert "leftover processes" in text  # looked for, as for a LOST task


def test_a_task_whose_supervisor_died_while_killing_is_listed_while_its_leftovers_live(ops, tmp_path):
    """`stoker kill` under way (the process ignores SIGTERM), then the supervisor killed -9
    with its watchdog held, so that the process lives on: the task ends as its kill would
    (KILLED), but `stoker ps` hid it (an ended task: `--all` only) and named no leftover
    process (only a LOST row's), where a LOST task was listed with them. Listed while any
    lives, as the observer's /metrics keeps it."""
    run = ops.run(service(tmp_path, f"exec {fake_sh('--ignore-sigterm')}"))
    running(run)
    marker = next(r["marker"] for r in checkpoint_records(run.sandbox) if r["kind"] == "header")
    worker = wait_for(lambda: proc_scan.task_pids_by_marker(marker))
    (watchdog,) = [c for c in psutil.Process(run.pid).children() if "stoker-watchdog" in c.cmdline()]
    env = dict(os.environ, PYTHONPATH=str(REPO), **ops.env)
    kill = subprocess.Popen([sys.executable, "-m", "executor", "kill", str(run.sandbox), "--grace", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                            text=True)
    try:
        wait_for(lambda: any(r.get("to") == "KILLING" for r in checkpoint_records(run.sandbox)), 30,
                 message="the KILLING record")
        run.signal(signal.SIGSTOP)  # as in the LOST test: its watchdog stopped while it is
        wait_for(lambda: stopped_whole(run.pid), 5, message="the supervisor stopped, every thread")
        watchdog.suspend()
        run.signal(signal.SIGKILL)
        run.wait(10)
        kill.wait(30)
        # the supervisor went away before the task ended: exit 1 (docs/contract.md), as for
        # LOST; was 0, "the task is KILLED", its process running on
        assert kill.returncode == 1
        assert kill.stdout is not None and kill.stdout.read().splitlines()[-1] == (
            "stoker kill: the supervisor went away; the task is KILLED (its supervisor died while killing)")
        (row,) = ops.ps()
        assert (row["state"], row["ended"], row["died_killing"]) == ("KILLED", True, True)
        assert [p["pid"] for p in row["leftovers"]] == sorted(worker)
        lines = ops.stoker("ps").stdout.splitlines()
        assert " KILLED " in lines[1]
        assert lines[2] == f"{row['task_id']}: KILLED (its supervisor died while killing)"
        assert lines[3].startswith(f"  leftover processes: {min(worker)} (p run 0)")
        # and `stoker status` measures nothing, as for LOST: was "the task ended (KILLING): no
        # process of it runs", above the very processes it listed as running
        doc = json.loads(ops.stoker("status", run.sandbox, "--json").stdout)
        assert doc["resources"]["cpu_note"] == ("the task is KILLED (its supervisor died while killing): its "
                                                "supervisor is gone, so its processes are not measured")
    finally:
        if kill.poll() is None:
            os.killpg(kill.pid, signal.SIGKILL)
            kill.wait(10)
        if kill.stdout is not None:
            kill.stdout.close()
        watchdog.resume()  # it finds its pipe closed and kills what is left
        proc_scan.kill_carrying(f"STOKER_TASK_MARKER={marker}")
    wait_for(lambda: not proc_scan.task_pids_by_marker(marker), 10)
    assert ops.ps() == []  # none left: an ended task, as any other


def test_a_rerun_in_an_ended_sandbox_is_a_new_attempt_with_the_old_logs_kept(ops, tmp_path):
    job = config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='once',
                    task=Task(processes=[Process(name='a', cmdline='echo run at $$')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    sandbox = tmp_path / "sb"
    for _ in range(2):
        assert ops.stoker("run", job, "--sandbox", sandbox).returncode == 0
    assert (sandbox / ".logs.attempt-0/a/0/stdout").read_text().startswith("run at ")
    assert (sandbox / ".logs/a/0/stdout").read_text().startswith("run at ")
    status = ops.stoker("status", sandbox).stdout
    assert "state=FINISHED  attempt=2" in status and "earlier attempt 1: FINISHED" in status


def test_tail_f_follows_the_process_into_its_next_run(ops, tmp_path):
    run = ops.run(service(tmp_path, "echo run $$ started; exec sleep 600"))
    running(run)
    wait_for(lambda: (run.sandbox / ".logs/p/0/stdout").exists()
             and (run.sandbox / ".logs/p/0/stdout").read_text().startswith("run "))
    out_path = tmp_path / "tail.out"
    env = dict(os.environ, PYTHONPATH=str(REPO), **ops.env)
    with open(out_path, "wb") as out:
        tail = subprocess.Popen([sys.executable, "-m", "executor", "tail", "-f", str(run.sandbox), "p"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for(lambda: out_path.read_bytes().endswith(b" started\n"), 30)
        assert ops.stoker("restart", run.sandbox, "p").returncode == 0
        wait_for(lambda: out_path.read_bytes().count(b" started") == 2, 30,
                 message="the next run's line in tail's output")
        first, marker, second = out_path.read_text().splitlines()
        assert first.startswith("run ") and second.startswith("run ") and first != second
        assert marker == "==> p run 1: stdout <=="
    finally:
        os.killpg(tail.pid, signal.SIGKILL)
        tail.wait(10)

