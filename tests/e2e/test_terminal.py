"""`stoker run` at an operator's terminal: the live view and the log share one screen.

A real pseudo-terminal (tests/support/pty_proc.py) and real processes. The signals a stop
takes (SIGINT, SIGTERM, SIGHUP, a second one) and a closed stdout are in
tests/e2e/test_run_signals.py.
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

from tests.support.pty_proc import PtyProcess
from tests.support.stoker_proc import REPO, checkpoint_records, hangup_default, kill_leftovers, task_pids
from tests.support.waiting import wait_for

RESOURCES = "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)"


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "job.aurora"
    path.write_text(textwrap.dedent(body))
    return path


def batch(tmp_path: Path, cmdline: str = "echo done") -> Path:
    return write_config(tmp_path, f"""
        main = Process(name='main', cmdline={cmdline!r})
        jobs = [Job(cluster='local', role='me', environment='test', name='batch',
                    task=Task(processes=[main], {RESOURCES}))]
    """)


def screen_lines(output: bytes) -> list[str]:
    """The terminal's lines (the pty writes \\r\\n) as they stay on the screen: what the
    console's "\\r ESC[2K" cleared is gone."""
    return [line.rsplit("\r\x1b[2K", 1)[-1] for line in output.decode().split("\r\n")]


def test_json_log_records_never_share_a_line_with_the_live_view(tmp_path):
    """`--log-format json` on a terminal: every log record is a JSON object on a line of its
    own, never glued after the live view the console keeps under its lines."""
    sandbox = tmp_path / "sandbox"
    term = PtyProcess(["run", str(batch(tmp_path)), "--sandbox", str(sandbox), "--log-format", "json",
                       "--log-level", "debug"], tmp_path)
    try:
        assert term.wait(20) == 0
        output = term.read_to_end(5)
    finally:
        term.close()
        kill_leftovers(task_pids(sandbox))
    records = [line for line in screen_lines(output) if '{"ts"' in line]
    assert any('"event": "process_spawned"' in r for r in records), output  # one came during the view
    for line in records:
        assert line.startswith('{"ts"'), f"a record shares its line: {line!r}"
        json.loads(line)
    assert b"\x1b[7m[" in output  # the live view was drawn


def supervisor_state(pid: int) -> str:
    """The process's state letter in /proc/PID/stat (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_ctrl_z_does_not_stop_the_supervisor_and_no_health_check_misfires(tmp_path):
    """Ctrl-Z (SIGTSTP to the terminal's foreground job) used to stop the supervisor alone:
    its processes ran on unsupervised, and on `fg` the health check it had in flight had
    outlived its timeout, so a healthy task failed (max_consecutive_failures=0, Aurora's
    default). Now the supervisor declines the stop, says so, and supervises on."""
    check = "touch inflight; sleep 0.15; rm -f inflight"
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline='sleep 1000')
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main], {RESOURCES}),
                        health_check_config=HealthCheckConfig(
                            initial_interval_secs=0.05, interval_secs=0.05, timeout_secs=0.3,
                            health_checker=HealthCheckerConfig(shell=ShellHealthChecker(
                                shell_command={check!r}))))]
    """)
    sandbox = tmp_path / "sandbox"
    err = open(tmp_path / "stderr", "wb")
    with hangup_default():  # a process group of its own in this session, as a shell's job:
        proc = subprocess.Popen(  # the kernel stops it on SIGTSTP (an orphaned group it would not)
            [sys.executable, "-m", "executor", "run", str(cfg), "--sandbox", str(sandbox)],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
            stderr=err, stdin=subprocess.DEVNULL, process_group=0)
    try:
        wait_for(lambda: any(r.get("to") == "RUNNING" for r in checkpoint_records(sandbox)
                             if r["kind"] == "task"), 10, message="the task is RUNNING")
        wait_for(lambda: (sandbox / "inflight").exists(), 5, message="a health check is in flight")
        os.killpg(proc.pid, signal.SIGTSTP)
        time.sleep(0.45)  # longer than the check's timeout: a stopped supervisor would cut it
        state = supervisor_state(proc.pid)
        os.killpg(proc.pid, signal.SIGCONT)
        assert state != "T", "the supervisor was stopped by Ctrl-Z"
        attempts = len([r for r in checkpoint_records(sandbox) if r["kind"] == "health"])
        wait_for(lambda: len([r for r in checkpoint_records(sandbox) if r["kind"] == "health"]) > attempts,
                 5, message="a health check after the resume")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        err.close()
        kill_leftovers(task_pids(sandbox))
    health = [r for r in checkpoint_records(sandbox) if r["kind"] == "health"]
    assert [r["reason"] for r in health if r["outcome"] != "passed"] == []
    assert [r["to"] for r in checkpoint_records(sandbox) if r["kind"] == "task"] == \
        ["STARTING", "RUNNING", "KILLING", "KILLED"]
    stderr = (tmp_path / "stderr").read_text()
    assert stderr.count("Ctrl-Z (SIGTSTP): stoker run does not suspend") == 1, stderr


HOSTILE = (b"plain \xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\ttab\n"  # UTF-8 and a tab: kept
           b"\x1b[2J\x1b[31mred\x1b]52;c;aGVsbG8=\x07\n"   # clear screen, colour, a clipboard write
           b"bad \xff\xfe \xc2\x9b[1m end\r\n")             # invalid UTF-8, a C1 CSI, a CR


def sandbox_with_log(tmp_path: Path, text: bytes) -> Path:
    run = tmp_path / "sb" / ".logs" / "web" / "0"
    run.mkdir(parents=True)
    (run / "stdout").write_bytes(text)
    return tmp_path / "sb"


def test_tail_to_a_terminal_escapes_what_would_drive_it(tmp_path):
    """A task's log reaches the operator's terminal only as text: escape sequences, a
    clipboard write (OSC 52), C1 controls and bytes that are not UTF-8 are written out."""
    term = PtyProcess(["tail", str(sandbox_with_log(tmp_path, HOSTILE)), "web", "-n", "+1"], tmp_path)
    try:
        assert term.wait(10) == 0
        shown = term.read_to_end(5).decode()  # the pty turns each \n into \r\n
    finally:
        term.close()
    assert shown == ("plain é 日本\ttab\r\n"
                     "\\x1b[2J\\x1b[31mred\\x1b]52;c;aGVsbG8=\\x07\r\n"
                     "bad \\xff\\xfe \\x9b[1m end\\r\r\n")


def test_tail_f_into_head_ends_when_head_does_even_on_an_idle_log(tmp_path):
    """`stoker tail -f SB web | head -2`: head exits after its lines; tail -f, with nothing
    new to write, used to follow the idle log for ever (the pipeline never ended), and when
    it wrote it failed with an error. It now ends quietly once its reader is gone."""
    sandbox = sandbox_with_log(tmp_path, b"one\ntwo\nthree\n")
    shell = subprocess.Popen(
        ["/bin/bash", "-c", "set -o pipefail; " + f"{sys.executable} -m executor tail -f {sandbox} web 2>err | head -2"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = shell.communicate(timeout=5)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait(10)
    assert (shell.returncode, out) == (0, b"one\ntwo\n")
    assert (tmp_path / "err").read_text() == ""
