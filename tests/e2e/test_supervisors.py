"""`stoker run` under the other process supervisors (README "Running under runit, s6,
supervisord, or a container's init"): s6's readiness notification (`--ready-fd`) with a
real pipe and, when s6 is installed, a real s6-supervise; the example service files hold
command lines `stoker run` accepts.
"""
from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from config.settings import RunSettings
from executor.cli.main import _parser
from tests.e2e.test_systemd import NotifySocket, write_job
from tests.support.shellwords import python_sh, sh
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids
from tests.support.waiting import wait_for
from tests.support.zookeeper import require

EXAMPLES = REPO / "examples"
RUN_SCRIPTS = [EXAMPLES / "runit/stoker-hello/run", EXAMPLES / "s6/stoker-hello/run",
               EXAMPLES / "supervisord/stoker-hello.conf"]


def _read_all(fd: int, timeout_secs: float = 20) -> bytes:
    """What `fd` gives up to EOF; fails after `timeout_secs` without it."""
    data = b""
    while select.select([fd], [], [], timeout_secs)[0]:
        chunk = os.read(fd, 64)
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"no EOF within {timeout_secs} s (read {data!r}): the descriptor is still open somewhere")


def test_ready_fd_gets_one_newline_once_the_task_is_running_and_no_task_process_holds_it(tmp_path):
    """The newline comes when the task is RUNNING (the moment systemd hears READY=1), then
    Stoker closes the descriptor: the reader sees EOF, which it would not while a task
    process held the pipe's write end."""
    config = write_job(tmp_path, "ls /proc/self/fd > ../fds.txt; sleep 1000")
    read_fd, write_fd = os.pipe()
    proc = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sandbox"), "--ready-fd", str(write_fd)],
                         tmp_path, env={"STOKER_EARLY_START": "off"}, pass_fds=(write_fd,))
    try:
        os.close(write_fd)
        assert _read_all(read_fd) == b"\n"  # EOF after it: closed in Stoker and in every task process
        # Put before the newline was written, but written by stoker run's spool thread, which
        # may not have got to it yet (executor/logs.py: output never blocks; CI failed on that).
        proc.wait_output("STARTING → RUNNING", 10)
        wait_for(lambda: (tmp_path / "fds.txt").exists() and (tmp_path / "fds.txt").read_text().endswith("\n"), 5,
                 message="the task's descriptors listed")
        assert str(write_fd) not in (tmp_path / "fds.txt").read_text().split(), "the task inherited it"
        proc.signal(15)
        assert proc.wait() == 143
    finally:
        os.close(read_fd)
        pids = task_pids(tmp_path / "sandbox")
        proc.close()
        kill_leftovers(pids)


def test_ready_fd_and_systemd_are_both_told(tmp_path):
    """s6 under a systemd unit (or a `Type=notify` unit with the flag): the newline and
    READY=1 both, and systemd's watchdog fed (without it systemd killed the unit)."""
    config = write_job(tmp_path, "sleep 1000")
    notify = NotifySocket(tmp_path / "notify")
    read_fd, write_fd = os.pipe()
    proc = StokerProcess(["run", "--ready-fd", str(write_fd), str(config), "--sandbox", str(tmp_path / "sandbox")],
                         tmp_path, env={"STOKER_EARLY_START": "off", "NOTIFY_SOCKET": str(notify.path),
                                        "WATCHDOG_USEC": "200000"}, pass_fds=(write_fd,))
    try:
        os.close(write_fd)
        assert _read_all(read_fd) == b"\n"
        wait_for(lambda: any(m.startswith("READY=1") for m in notify.received()), 5, message="READY=1")
        wait_for(lambda: notify.received().count("WATCHDOG=1") >= 2, 5, message="the watchdog fed")
        proc.signal(15)
        assert proc.wait() == 143
        assert any(m.startswith("STOPPING=1") for m in notify.received()), notify.messages
    finally:
        os.close(read_fd)
        notify.close()
        pids = task_pids(tmp_path / "sandbox")
        proc.close()
        kill_leftovers(pids)


