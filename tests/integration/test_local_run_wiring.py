"""`stoker run`'s attempt loop in process (`executor/local/run.py`): what it hands each
attempt's supervisor from its settings and what it says of it. systemd's unit hears each
task state, the restart delay, the stop (a signal's or `stoker kill`'s) and is fed its
watchdog; a re-run ends what a lost attempt left in its sandbox and says so; the disk limit
and the announcement reach the supervisor; the task gets the environment the run was given;
a warning to the journal carries its priority; the console's columns fit the task's names, its task
id names the instance; a supervisor that fails before its task ends fails the run (70); a
broken stdout is said once, with the command that shows the task. The command as a
process is tests/e2e's."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from executor.host.controlwire import KillControl
from executor.host.sdnotify import notifier
from executor.local import run as local_run
from executor.local.unitstate import UnitState
from executor.procs.spawn import TASK_MARKER
from executor.task.serverset import TIMED_OUT_REASON
from tests.integration.test_local_run import SERVICE, _stoker_run
from tests.integration.test_local_run_lines import TWICE
from tests.integration.test_lost_attempt_long_header import lost_sandbox
from tests.support.control_socket import ask_all
from tests.support.notify_socket import notify_socket
from tests.support.pidnames import state
from tests.support.stoker_proc import checkpoint_records
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30, method="thread")  # (the run relays SIGALRM, the signal method's timer, as a stray)


def _service(cmdline: str) -> str:
    """test_local_run's SERVICE running `cmdline`."""
    return SERVICE.replace("cmdline='exit 0'", f"cmdline='{cmdline}'")


@pytest.fixture
def systemd(tmp_path) -> Iterator[tuple[dict[str, str], list[str]]]:
    """systemd's variables for a `Type=notify` unit, and the messages its socket received
    (read as they come: the socket queues 10)."""
    heard: list[str] = []
    with notify_socket(tmp_path.name) as (name, sock):
        sock.settimeout(0.05)
        done = threading.Event()

        def read() -> None:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    heard.append(sock.recv(4096).decode())

        reader = threading.Thread(target=read)
        reader.start()
        try:
            yield {"NOTIFY_SOCKET": "@" + name}, heard
        finally:
            done.set()
            reader.join()


def test_systemd_hears_each_state_the_restart_delay_and_the_verdict(tmp_path, systemd):
    variables, heard = systemd
    run, _, _ = _stoker_run(tmp_path, TWICE.format(cmdline="exit 1"), unit=UnitState(notifier(variables)),
                            restart_backoff_secs=0.05, restart_backoff_max_secs=0.05)
    assert run.run() == 1
    failed = "process 'p' failed: exit status 1 after 1 of max_failures=1 runs"
    attempt = ["STATUS=twice.0 STARTING: task launched; sandbox ready, starting processes",
               "READY=1\nSTATUS=twice.0 RUNNING: processes started; no health check configured",
               f"STATUS=twice.0 FAILED: {failed}"]
    wait_for(lambda: len(heard) == 7, message=f"the second attempt's end told: {heard}")
    assert heard[:4] == [*attempt, ("STATUS=twice.0 RESTARTING in 0.05 s: task failed (1 of max_task_failures=2); "
                                    "restarting in 0.05 s (quick end 1)")]
    assert heard[4:] == [attempt[0], attempt[1].removeprefix("READY=1\n"), attempt[2]], heard


@pytest.mark.parametrize("stop", ["a signal", "stoker kill"])
def test_systemd_hears_the_stop_as_it_begins(tmp_path, systemd, stop):
    variables, heard = systemd
    run, out, sandbox = _stoker_run(tmp_path, _service("exec sleep 60"),
                                    unit=UnitState(notifier(variables)), kill_grace_secs=1.0)
    code: list[int] = []
    runner = threading.Thread(target=lambda: code.append(run.run()))
    runner.start()
    try:
        wait_for(lambda: "STARTING → RUNNING" in out.getvalue(), timeout_secs=10, message="the task RUNNING")
        if stop == "a signal":
            run.stop("stopped by SIGTERM")
        else:
            assert all(answer.ok for answer in ask_all(sandbox, KillControl()))
    finally:
        run.stop("stopped by the test's cleanup")
        runner.join(10)
    reason = "stopped by SIGTERM" if stop == "a signal" else "killed by the operator (stoker kill)"
    wait_for(lambda: f"STOPPING=1\nSTATUS=stopping: {reason}" in heard, message=f"the stop told: {heard}")
    assert code == [0]


