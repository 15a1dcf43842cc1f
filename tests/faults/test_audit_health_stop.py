"""A supervisor stopped (SIGSTOP, a debugger, `kill -STOP` by an operator) while a health
check is in flight: the time it was not running is not held against the check.

SIGSTOP cannot be caught. The endpoint (or the health command) goes on while the supervisor
is stopped and answers in time; on SIGCONT every thread of the supervisor wakes at once,
long past the check's deadline. The HTTP check's watchdog used to fire first and shut the
socket down on an answer already waiting unread, and the shell check's runner used to
give the reaper no time to collect a command that had already exited with status 0: each
was a failure ("timed out after ..."), which with max_consecutive_failures 0 failed a
healthy task.

The check runs in a child Python process (the real checker; for the shell check, the real
supervisor's `run_command`), which the test stops while the check waits and continues
once the check's timeout has passed; the endpoint is a real HTTP server on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support import proc_scan
from tests.support.http_server import Gated, ScriptedHTTPServer
from tests.support.ports import stalled_listener
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

TIMEOUT_SECS = 0.5
ANSWER_DELAY_SECS = 0.1  # the health command ends this long after it started: while stopped
STOPPED_SECS = 0.8  # well past the check's timeout
GO_AFTER_SECS = 0.15  # a paused command's answer comes this long after the resume: within its timeout
# The paused command's timeout, and its pause: its deadline must pass while it is paused, and
# it is paused only once it has started (bash, then its first `touch`). Under load (a 2-core
# CI machine, another worker) that start took more than 0.5 s, past TIMEOUT_SECS: the
# command timed out before the pause and the test failed.
PAUSED_TIMEOUT_SECS = 2.0
PAUSED_SECS = 2.5

HTTP_CHILD = """
import sys
import threading
from healthcheck.http_check import HttpChecker
print("ready", flush=True)
sys.stdin.readline()
attempt = HttpChecker(port=int(sys.argv[1]), timeout_secs=float(sys.argv[2])).check()
print(attempt.outcome.value, attempt.reason, flush=True)
"""

SHELL_CHILD = """
import os, sys
from pathlib import Path
from executor.procs.supervisor import Supervisor
from healthcheck.shell import ShellChecker
env = {"PATH": os.environ["PATH"], "STOKER_STOP_MARKER": sys.argv[3]}
supervisor = Supervisor(sandbox=Path(sys.argv[1]), task_label="stop.0", env=env,
                        post=lambda event: None)
supervisor.start()
print("ready", flush=True)
sys.stdin.readline()
attempt = ShellChecker(sys.argv[2], float(sys.argv[4]), supervisor.run_command).check()
print(attempt.outcome.value, attempt.reason, flush=True)
supervisor.close()
"""


TCP_CHILD = """
import sys
from healthcheck.checkers import TcpChecker
print("ready", flush=True)
sys.stdin.readline()
attempt = TcpChecker(port=int(sys.argv[1]), timeout_secs=float(sys.argv[2])).check()
print(attempt.outcome.value, attempt.reason, flush=True)
"""
TCP_TIMEOUT_SECS = 0.2
TCP_STOPPED_SECS = 0.5  # past the timeout, before the kernel's first SYN retransmit (1 s)


def _state(pid: int) -> str:
    """The process state letter from /proc/PID/stat ('T' when stopped)."""
    stat = proc_scan.read_bytes(f"/proc/{pid}/stat").decode()
    return stat.rsplit(")", 1)[1].split()[0] if stat else ""


def _unread(client_port: int) -> int | None:
    """Bytes waiting unread in the receive queue of the loopback TCP socket whose local port
    is `client_port` (the checker's end of its connection), from /proc/net/tcp."""
    local = f"0100007F:{client_port:04X}"
    for line in proc_scan.read_bytes("/proc/net/tcp").decode().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[4].split(":")[1], 16)
    return None


