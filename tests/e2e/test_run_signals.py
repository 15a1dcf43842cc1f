"""`stoker run` under real pipes, terminals and signals (docs/contract.md §6, §9).

A closed stdout never stops the task; SIGINT, SIGTERM, SIGHUP and SIGQUIT stop it gracefully
(lifecycle endpoints, SIGTERM, the final processes) and exit 128 + the signal's number; a
second signal of any of the four kills at once; one while a kill -9'd run waits to restart
starts nothing; `--kill-grace` bounds the whole stop; an endpoint that answers
501 is not waited for; a stray signal (SIGUSR1, SIGALRM, SIGRTMIN+3, SIGTRAP) is ignored. Real processes, a real pipe, a real pseudo-terminal.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import pidnames, stoker_proc
from tests.support.configs import RESOURCES, write_config
from tests.support.pty_proc import PtyProcess
from tests.support.shellwords import fake_sh, python_sh
from tests.support.stoker_proc import (
    REPO,
    checkpoint_records,
    end_run,
    kill_leftovers,
    live,
    signal_a_worker_thread,
    stoker_runs,
    task_pids,
)
from tests.support.waiting import wait_for


def service(tmp_path: Path, main: str, *, final: str = "echo finalized > final.txt", extra: str = "",
            task_extra: str = "") -> Path:
    """A service with a main process `main`, a final process, and `extra` job fields."""
    return write_config(tmp_path, f"""
        main = Process(name='main', cmdline={main!r})
        fin = Process(name='fin', cmdline={final!r}, final=True)
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main, fin], {RESOURCES}{task_extra}){extra})]
    """)


def ticking_service(tmp_path: Path) -> Path:
    """A service that prints a state change every ~0.15 s (a daemon that keeps restarting)."""
    return write_config(tmp_path, f"""
        main = Process(name='main', cmdline={TRAPS_TERM!r})
        tick = Process(name='tick', cmdline='sleep 0.05', daemon=True, min_duration=0.1)
        fin = Process(name='fin', cmdline='echo finalized > final.txt', final=True)
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main, tick, fin], {RESOURCES}))]
    """)


# A main process that notes the SIGTERM it gets, then exits. It says when its trap is set:
# the task is RUNNING as soon as bash is forked, and a SIGTERM before the trap kills it
# without a note (under load, now and then).
TRAPS_TERM = "trap 'echo term > got_term; exit 0' TERM; touch trapped; while true; do sleep 0.05; done"


def wait_trapped(sandbox: Path) -> None:
    wait_for(lambda: (sandbox / "trapped").exists(), 10, message="main's SIGTERM trap is set")


def ticks_started(sandbox: Path) -> int:
    return sum(1 for r in checkpoint_records(sandbox) if r.get("process") == "tick" and r.get("to") == "RUNNING")


def wait_ticks_restart(sandbox: Path, more: int = 2) -> None:
    """`more` ticks start from now on: the task is supervised on, and each start is a state
    change written to the console. (A fixed second of sleep, then at least 3 ticks in all,
    counted those before the close too, and could count too few on a loaded machine.)"""
    before = ticks_started(sandbox)
    wait_for(lambda: ticks_started(sandbox) >= before + more, 10, message=f"{more} more ticks started")


# A health-checked server that ignores SIGTERM; its lifecycle endpoints answer CODE.
def server(code: int = 200) -> str:
    return (f"exec {fake_sh()} --serve-health {{{{thermos.ports[health]}}}} "
            f"--ignore-sigterm --lifecycle-code {code}")


HEALTH = (", health_check_config=HealthCheckConfig(initial_interval_secs=2, interval_secs=0.2, "
          "health_checker=HealthCheckerConfig(tcp=TcpHealthChecker()))")


@pytest.fixture
def stoker(tmp_path):
    with stoker_runs(tmp_path) as start:
        yield start


def test_a_closed_stdout_never_kills_the_task(tmp_path):
    """`stoker run | head -2`: the reader goes away; the task goes on, and a later stop is
    still graceful and truthful."""
    cfg = ticking_service(tmp_path)
    sandbox = tmp_path / "sandbox"
    err = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "executor", "run", str(cfg), "--sandbox", str(sandbox)],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.stdout.readline()
        proc.stdout.close()  # `head -2` exits
        wait_for(lambda: b"stdout is gone" in (tmp_path / "stderr").read_bytes(), 5)
        wait_ticks_restart(sandbox)  # the task is supervised on: ticks restart, main runs on
        pids = task_pids(sandbox)
        main_pid = next(pidnames.named(r["pid"], r.get("wall")) for r in checkpoint_records(sandbox)
                        if r.get("process") == "main" and r.get("pid"))
        assert proc.poll() is None and live({main_pid}) == {main_pid}
        wait_trapped(sandbox)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 143
        stderr = (tmp_path / "stderr").read_text()
        assert "Traceback" not in stderr and stderr.count("stdout is gone") == 1, stderr
        assert (sandbox / "got_term").read_text() == "term\n"  # SIGTERM, not SIGKILL
        assert (sandbox / "final.txt").read_text() == "finalized\n"
        tasks = [r for r in checkpoint_records(sandbox) if r["kind"] == "task"]
        assert tasks[-1]["to"] == "KILLED"
        assert not live(pids | set(task_pids(sandbox)))
    finally:
        end_run(proc, sandbox)
        err.close()


def test_a_shell_pipe_into_head_leaves_the_task_running(tmp_path):
    """The real thing: `stoker run ... | head -2` in a shell, with no traceback."""
    cfg = ticking_service(tmp_path)
    sandbox = tmp_path / "sandbox"
    shell = subprocess.Popen(
        ["/bin/sh", "-c", f"{python_sh('-m', 'executor', 'run', cfg, '--sandbox', sandbox)} 2>stderr | head -2"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert shell.stdout is not None
        first = shell.stdout.readline().decode()
        shell.stdout.readline()
        assert first.startswith("stoker run: sandbox")
        # head has exited: the next state change finds the pipe closed
        wait_for(lambda: b"stdout is gone" in (tmp_path / "stderr").read_bytes(), 5)
        wait_ticks_restart(sandbox)
        assert [r["to"] for r in checkpoint_records(sandbox) if r["kind"] == "task"][-1] == "RUNNING"
        assert shell.poll() is None  # the shell waits for stoker, which supervises on
        header = next(r for r in checkpoint_records(sandbox) if r["kind"] == "header")
        os.kill(header["supervisor_pid"], signal.SIGTERM)
        assert shell.wait(20) == 0  # the pipeline's status is head's, the last command
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait(10)
        kill_leftovers(task_pids(sandbox))
    assert "Traceback" not in (tmp_path / "stderr").read_text()
    assert [r["to"] for r in checkpoint_records(sandbox) if r["kind"] == "task"][-1] == "KILLED"
    assert (sandbox / "final.txt").read_text() == "finalized\n"


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                       (signal.SIGQUIT, 131)])
def test_a_stop_signal_is_graceful_and_exits_128_plus_its_number(stoker, tmp_path, sig, code):
    run = stoker(str(service(tmp_path, TRAPS_TERM)))
    run.wait_output("main[0]          WAITING → RUNNING")
    run.wait_output("task             STARTING → RUNNING")
    wait_trapped(run.sandbox)
    run.signal(sig)
    assert run.wait() == code
    out = run.stdout()
    assert f"stopped by {sig.name}" in out and f"(exit {code})" in out
    assert (run.sandbox / "got_term").read_text() == "term\n"
    assert (run.sandbox / "final.txt").read_text() == "finalized\n"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_taken_by_another_thread_stops_an_idle_run(stoker, tmp_path, sig, code):
    """A signal sent to the process may land on any of its threads (here: not the main one,
    which sleeps in the owner's queue while nothing happens): the run stops as promptly as
    ever, where it used to wait for the task's next event."""
    run = stoker(str(service(tmp_path, "sleep 1000")))
    run.wait_output("task             STARTING → RUNNING")
    signal_a_worker_thread(run.pid, sig)
    assert run.wait(10) == code
    assert f"stopped by {sig.name}" in run.stdout()
    assert (run.sandbox / "final.txt").read_text() == "finalized\n"


def test_a_stray_signal_from_a_task_process_is_ignored_with_a_line(stoker, tmp_path):
    """Before, a task's `kill -USR1 $PPID` (a daemon telling its parent it is ready), or a
    stray SIGUSR2 or SIGALRM, ended `stoker run` on the spot (exit 138: 'User defined signal
    1'), its task left to the watchdog's SIGKILL, no final process run, and LOST; so did a
    real-time signal, SIGTRAP, SIGSYS, SIGSTKFLT or SIGXCPU until they were strays too, and
    a stray once the run's session had closed, as it wrote its last lines. The runs still
    get each at its default (relayed, not ignored: exec resets a handled signal)."""
    main = ("grep ^SigIgn: /proc/self/status > ignored; kill -USR1 $PPID; kill -USR1 $PPID; "
            "kill -USR2 $PPID; kill -ALRM $PPID; kill -RTMIN+3 $PPID; kill -TRAP $PPID; "
            "kill -SYS $PPID; kill -XCPU $PPID; touch sent; sleep 1000")
    run = stoker(str(service(tmp_path, main)))
    wait_for(lambda: (run.sandbox / "sent").exists(), 10, message="the stray signals sent")
    wait_for(lambda: run.stderr().count("signal_ignored") >= 7, 10, message="one line for each")
    run.signal(signal.SIGTERM)
    while run.proc.poll() is None:  # until it exits (unreaped, its pid is not reused)
        os.kill(run.pid, signal.SIGUSR2)
        time.sleep(0.0005)
    assert run.wait() == 143
    assert "stopped by SIGTERM" in run.stdout()
    err = run.stderr()
    named = sorted(line.split("signal=")[1].split()[0] for line in err.splitlines() if "signal_ignored" in line)
    assert named == ["SIGALRM", "SIGRTMIN+3", "SIGSYS", "SIGTRAP", "SIGUSR1", "SIGUSR2", "SIGXCPU"], err
    # (pending ones come in any order; a second at DEBUG)
    ignored = int((run.sandbox / "ignored").read_text().split()[1], 16)
    for sig in (signal.SIGRTMIN + 3, signal.SIGTRAP, signal.SIGUSR1, signal.SIGRTMAX):
        assert not ignored & 1 << (sig - 1), f"{sig} ignored in the run: {ignored:x}"
    assert (run.sandbox / "final.txt").read_text() == "finalized\n"


def test_a_ctrl_c_it_was_started_ignoring_stays_ignored_as_nohups_sighup(stoker, tmp_path, monkeypatch):
    """A script's background job (`stoker run job.aurora &`) starts with SIGINT ignored, as
    a nohup'd one with SIGHUP: a Ctrl-C meant for the script's foreground is not its stop.
    It was dropped while Stoker loaded and obeyed once the signal relay was up; now it stays
    ignored (SIGINT, then SIGTERM: the stop is SIGTERM's). The runs still get SIGINT at its
    default (test_early_start.py, test_every_run_starts_with_the_same_signals...)."""
    @contextlib.contextmanager
    def sigint_ignored():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    monkeypatch.setattr(stoker_proc, "stop_signals_default", sigint_ignored)
    run = stoker(str(service(tmp_path, TRAPS_TERM)))
    run.wait_output("task             STARTING → RUNNING")
    wait_trapped(run.sandbox)
    run.signal(signal.SIGINT)
    run.signal(signal.SIGTERM)
    assert run.wait() == 143
    out = run.stdout()
    assert "stopped by SIGTERM" in out and "stopped by SIGINT" not in out
    assert (run.sandbox / "final.txt").read_text() == "finalized\n"


def test_sighup_from_a_closed_terminal_runs_the_graceful_stop(tmp_path):
    """The terminal (or SSH session) goes away: SIGHUP, then SIGTERM to the processes and
    the final processes, not the watchdog's SIGKILL."""
    cfg = service(tmp_path, TRAPS_TERM)
    sandbox = tmp_path / "sandbox"
    term = PtyProcess(["run", str(cfg), "--sandbox", str(sandbox)], tmp_path)
    try:
        term.read_until(b"task             STARTING \xe2\x86\x92 RUNNING")
        wait_trapped(sandbox)
        started = time.monotonic()
        term.hang_up()
        assert term.wait() == 129
        stopped = time.monotonic() - started
        assert (sandbox / "got_term").read_text() == "term\n"
        assert (sandbox / "final.txt").read_text() == "finalized\n"
        tasks = [r for r in checkpoint_records(sandbox) if r["kind"] == "task"]
        assert (tasks[-1]["to"], tasks[-1]["reason"]) == ("KILLED", "stopped by SIGHUP")
        assert not live(task_pids(sandbox))
        assert stopped < 5, f"the stop took {stopped:.2f} s"
    finally:
        term.close()
        kill_leftovers(task_pids(sandbox))


def test_a_second_ctrl_c_kills_at_once(stoker, tmp_path):
    cfg = service(tmp_path, server(), final="sleep 30; echo finalized > final.txt", extra=HEALTH)
    run = stoker(str(cfg))
    run.wait_output("task             STARTING → RUNNING")
    run.signal(signal.SIGINT)
    run.wait_output("answered HTTP 200; waiting up to 5 s for the processes to exit")
    took = run.stop(signal.SIGINT, 130)
    # At once: the output below says what was skipped; the time only guards against waiting
    # out the 5 s lifecycle wait it interrupted (a loaded machine adds a second or more).
    assert took < 5.0, f"the second Ctrl-C took {took:.2f} s"
    out = run.stdout()
    assert "press Ctrl-C again (or send another SIGTERM) to kill every process at once" in out
    assert ("stop             now: second stop signal (SIGINT): SIGKILL to every process now; the waits "
            "left and the final processes are skipped") in out
    assert "fin              WAITING → KILLED  not started: final processes skipped" in out
    assert not (run.sandbox / "final.txt").exists()
    assert not live(task_pids(run.sandbox))


# A main process that ignores SIGTERM: the staged kill waits out its grace before SIGKILL.
IGNORES_TERM = "trap '' TERM; touch trapped; while true; do sleep 0.05; done"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGQUIT, 131)])
def test_a_second_stop_signal_of_the_same_kind_in_the_sigterm_grace_kills_at_once(stoker, tmp_path, sig, code):
    """The moment between the staged kill's SIGTERM and its SIGKILL (a 30 s grace, a process
    that ignores SIGTERM): the same signal again SIGKILLs it now, skips the final process,
    and the exit is still the first signal's 128 + N (docs/contract.md §6: every stop
    signal, Ctrl-\\ too, not only a second Ctrl-C)."""
    cfg = service(tmp_path, IGNORES_TERM, final="sleep 30; echo finalized > final.txt")
    run = stoker(str(cfg), "--kill-grace", "30")
    run.wait_output("task             STARTING → RUNNING")
    wait_trapped(run.sandbox)
    pids = task_pids(run.sandbox)
    run.signal(sig)
    run.wait_output("SIGTERM now, SIGKILL 30 s later")
    took = run.stop(sig, code)
    assert took < 15.0, f"the second {sig.name} took {took:.2f} s"  # guards against the grace
    out = run.stdout()
    assert (f"stop             now: second stop signal ({sig.name}): SIGKILL to every process now; "
            "the waits left and the final processes are skipped") in out
    assert "main[0]          RUNNING → KILLED  killed by SIGKILL after the task's SIGKILL" in out
    assert "fin              WAITING → KILLED  not started: final processes skipped" in out
    assert not (run.sandbox / "final.txt").exists()
    assert [r["to"] for r in checkpoint_records(run.sandbox) if r["kind"] == "task"][-1] == "KILLED"
    assert "Traceback" not in run.stderr()
    assert not live(pids)