def test_the_watchdog_is_fed_by_the_supervisor_and_in_the_restart_delay(tmp_path, systemd):
    """WatchdogSec=0.2 s: a message every 0.1 s while a run sleeps 0.4 s, and while the run
    waits 0.4 s to restart it (at least two of each, on a loaded host)."""
    variables, heard = systemd
    unit = UnitState(notifier({**variables, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}))
    run, _, _ = _stoker_run(tmp_path, TWICE.format(cmdline="sleep 0.4; exit 1"), unit=unit,
                            restart_backoff_secs=0.4, restart_backoff_max_secs=0.4)
    assert run.run() == 1
    failed = "STATUS=twice.0 FAILED: process 'p' failed: exit status 1 after 1 of max_failures=1 runs"
    wait_for(lambda: heard.count(failed) == 2, message=f"the second attempt's end told: {heard}")
    first_failed, restarting = (next(i for i, m in enumerate(heard) if m.startswith(s))
                                for s in ("STATUS=twice.0 FAILED", "STATUS=twice.0 RESTARTING"))
    assert heard[:first_failed].count("WATCHDOG=1") >= 2, heard  # the owner's loop
    between = heard[restarting:].index("STATUS=twice.0 STARTING: task launched; sandbox ready, starting processes")
    assert heard[restarting:][:between].count("WATCHDOG=1") >= 2, heard  # the wait


def test_a_re_run_ends_what_a_lost_attempt_left_in_its_sandbox_and_says_so(tmp_path):
    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 0"))
    marker = f"lost{os.getpid()}{tmp_path.name}"
    sandbox.mkdir()
    lost_sandbox(sandbox, marker, ["p"])
    left = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], TASK_MARKER: marker})
    try:
        assert run.run() == 0  # (its reaper reaps `left` too: this process is its subreaper)
        assert state(left.pid) in ("gone", "Z")  # killed (and reaped, or not yet)
    finally:
        left.kill()
        left.wait()
    said = (f"stoker run: warning: attempt 1 in this sandbox recorded no end (its supervisor (pid {os.getpid()}) "
            f"died); killed the 1 process(es) it left running: {left.pid}")
    assert said in out.getvalue().splitlines(), out.getvalue()


@pytest.mark.parametrize("cgroups", ["off", "auto"])
def test_the_cgroups_setting_reaches_each_attempt_s_containment(tmp_path, cgroups):
    """`--cgroups off` keeps the task out of a cgroup, whatever the host offers (dropped on
    the way to the attempt's supervisor, the owner's default, `auto`, made one here)."""
    run, _, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 0"), cgroups=cgroups)
    assert run.run() == 0
    header = next(r for r in checkpoint_records(sandbox) if r.get("kind") == "header")
    off = "no cgroup: cgroups are off (--cgroups off or STOKER_CGROUPS=off)"
    assert (off in header["containment"]) == (cgroups == "off"), header["containment"]


def test_the_disk_limit_fails_a_task_past_its_disk(tmp_path):
    run, out, _ = _stoker_run(tmp_path, TWICE.format(cmdline="head -c 3000000 /dev/zero > big; exec sleep 60"),
                              disk_limit=True, disk_check_interval_secs=0.05, kill_grace_secs=1.0,
                              restart_backoff_secs=0.0, restart_backoff_max_secs=0.0)
    assert run.run() == 1
    assert "FAILED  Disk limit exceeded.  Reserved 1048576 bytes vs used" in out.getvalue(), out.getvalue()