def test_ready_fd_must_be_open_for_writing(tmp_path):
    config = write_job(tmp_path, "sleep 1000")
    proc = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sandbox"), "--ready-fd", "9"], tmp_path)
    try:
        assert proc.wait() == 2
        assert "--ready-fd 9: descriptor 9 is not open" in proc.stderr()
        assert not (tmp_path / "sandbox").exists()
    finally:
        proc.close()


@pytest.mark.parametrize("path", RUN_SCRIPTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_the_example_service_files_run_a_command_line_stoker_accepts(path):
    lines = [line for line in path.read_text().splitlines() if "bin/stoker run " in line and not line.startswith(("#", ";"))]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0].partition("stoker run ")[2])
    settings = RunSettings.from_args(_parser().parse_args(["run", *words]), {})
    assert settings.config == "/etc/stoker/hello.aurora"
    if "/s6/" in str(path):  # the descriptor its notification-fd file names
        assert settings.ready_fd == int((path.parent / "notification-fd").read_text())


def service_copy(example: Path, tmp_path: Path) -> Path:
    """`example`'s service directory (no log service) in `tmp_path`, its run script running
    this checkout's Stoker (no early start) on tmp_path/job.aurora in tmp_path/sandbox."""
    service = tmp_path / "service"
    shutil.copytree(example, service, ignore=shutil.ignore_patterns("log"))
    script = (service / "run").read_text()
    (service / "run").write_text(script.replace("/usr/local/bin/stoker", f"env {sh(f'PYTHONPATH={REPO}')} STOKER_EARLY_START=off "
                                                f"{python_sh('-m', 'executor')}")
                                 .replace("/var/lib/stoker/hello", str(tmp_path / "sandbox"))
                                 .replace("/etc/stoker/hello.aurora", str(tmp_path / "job.aurora")))
    return service


def test_s6_supervise_hears_the_task_ready_and_stops_it_cleanly(tmp_path):
    """The example s6 service directory, its paths this test's: `s6-svc -wU` returns once the
    task is RUNNING; `s6-svc -wD -d` stops it (SIGTERM then SIGCONT) and s6 records exit 143,
    a clean stop."""
    require("s6", None if shutil.which("s6-supervise") else "s6 is not installed (`make hosttools` installs it)")
    write_job(tmp_path, "sleep 1000")
    service = service_copy(EXAMPLES / "s6/stoker-hello", tmp_path)
    supervise = subprocess.Popen(["s6-supervise", str(service)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # s6-svc -w reads the status file s6-supervise writes once started: before it, it
        # exits 111 ("unable to s6_svstatus_read"), as it did when asked at once (4 in 10 runs)
        wait_for(lambda: subprocess.run(["s6-svstat", str(service)], capture_output=True).returncode == 0, 10,
                 message="s6-supervise's status file")
        waited = subprocess.run(["s6-svc", "-wU", "-T", "10000", "-u", str(service)], capture_output=True,
                                text=True, timeout=30)
        assert waited.returncode == 0, waited.stderr
        state = subprocess.run(["s6-svstat", "-o", "up,ready", str(service)], capture_output=True, text=True)
        assert state.stdout.split() == ["true", "true"]
        subprocess.run(["s6-svc", "-wD", "-T", "20000", "-d", str(service)], timeout=30, check=True)
        state = subprocess.run(["s6-svstat", "-o", "up,exitcode", str(service)], capture_output=True, text=True)
        assert state.stdout.split() == ["false", "143"]
    finally:
        subprocess.run(["s6-svc", "-wD", "-T", "5000", "-dx", str(service)], timeout=10)
        try:
            supervise.wait(5)
        except subprocess.TimeoutExpired:
            supervise.kill()
            supervise.wait(5)
