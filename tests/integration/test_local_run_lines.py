"""`stoker run`'s attempt loop in process (`executor/local/run.py`), read whole: the lines it
prints and the events it logs for a job that fails, restarts and fails again; for a stop
signal or `stoker kill` during the restart delay, and a second signal that kills at once;
its restart record (and a restart whose record's module cannot load); ports another program
holds; its answers to Ctrl-Z, a stray and an ignored Ctrl-C; its notes and warnings before
the first attempt. The command as a process is tests/e2e's."""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from config.settings import RunSettings
from executor.host.identity import boot_secs
from executor.local import run as local_run
from tests.integration.test_local_run import _stoker_run
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30, method="thread")  # (the run relays SIGALRM, the signal method's timer, as a stray)

TWICE = """
jobs = [Job(cluster='c', role='r', environment='test', name='twice', max_task_failures=2,
            task=Task(processes=[Process(name='p', cmdline='{cmdline}')],
                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
"""
FAILED = "process 'p' failed: exit status 1 after 1 of max_failures=1 runs"
ROOT = ("running as root: the task's processes run as root, not as the job's role 'r' (as Aurora's executor, "
        "and `stoker executor`, would run them)")


def _events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, Any]]]:
    """The run's events: level, name and fields."""
    return [(r.levelname, r.stoker_event, r.stoker_fields) for r in caplog.records
            if r.name == local_run.__name__ and hasattr(r, "stoker_event")]


def _untimed(out: io.StringIO) -> list[str]:
    """Every line the run printed, a console line without its time."""
    return [line[14:] if line[:2].isdigit() else line for line in out.getvalue().splitlines()]


def _restart_records(sandbox: Path) -> list[dict[str, Any]]:
    lines = (sandbox / ".stoker" / "checkpoint.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record.get("kind") == "restart"]


def _as_root(lines: list[str]) -> list[str]:
    """`lines` with the warning a run as root under another role gives after its first line."""
    return [lines[0], f"stoker run: warning: {ROOT}", *lines[1:]] if os.geteuid() == 0 else lines


def _attempt(sandbox: Path, number: int) -> list[str]:
    """The console lines of an attempt of TWICE whose process exits 1."""
    task, supervisor = "twice.0      task             ", "twice.0      supervisor       "
    return [f"{task}NEW → STARTING  task launched; sandbox ready, starting processes",
            "twice.0      p[0]             WAITING → RUNNING  starting run 0",
            f"{task}STARTING → RUNNING  processes started; no health check configured",
            "twice.0      p[0]             RUNNING → FAILED  exit status 1; failed for good (failure 1 of max_failures=1)",
            " " * 44 + f"(its stderr is empty; its stdout: stoker tail {sandbox} p --run 0 -n +1; once the task has "
            f"restarted, add --attempt {number})",
            f"{supervisor}ACTIVE → CLEANING  {FAILED}; nothing left running", f"{supervisor}CLEANING → FAILED  {FAILED}",
            f"{task}RUNNING → FAILED  {FAILED}"]


def test_a_job_that_fails_restarts_once_then_ends_with_its_lines_events_and_record(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=local_run.__name__)
    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 1"),
                                    restart_backoff_secs=0.0, restart_backoff_max_secs=0.0)
    before = boot_secs()
    assert run.run() == 1
    restarting = f"{FAILED}; task failed (1 of max_task_failures=2); restarting in 0.0 s (quick end 1)"
    ended = f"{FAILED}; task failed 2 time(s); max_task_failures=2 reached"
    assert _untimed(out) == _as_root([f"stoker run: sandbox {sandbox}", *_attempt(sandbox, 0),
                                      f"twice.0      stoker           FAILED: {restarting}", *_attempt(sandbox, 1),
                                      f"twice.0      stoker           FAILED: {ended} (exit 1)"])
    root = [("WARNING", "run_warning", {"reason": ROOT})] if os.geteuid() == 0 else []
    assert _events(caplog) == [
        ("INFO", "run_prepared", {"task": "twice.0", "sandbox": sandbox, "ports": None}), *root,
        ("INFO", "task_restarting", {"task": "twice.0", "state": "FAILED", "delay_secs": 0.0, "next_attempt": 2,
                                     "reason": restarting}),
        ("INFO", "run_ended", {"task": "twice.0", "state": "FAILED", "exit": 1, "reason": ended})]
    (record,) = _restart_records(sandbox)
    assert (record["delay_secs"], record["reason"]) == (0.0, restarting.split("; ", 1)[1])
    assert before <= record["boot"] <= boot_secs()


PORTED = TWICE.format(
    cmdline="echo $MESOS_SANDBOX {{thermos.ports[http]}} {{thermos.ports[admin]}}; exit 1")