def test_ctrl_c_with_a_501_lifecycle_stops_a_cooperative_service_at_once(stoker, tmp_path):
    main = (f"exec {fake_sh()} --serve-health {{{{thermos.ports[health]}}}} "
            "--lifecycle-code 501")
    run = stoker(str(service(tmp_path, main, extra=HEALTH)))
    run.wait_output("task             STARTING → RUNNING")
    took = run.stop(signal.SIGINT, 130)
    assert took < 10.0, f"the stop took {took:.2f} s (Aurora would wait 10 s)"  # a guard; see the output
    out = run.stdout()
    assert "/quitquitquit answered HTTP 501; not waiting: HTTP 501 says the service does not implement it" in out
    assert "/abortabortabort answered HTTP 501; not waiting" in out
    assert "signals: lifecycle endpoints done; processes still running: SIGTERM now" in out
    assert (run.sandbox / "final.txt").read_text() == "finalized\n"


def test_kill_grace_bounds_the_whole_stop_lifecycle_waits_included(stoker, tmp_path):
    run = stoker(str(service(tmp_path, server(200), extra=HEALTH)), "--kill-grace", "1")
    run.wait_output("task             STARTING → RUNNING")
    took = run.stop(signal.SIGINT, 130)
    # Well under the 5 s lifecycle wait it cut (a guard: the output below says it was cut).
    assert took < 5.0, f"the stop took {took:.2f} s with --kill-grace 1"
    out = run.stdout()
    assert re.search(r"answered HTTP 200; waiting up to 0(\.\d+)? s for the processes to exit "
                     r"\(graceful_shutdown_wait_secs=5, cut to fit the stop's bound\)", out), out
    assert "main[0]          RUNNING → KILLED  killed by SIGKILL" in out
    assert (run.sandbox / "final.txt").read_text() == "finalized\n"