def _run_stopped(script: str, args: list[str], in_flight, figures, label: str,
                 while_stopped=lambda: None, after_continue=lambda: None, *,
                 timeout_secs: float = TIMEOUT_SECS, stopped_secs: float = STOPPED_SECS) -> tuple[str, float]:
    """Starts the child, lets it begin its check, stops it once `in_flight()` says the check
    is waiting, calls `while_stopped()`, keeps it stopped `stopped_secs`, continues it, calls
    `after_continue()`; returns what it printed and when it was stopped. `timeout_secs`: the
    check's, for the figure."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        child.stdin.write("go\n")
        child.stdin.flush()
        wait_for(in_flight, 5, 0.002, message="the check is in flight")
        os.kill(child.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_for(lambda: _state(child.pid) == "T", 5, 0.002, message="the child is stopped")
        while_stopped()
        # The stopped span is the point of the test: the check's deadline passes meanwhile.
        time.sleep(max(0.0, stopped_at + stopped_secs - time.monotonic()))
        os.kill(child.pid, signal.SIGCONT)
        after_continue()
        out, _ = child.communicate(timeout=10)
        figures.add(f"{label}: stopped", f"{stopped_secs * 1000:.0f} ms "
                    f"(timeout {timeout_secs * 1000:.0f} ms); result: {out.strip()}")
        return out.strip(), stopped_at
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait(5)


def _http_stopped_once(figures) -> tuple[str, float]:
    """One run: the headers at once; "o" sent while the checker is stopped; "k" only once
    the checker, continued long past its deadline, has read everything before it and waits
    for more. Returns the result and how long after the request the checker was stopped."""
    with ScriptedHTTPServer([Gated(parts=(b"o", b"k"))]) as server:
        def send_o() -> None:
            server.release()
            wait_for(lambda: server.parts_sent == 1, 5, 0.002, message="'o' was sent")

        def send_k_once_o_is_read() -> None:
            port = server.received[0].client_port
            # None: the checker closed its end (it called the check a failure).
            wait_for(lambda: not _unread(port), 5, 0.002, message="the checker read 'o'")
            server.release()

        out, stopped_at = _run_stopped(HTTP_CHILD, [str(server.port), str(TIMEOUT_SECS)],
                                       lambda: server.requests, figures, "HTTP",
                                       send_o, send_k_once_o_is_read)
        return out, stopped_at - server.received[0].at


def test_an_http_check_in_flight_while_the_supervisor_is_stopped_passes(figures):
    # Without the stall rule the wait for "k" after the deadline is a timeout. A host too
    # busy to stop the checker soon after its request (well before its deadline) makes a
    # run that proves nothing: it is run again.
    for _ in range(3):
        out, stop_delay = _http_stopped_once(figures)
        if stop_delay < TIMEOUT_SECS / 2:
            break
        figures.add("HTTP: run again", f"the checker was stopped {stop_delay * 1000:.0f} ms "
                    "after its request")
    else:
        pytest.fail("the checker could not be stopped within half its timeout of its request")
    assert out.startswith("passed "), out
    assert "answered HTTP 200" in out, out


def _syn_sents(port: int) -> int:
    """How many loopback TCP sockets are connecting (SYN_SENT) to 127.0.0.1:`port` (/proc/net/tcp)."""
    remote = f"0100007F:{port:04X}"
    lines = proc_scan.read_bytes("/proc/net/tcp").decode().splitlines()[1:]
    return sum(1 for fields in map(str.split, lines) if fields[2] == remote and fields[3] == "02")


def test_a_tcp_check_in_flight_while_the_supervisor_is_stopped_passes(figures):
    """The task's listener does not accept in time (its backlog full: its SYNs dropped) while
    the checker waits; the checker is stopped past its deadline, and the listener takes
    connections again meanwhile. Was: on its continue the connect's wait ended as the
    attempt's timeout ("timed out after 0.2 s"). Now, as the HTTP check, the attempt gets its
    timeout again: the connect is tried again, and passes."""
    listener, *held = stalled_listener()
    port = listener.getsockname()[1]

    def make_room() -> None:  # the queued connection taken, the others' SYNs given up
        for sock in held:
            sock.close()
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                listener.accept()[0].close()

    try:
        before = wait_for(lambda: _syn_sents(port), 5, 0.002, message="the backlog full")
        out, _ = _run_stopped(TCP_CHILD, [str(port), str(TCP_TIMEOUT_SECS)],
                              lambda: _syn_sents(port) > before, figures, "TCP", make_room,
                              timeout_secs=TCP_TIMEOUT_SECS, stopped_secs=TCP_STOPPED_SECS)
    finally:
        for sock in [*held, listener]:
            sock.close()
    assert out == f"passed TCP connect to localhost:{port} succeeded", out


def test_a_shell_check_in_flight_while_the_supervisor_is_stopped_passes(tmp_path: Path, figures):
    marker = uuid.uuid4().hex
    started = tmp_path / "started"
    # It leaves a process behind, which the reaper kills before it reaps the command: on
    # SIGCONT the command is long done, and the reaper has work to do before it says so.
    command = f"touch {started}; sleep 30 & sleep {ANSWER_DELAY_SECS}"
    try:
        out, _ = _run_stopped(SHELL_CHILD, [str(tmp_path), command, marker, str(TIMEOUT_SECS)],
                           started.exists, figures, "shell")
    finally:
        proc_scan.kill_carrying(f"STOKER_STOP_MARKER={marker}")
    assert out == "passed health command exited with status 0", out


def test_past_its_deadline_the_command_runner_waits_for_the_reaper_of_a_command_that_exited():
    """What the shell check above meets on SIGCONT, made certain: the deadline has passed,
    the command has exited (its zombie is there), and the reaper, woken at the same moment,
    has not reaped it yet. That is no timeout: the runner waits for the reaper."""
    from executor.procs.commands import _follow, _Tail
    from executor.procs.spawn import CommandChild

    popen = subprocess.Popen(["true"])
    read_fd, write_fd = os.pipe()  # the write end stays open: no EOF, only the exit tells
    try:
        wait_for(lambda: _state(popen.pid) == "Z", 5, 0.002, message="the command has exited")
        child = CommandChild(pid=popen.pid, popen=popen, marker="")
        reaper = threading.Timer(0.05, lambda: child.reaped(0))  # the reaper, a moment late
        reaper.start()
        started = time.monotonic()
        reaped = _follow(read_fd, child, _Tail(1024), deadline=started - 1.0)
        took = time.monotonic() - started
        reaper.join()
    finally:
        os.close(read_fd)
        os.close(write_fd)
        # the stand-in reaper set the Popen's returncode (as the real one does), so its
        # `wait` would not reap: the exited command is reaped here (it was left a zombie, which
        # mutmut's wait for its own workers took: a KeyError)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(popen.pid, 0)
    assert reaped, "a command that exited before the runner looked was called timed out"
    assert took < 1.0, took


def _stalled_lines(caplog) -> list[dict]:
    return [r.stoker_fields for r in caplog.records if getattr(r, "stoker_event", "") == "health_check_stalled"]


@pytest.mark.parametrize("again_secs", [30.0, None])
def test_a_runner_that_wakes_a_stall_past_the_deadline_gives_a_running_command_its_timeout_again_once(
        again_secs, caplog):
    """In this process: the runner looks first a second past the deadline (it was not running
    at it), the command still runs and ends 0.2 s later. Given its timeout again (`again_secs`)
    it is waited for, with one INFO line saying so; with none to give (the default, the
    runner's second look past the deadline as the test above) it is not, and nothing is said."""
    from executor.procs.commands import _follow, _Tail
    from executor.procs.spawn import CommandChild

    popen = subprocess.Popen(["sleep", "0.2"])
    child = CommandChild(pid=popen.pid, popen=popen, marker="")
    reaper = threading.Thread(target=lambda: child.reaped(os.waitpid(popen.pid, 0)[1]))
    reaper.start()
    read_fd, write_fd = os.pipe()  # the write end stays open: no EOF, only the exit tells
    try:
        with caplog.at_level(logging.INFO, logger="executor.procs.supervisor"):
            given = {} if again_secs is None else {"again_secs": again_secs}
            reaped = _follow(read_fd, child, _Tail(1024), deadline=time.monotonic() - 1.0, **given)
    finally:
        os.close(read_fd)
        os.close(write_fd)
        reaper.join(10)
    if again_secs:
        assert reaped, "a command the runner was not running for was called timed out"
        [fields] = _stalled_lines(caplog)
        assert fields["check"] == "shell" and fields["timeout_secs"] == again_secs, fields
        late = fields["late_secs"]
        assert isinstance(late, float) and 1.0 <= late < 60 and round(late, 3) == late, fields  # in ms
        assert fields["reason"] == ("this process was not running at the command's deadline (stopped, "
                                    "paused or starved): the command gets its timeout again"), fields
    else:
        assert not reaped and not _stalled_lines(caplog)


def test_a_command_given_its_timeout_again_that_does_not_end_in_it_is_left_to_be_killed(caplog):
    """The second timeout bounds the attempt as the first did: the runner returns at its end
    (False: not reaped) while the command still runs, and says the stall once."""
    from executor.procs.commands import _follow, _Tail
    from executor.procs.spawn import CommandChild

    popen = subprocess.Popen(["sleep", "30"])
    child = CommandChild(pid=popen.pid, popen=popen, marker="")
    read_fd, write_fd = os.pipe()
    try:
        with caplog.at_level(logging.INFO, logger="executor.procs.supervisor"):
            reaped = _follow(read_fd, child, _Tail(1024), deadline=time.monotonic() - 1.0, again_secs=0.2)
        running = popen.poll() is None
    finally:
        os.close(read_fd)
        os.close(write_fd)
        popen.kill()
        popen.wait(5)
    assert not reaped and running
    assert len(_stalled_lines(caplog)) == 1


def _stop_all(entry: str, signum: int) -> set[int]:
    """`signum` to every process carrying `entry`, looked for again until every one found
    got it (a loop's next `sleep` may start meanwhile); their pids."""
    sent: set[int] = set()
    while (found := proc_scan.pids_carrying(entry) - sent):
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        sent |= found
    return sent


@pytest.mark.parametrize("output", ["kept", "sent to /dev/null"])
def test_a_shell_check_paused_with_its_supervisor_gets_its_timeout_again(tmp_path: Path, figures, output):
    """A VM paused (or the task's cgroup frozen, the supervisor in it): the health command
    is paused with the supervisor, its deadline passes meanwhile, and on resume it still has
    its work to do (here: an answer that comes GO_AFTER_SECS after the resume, as a frozen
    server's would). That is no timeout of the command's, as it is none of an HTTP check's:
    the check gets its timeout again (was: killed at once, "timed out after ..."). Also
    for a command that sends its output elsewhere (`check >/dev/null 2>&1`, common): the
    runner, its pipe at EOF at once, waits for the command's exit alone (was: that wait
    ended at the first deadline, and the command was killed and called timed out)."""
    marker = uuid.uuid4().hex
    entry = f"STOKER_STOP_MARKER={marker}"
    started, go = tmp_path / "started", tmp_path / "go"
    elsewhere = "exec >/dev/null 2>&1; " if output == "sent to /dev/null" else ""
    command = f"{elsewhere}touch {started}; while [ ! -e {go} ]; do sleep 0.01; done"
    paused: set[int] = set()

    def pause_the_command() -> None:
        paused.update(_stop_all(entry, signal.SIGSTOP))

    def resume_then_answer() -> None:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        time.sleep(GO_AFTER_SECS)  # the resumed check waits this long for its answer
        go.touch()

    try:
        out, _ = _run_stopped(SHELL_CHILD, [str(tmp_path), command, marker, str(PAUSED_TIMEOUT_SECS)],
                              started.exists, figures, f"shell paused with its command (output {output})",
                              pause_the_command, resume_then_answer,
                              timeout_secs=PAUSED_TIMEOUT_SECS, stopped_secs=PAUSED_SECS)
    finally:
        _stop_all(entry, signal.SIGCONT)
        proc_scan.kill_carrying(entry)
    assert out == "passed health command exited with status 0", out


def test_a_supervisor_stopped_for_many_intervals_counts_no_missed_check_and_fires_no_burst(tmp_path, figures):
    """`stoker run` stopped (SIGSTOP) for 15 health intervals between two checks, then
    continued: the checks it could not run are not failures (with max_consecutive_failures
    0, one would fail the task), and they are not made up at once either: the next check runs
    at the continue, the one after it `interval_secs` after that one ended."""
    from tests.support.configs import write_config
    from tests.support.shellwords import fake_sh, in_aurora
    from tests.support.stoker_proc import checkpoint_records, stoker_runs

    interval = 0.1
    cfg = write_config(tmp_path, f"""
        web = Process(name='web', cmdline='exec {in_aurora(fake_sh())} --serve-health {{{{thermos.ports[health]}}}}')
        jobs = [Service(cluster='local', role='me', environment='test', name='web',
                        task=Task(processes=[web], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),
                        health_check_config=HealthCheckConfig(initial_interval_secs=2.0, interval_secs={interval},
                                                              timeout_secs=0.5, max_consecutive_failures=0),
                        lifecycle=DisableLifecycle)]
    """)
    with stoker_runs(tmp_path) as stoker:
        run = stoker(str(cfg))
        run.wait_output("task             STARTING → RUNNING  healthy:")
        os.kill(run.pid, signal.SIGSTOP)
        wait_for(lambda: _state(run.pid) == "T", 5, 0.002, message="stoker run is stopped")
        time.sleep(15 * interval)
        continued = time.time()
        os.kill(run.pid, signal.SIGCONT)
        time.sleep(1.0)
        checks = [r for r in checkpoint_records(run.sandbox)
                  if r["kind"] == "health" and r["wall"] >= continued - 0.01]
        run.signal(signal.SIGINT)
        assert run.wait() == 130
    soon = [r for r in checks if r["wall"] < continued + 2.5 * interval]
    figures.add("stopped 15 intervals", f"{len(checks)} checks in the 1 s after the continue, "
                f"{len(soon)} in its first {2.5 * interval:g} s")
    assert checks and all(r["outcome"] == "passed" for r in checks), checks
    assert "health check failed" not in run.stdout()
    assert len(soon) <= 3, soon  # the first at once, then one per interval: no burst of 15