def test_ports_another_program_holds_are_said_at_the_start_and_before_each_restart(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=local_run.__name__)
    with socket.create_server(("127.0.0.1", 0)) as http, socket.create_server(("127.0.0.1", 0)) as admin:
        ports = {"http": http.getsockname()[1], "admin": admin.getsockname()[1]}
        run, out, sandbox = _stoker_run(tmp_path, PORTED, ports=ports, restart_backoff_secs=0.0,
                                        restart_backoff_max_secs=0.0)
        assert run.run() == 1
    shown = f"admin={ports['admin']}, http={ports['http']}"
    lines = _untimed(out)
    first = [f"stoker run: sandbox {sandbox}", f"stoker run: ports {shown}",
             f"stoker run: warning: --port admin={ports['admin']} is in use by another program",
             f"stoker run: warning: --port http={ports['http']} is in use by another program",
             *([f"stoker run: warning: {ROOT}"] if os.geteuid() == 0 else [])]  # (the role's last)
    assert lines[:len(first)] == first
    taken = (f"ports admin={ports['admin']}, http={ports['http']} in use by another program; every attempt of this "
             "run keeps its ports (a new `stoker run` chooses free ones)")
    assert lines.count(f"twice.0      stoker           warning: {taken}") == 1
    assert ("WARNING", "ports_taken", {"task": "twice.0", "state": "FAILED", "reason": taken}) in _events(caplog)
    assert _events(caplog)[0] == ("INFO", "run_prepared", {"task": "twice.0", "sandbox": sandbox, "ports": shown})
    assert (sandbox / ".logs/p/0/stdout").read_text() == f"{sandbox} {ports['http']} {ports['admin']}\n"


def test_a_restart_whose_record_cannot_be_loaded_goes_on_without_it(tmp_path, caplog, monkeypatch):
    """After an upgrade in place the module that writes it may not load: a WARNING line."""
    monkeypatch.setitem(sys.modules, "executor.task.checkpointbetween", None)
    run, _, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 1"), restart_backoff_secs=0.0,
                                  restart_backoff_max_secs=0.0)
    assert run.run() == 1
    (lost,) = [e for e in caplog.records if getattr(e, "stoker_event", "") == "checkpoint_between_not_loaded"]
    assert (lost.levelname, lost.name, lost.stoker_fields) == ("WARNING", local_run.__name__, {
        "task": "twice", "records_lost": 1,
        "reason": "ModuleNotFoundError: import of executor.task.checkpointbetween halted; None in sys.modules"})
    assert _restart_records(sandbox) == []


def _in_a_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_a_stop_signal_in_the_restart_delay_ends_the_run_128_plus_its_number(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=local_run.__name__)
    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 1"),
                                    restart_backoff_secs=20.0, restart_backoff_max_secs=20.0)

    def stop_in_the_delay() -> None:  # as the signal relay's thread calls it
        wait_for(lambda: "restarting in" in out.getvalue(), 10, message="the restart's line")
        run._on_signal(signal.SIGTERM)

    thread = _in_a_thread(stop_in_the_delay)
    began = time.monotonic()
    assert run.run() == 143 and time.monotonic() - began < 10
    thread.join(10)
    assert _untimed(out)[-1] == "twice.0      stoker           stopped by SIGTERM during the restart delay (exit 143)"
    assert _events(caplog)[-1] == ("INFO", "run_ended", {
        "task": "twice.0", "state": "FAILED", "exit": 143, "reason": "stopped by SIGTERM during the restart delay"})
    assert [r["delay_secs"] for r in _restart_records(sandbox)] == [20.0]


def test_stoker_kill_in_the_restart_delay_is_told_no_task_ran_and_the_run_exits_as_its_last_task(tmp_path):
    from executor.host.controlwire import KillControl
    from tests.support.control_socket import ask_all

    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 1"),
                                    restart_backoff_secs=20.0, restart_backoff_max_secs=20.0)
    answers = []

    def kill_in_the_delay() -> None:
        wait_for(lambda: "restarting in" in out.getvalue(), 10, message="the restart's line")
        answers.extend(ask_all(sandbox, KillControl()))  # `stoker kill`

    thread = _in_a_thread(kill_in_the_delay)
    assert run.run() == 1
    thread.join(10)
    assert [(a.ok, a.message) for a in answers] == [
        (True, "no task was running (the supervisor was between attempts); it stops")]
    assert _untimed(out)[-1] == "twice.0      stoker           stopped by `stoker kill` during the restart delay (exit 1)"


def test_a_second_stop_signal_kills_at_once_what_the_first_gave_its_grace(tmp_path):
    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline='trap "" TERM; echo up; sleep 60'),
                                    kill_grace_secs=20.0)

    def stop_twice() -> None:
        wait_for(lambda: (sandbox / ".logs/p/0/stdout").exists() and
                 (sandbox / ".logs/p/0/stdout").read_text() == "up\n", 10, message="the process up")
        run._on_signal(signal.SIGTERM)
        wait_for(lambda: "KILLING" in out.getvalue(), 10, message="the graceful stop begun")
        run._on_signal(signal.SIGQUIT)

    thread = _in_a_thread(stop_twice)
    began = time.monotonic()
    assert run.run() == 143 and time.monotonic() - began < 10  # the first signal's status, without the grace
    thread.join(10)
    assert "second stop signal (SIGQUIT)" in out.getvalue()