def test_a_stop_signal_in_the_restart_delay_exits_at_once_and_offers_no_second_signal(stoker, tmp_path):
    """Between two attempts nothing runs: the stop is immediate, and the line printed last
    is the exit, not a hint to press Ctrl-C again to kill processes there are none of."""
    run = stoker(str(service(tmp_path, "true")), "--restart-backoff", "30")
    run.wait_output("restarting in 30.0 s")
    run.signal(signal.SIGINT)
    assert run.wait(10) == 130
    out = run.stdout()
    assert out.rstrip().endswith("stopped by SIGINT during the restart delay (exit 130)"), out[-400:]
    assert "press Ctrl-C again" not in out


def test_a_ctrl_c_while_a_failed_attempt_stops_ends_it_killed_and_nothing_restarts(stoker, tmp_path):
    """A service's process failed for good; its final process runs (until the test lets it
    end) when Ctrl-C comes. The attempt ends KILLED by the stop, as a KILL under Mesos, and
    the service is not restarted: the user stopped it."""
    run = stoker(str(service(tmp_path, "exit 3", final="until [ -e release ]; do sleep 0.02; done")))
    run.wait_output("fin[0]           WAITING → RUNNING")
    run.signal(signal.SIGINT)
    run.wait_output("RUNNING → KILLING")
    (run.sandbox / "release").touch()
    assert run.wait(10) == 130
    out = run.stdout()
    assert "main[0]          RUNNING → FAILED" in out, out
    assert "KILLED: stopped by SIGINT; stopped on request; task KILLED (exit 130)" in out, out[-600:]
    assert "restarting" not in out and "FAILED: " not in out, out