def test_an_announcing_job_says_where_and_fails_when_zookeeper_cannot_be_reached(tmp_path):
    nothing = socket.socket()  # bound, not listening: a connection is refused
    nothing.bind(("127.0.0.1", 0))
    ensemble = f"127.0.0.1:{nothing.getsockname()[1]}"
    health = ("HealthCheckConfig(initial_interval_secs=0.5, interval_secs=0.25, max_consecutive_failures=2, "
              "health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='true')))")
    config = (_service("echo {{thermos.ports[http]}}; exec sleep 60")
              .replace("Service(", f"Job(max_task_failures=1, announce=Announcer(), health_check_config={health}, "))
    try:
        run, out, _ = _stoker_run(tmp_path, config, announce=ensemble, kill_grace_secs=1.0)
        assert run.run() == 1
    finally:
        nothing.close()
    lines = out.getvalue().splitlines()
    assert f"stoker run: announcing at /aurora/r/test/quick in ZooKeeper {ensemble} once RUNNING" in lines, lines
    assert f"FAILED  {TIMED_OUT_REASON}" in out.getvalue(), lines


def test_the_task_gets_the_environment_the_run_was_given_with_its_sandbox(tmp_path):
    assert "GIVEN" not in os.environ
    run, _, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline='echo "$GIVEN $MESOS_SANDBOX" > seen'),
                                  environ={"GIVEN": "given-to-the-run"})
    assert run.run() == 0
    assert (sandbox / "seen").read_text() == f"given-to-the-run {sandbox}\n"


def test_a_warning_to_systemd_s_journal_carries_its_priority(tmp_path, monkeypatch):
    journal = (tmp_path / "journal").open("w+")
    st = os.fstat(journal.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    run, _, _ = _stoker_run(tmp_path, TWICE.format(cmdline="exit 0"), out=journal, announce="127.0.0.1:2181")
    assert run.run() == 0
    journal.seek(0)
    said = "stoker run: warning: --announce: the job has no `announce = Announcer(...)`; nothing is announced"
    assert f"<4>{said}" in journal.read().splitlines()
    journal.close()


def test_a_long_process_name_widens_the_console_s_column_and_the_task_id_names_the_instance(tmp_path):
    name = "a-process-with-a-long-name"
    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 0").replace("name='p'", f"name='{name}'"),
                                    instance=3)
    assert run.run() == 0
    lines = [line[14:] for line in out.getvalue().splitlines() if line[:2].isdigit()]
    width = len(name) + len("[100] ")  # room for the run number's three digits, and a space
    assert lines[:2] == ["twice.3      task" + " " * (width - 4) + "NEW → STARTING  task launched; sandbox ready, "
                         "starting processes", f"twice.3      {name}[0]" + " " * (width - len(name) - 3) +
                         "WAITING → RUNNING  starting run 0"], lines
    (header,) = [r for r in checkpoint_records(sandbox) if r["kind"] == "header"]
    assert header["task_id"].startswith("twice-3-"), header


def test_an_attempt_whose_supervisor_fails_before_its_task_ends_is_failed_with_its_error(tmp_path, monkeypatch):
    real_owner_for = local_run.owner_for

    def owner_for(*args, **kwargs):
        owner = real_owner_for(*args, **kwargs)
        owner.run = lambda: (_ for _ in ()).throw(RuntimeError("a bug before the task's end"))
        return owner

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    run, out, _ = _stoker_run(tmp_path, TWICE.format(cmdline="exit 0"))
    assert run.run() == local_run.EXIT_INTERNAL_ERROR
    said = ("executor internal error: RuntimeError: a bug before the task's end; no restart: Stoker itself failed "
            "(the traceback is in its log)")
    assert out.getvalue().splitlines()[-1][14:] == f"twice.0      stoker           FAILED: {said} (exit 70)"


def test_a_stdout_that_breaks_is_said_once_with_the_command_that_shows_the_task(tmp_path, caplog):
    class Breaks(io.StringIO):
        def write(self, text: str) -> int:
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    caplog.set_level(logging.WARNING, logger="executor.local.console")
    run, out, sandbox = _stoker_run(tmp_path, TWICE.format(cmdline="exit 0"), out=Breaks())
    assert run.run() == 0
    assert out.getvalue() == f"stoker run: sandbox {sandbox}\n"
    (gone,) = [r for r in caplog.records if getattr(r, "stoker_event", "") == "stdout_gone"]
    assert gone.stoker_fields["reason"].endswith(
        f"(`stoker status {sandbox}` shows it; Ctrl-C or SIGTERM stops it)"), gone.stoker_fields