def test_a_stop_signal_s_run_says_it_all_once_and_gives_the_processes_the_kill_grace(tmp_path):
    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline='trap "" TERM; echo up; sleep 60'),
                                    kill_grace_secs=0.3, announce="127.0.0.1:2181")
    stdout = sandbox / ".logs/p/0/stdout"

    def stop() -> None:  # once RUNNING is said: the hint comes with the next line
        wait_for(lambda: stdout.exists() and stdout.read_text() == "up\n", 10, message="the process up")
        wait_for(lambda: "STARTING → RUNNING" in out.getvalue(), 10, message="its RUNNING line")
        run._on_signal(signal.SIGTERM)

    thread = _in_a_thread(stop)
    assert run.run() == 143
    thread.join(10)
    task = "twice.0      task             "
    assert _untimed(out) == _as_root([
        f"stoker run: sandbox {sandbox}",
        "stoker run: warning: --announce: the job has no `announce = Announcer(...)`; nothing is announced",
        f"{task}NEW → STARTING  task launched; sandbox ready, starting processes",
        "twice.0      p[0]             WAITING → RUNNING  starting run 0",
        f"{task}STARTING → RUNNING  processes started; no health check configured",
        f"{task}RUNNING → KILLING  stopped by SIGTERM",
        " " * 44 + "SIGTERM: stopping gracefully; press Ctrl-C again (or send another SIGTERM) "
        "to kill every process at once",
        "twice.0      supervisor       ACTIVE → CLEANING  stopped by SIGTERM; stopping 1 running process: SIGTERM now, "
        "SIGKILL 0.3 s later",
        "twice.0      p[0]             RUNNING → KILLED  killed by SIGKILL after the task's SIGKILL",
        "twice.0      supervisor       CLEANING → KILLED  stopped by SIGTERM",
        f"{task}KILLING → KILLED  stopped by SIGTERM",
        "twice.0      stoker           KILLED: stopped by SIGTERM; stopped on request; task KILLED (exit 143)"])


def _bare(tmp_path: Path) -> local_run.LocalRun:
    return local_run.LocalRun(RunSettings(config=str(tmp_path / "unused.aurora")), out=io.StringIO())


def test_ctrl_z_is_declined_in_full_then_briefly_and_stops_nothing(tmp_path, caplog):
    run = _bare(tmp_path)
    for _ in range(3):
        run._on_signal(signal.SIGTSTP)
    said = [(level, event, fields["signal"], fields["reason"]) for level, event, fields in _events(caplog)]
    assert [said[0][:3], *said[1:]] == [("WARNING", "suspend_declined", "SIGTSTP")] + [
        ("WARNING", "suspend_declined", "SIGTSTP", "Ctrl-Z (SIGTSTP) declined again, as before; Ctrl-C stops the task")] * 2
    assert said[0][3] == (
        "Ctrl-Z (SIGTSTP): stoker run does not suspend: its processes run in sessions of their own and would run on "
        "unsupervised (no restarts, no health checks), and a health check cut by the pause would fail the task; it "
        "supervises on. Ctrl-C stops the task; to keep the shell, start it in the background (`&`, nohup, tmux)")
    assert not run._stop.is_set()


def test_a_stray_signal_and_a_redraw_stop_nothing(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    run = _bare(tmp_path)
    for signum in (signal.SIGUSR1, signal.SIGWINCH, signal.SIGCONT):
        run._on_signal(signum)
    assert [(r.stoker_event, r.stoker_fields["signal"]) for r in caplog.records if hasattr(r, "stoker_event")] == [
        ("signal_ignored", "SIGUSR1")]
    assert not run._stop.is_set()


def test_the_first_stop_signal_stops_gracefully_and_sets_the_exit_the_second_hurries(tmp_path):
    run = _bare(tmp_path)
    assert (run._exit_code(0), run._exit_code(1), run._stopped_by()) == (0, 1, "`stoker kill`")
    run._on_signal(signal.SIGHUP)
    assert run._stop.is_set() and run._stop_reason == "stopped by SIGHUP" and run._hurry is None
    assert (run._exit_code(0), run._exit_code(1), run._stopped_by()) == (129, 129, "SIGHUP")
    run._on_signal(signal.SIGINT)
    assert (run._hurry, run._stop_reason, run._stopped_by()) == ("second stop signal (SIGINT)", "stopped by SIGHUP", "SIGHUP")


def test_a_ctrl_c_ignored_when_the_run_started_stays_ignored(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=local_run.__name__)
    run = _bare(tmp_path)
    found = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        relay = run._relay_signals()
        try:
            run._on_signal(signal.SIGINT)
        finally:
            run._let_go(relay)
    finally:
        signal.signal(signal.SIGINT, found)
    assert relay is not None and not run._stop.is_set()
    assert _events(caplog) == [("DEBUG", "signal_ignored", {
        "signal": "SIGINT", "reason": "SIGINT was ignored when stoker run started (a script's background job)"})]