def test_a_stop_signal_while_a_run_killed_by_sigkill_waits_to_restart_ends_it_and_starts_nothing(stoker, tmp_path):
    """The moment after a `kill -9` of a process, its next run waiting out `min_duration`: a
    SIGTERM ends that wait at once (no restart: `not restarted: the task is stopping`), the
    final process still runs, and the run exits 143 with the task KILLED in the checkpoint."""
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline='exec sleep 600', min_duration=30)
        fin = Process(name='fin', cmdline='echo finalized > final.txt', final=True)
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main, fin], {RESOURCES}))]
    """)
    run = stoker(str(cfg))
    run.wait_output("task             STARTING → RUNNING")
    (pid,) = wait_for(lambda: task_pids(run.sandbox), 10, message="main's run in the checkpoint")
    os.kill(pid, signal.SIGKILL)
    run.wait_output("waiting 30 s for min_duration=30")
    run.stop(signal.SIGTERM, 143)
    out = run.stdout()
    assert "main[0]          WAITING → KILLED  not restarted: the task is stopping" in out
    assert "main[1]" not in out
    assert (run.sandbox / "final.txt").read_text() == "finalized\n"
    assert [r["to"] for r in checkpoint_records(run.sandbox) if r["kind"] == "task"][-1] == "KILLED"
    assert "Traceback" not in run.stderr()
    assert not live(task_pids(run.sandbox))
