"""`stoker run` at an operator's terminal: the live view and the log share one screen.

A real pseudo-terminal (tests/support/pty_proc.py) and real processes. The signals a stop
takes (SIGINT, SIGTERM, SIGHUP, a second one) and a closed stdout are in
tests/e2e/test_run_signals.py; an output that cannot be written (closed, full, a C locale) in
tests/e2e/test_unwritable_output.py.
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

from tests.support.configs import RESOURCES, write_config
from tests.support.pty_proc import PtyProcess
from tests.support.shellwords import python_sh
from tests.support.stoker_proc import (
    REPO,
    StokerProcess,
    checkpoint_records,
    end_run,
    kill_leftovers,
    live,
    stop_signals_default,
    task_pids,
)
from tests.support.waiting import wait_for


def batch(tmp_path: Path, cmdline: str = "echo done") -> Path:
    return write_config(tmp_path, f"""
        main = Process(name='main', cmdline={cmdline!r})
        jobs = [Job(cluster='local', role='me', environment='test', name='batch',
                    task=Task(processes=[main], {RESOURCES}))]
    """)


def screen_lines(output: bytes) -> list[str]:
    """The terminal's lines (the pty writes \\r\\n) as they stay on the screen: what the
    console's "\\r ESC[2K" cleared is gone."""
    return [line.rsplit("\r\x1b[2K", 1)[-1] for line in output.decode("latin-1").split("\r\n")]


def output_of(term: PtyProcess, sandbox: Path) -> bytes:
    """All `term`'s run wrote, once it exited 0; closed, its task's processes killed."""
    try:
        assert term.wait(20) == 0
        return term.read_to_end(5)
    finally:
        term.close()
        kill_leftovers(task_pids(sandbox))


def test_json_log_records_never_share_a_line_with_the_live_view_in_any_encoding(tmp_path):
    """`--log-format json` on a terminal: every log record is a JSON object on a line of its
    own, never glued after the live view the console keeps under its lines. The terminal
    here is a legacy 8-bit one (PYTHONIOENCODING stands for its locale): what it cannot
    encode is written out (`\\u2192`), where the console used to take the first `→` it
    could not write for a closed stdout and print nothing more."""
    sandbox = tmp_path / "sandbox"
    term = PtyProcess(["run", str(batch(tmp_path)), "--sandbox", str(sandbox), "--log-format", "json",
                       "--log-level", "debug"], tmp_path, env={"PYTHONIOENCODING": "latin-1"})
    output = output_of(term, sandbox)
    lines = screen_lines(output)
    records = [line for line in lines if '{"ts"' in line]
    assert any('"event": "process_spawned"' in r for r in records), output  # one came during the view
    for line in records:
        assert line.startswith('{"ts"'), f"a record shares its line: {line!r}"
        json.loads(line)
    assert b"\x1b[7m[" in output  # the live view was drawn
    assert any(line.endswith("task             RUNNING \\u2192 FINISHED  the only regular process finished successfully")
               for line in lines), output
    assert "stdout is gone" not in output.decode()


def test_the_live_view_is_drawn_again_to_the_terminal_s_new_width(tmp_path):
    """A window made narrower (SIGWINCH): the live view was drawn to the new width only at
    the task's next change, so an idle task's view stayed as wide as before, wrapped. Now
    it is drawn again at once, cut to the new width."""
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline='sleep 1000')
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main], {RESOURCES}))]
    """)
    sandbox = tmp_path / "sandbox"
    term = PtyProcess(["run", str(cfg), "--sandbox", str(sandbox)], tmp_path, env={"COLUMNS": ""})
    try:
        term.resize(24, 200)
        term.read_until(b"[svc.0 RUNNING] main:RUNNING[0]\x1b[0m")
        view = term.output.rsplit(b"\x1b[7m", 1)[1].split(b"\x1b[0m")[0]
        term.resize(24, len(view))  # one column fewer than it takes (the view keeps the last free)
        term.read_until(b"\x1b[7m" + view[:-1] + b"\x1b[0m", 10)
        term.signal(signal.SIGTERM)
        assert term.wait(20) == 143
    finally:
        term.close()
        kill_leftovers(task_pids(sandbox))


def test_a_terminal_that_stopped_reading_never_stops_the_supervision(tmp_path):
    """Ctrl-S (XOFF; or a frozen SSH session, a pager that waits) stops the terminal's
    output: the supervisor's next write used to block its task owner, so nothing was
    supervised any more and a SIGTERM went unanswered until Ctrl-Q. Now what it prints
    waits on a thread of its own: the stop runs, the terminal still stopped, and the run
    exits once it reads again (or 2 s after, when it never does)."""
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline='sleep 1000')
        tick = Process(name='tick', cmdline='sleep 0.02', daemon=True, min_duration=0.05)
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main, tick], {RESOURCES}))]
    """)
    sandbox = tmp_path / "sandbox"
    term = PtyProcess(["run", str(cfg), "--sandbox", str(sandbox)], tmp_path)
    try:
        term.read_until(b"tick[1]")
        term.type(b"\x13")  # Ctrl-S
        time.sleep(0.3)  # the ticks' state changes pile up behind the stopped terminal
        term.signal(signal.SIGTERM)
        wait_for(lambda: [r["to"] for r in checkpoint_records(sandbox) if r["kind"] == "task"][-1] == "KILLED",
                 10, message="the task KILLED, the terminal still stopped")
        assert not live(task_pids(sandbox))
        term.type(b"\x11")  # Ctrl-Q
        assert term.wait(10) == 143
        assert b"task KILLED (exit 143)" in term.read_to_end(5)  # nothing lost meanwhile
    finally:
        term.close()
        kill_leftovers(task_pids(sandbox))


def supervisor_state(pid: int) -> str:
    """The process's state letter in /proc/PID/stat (T: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_ctrl_z_does_not_stop_the_supervisor_and_no_health_check_misfires(tmp_path):
    """Ctrl-Z (SIGTSTP to the terminal's foreground job) used to stop the supervisor alone:
    its processes ran on unsupervised, and on `fg` the health check it had in flight had
    outlived its timeout, so a healthy task failed (max_consecutive_failures=0, Aurora's
    default). Now the supervisor declines the stop, says so, and supervises on. The check's
    timeout is a generous 1 s: each check starts four programs, which a busy host can hold
    past a tighter one, failing a check the test wants passed for another reason."""
    check = "touch inflight; sleep 0.15; rm -f inflight"
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline='sleep 1000')
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main], {RESOURCES}),
                        health_check_config=HealthCheckConfig(
                            initial_interval_secs=0.05, interval_secs=0.1, timeout_secs=1.0,
                            health_checker=HealthCheckerConfig(shell=ShellHealthChecker(
                                shell_command={check!r}))))]
    """)
    sandbox = tmp_path / "sandbox"
    err = open(tmp_path / "stderr", "wb")
    with stop_signals_default():  # a process group of its own in this session, as a shell's job:
        proc = subprocess.Popen(  # the kernel stops it on SIGTSTP (an orphaned group it would not)
            [sys.executable, "-m", "executor", "run", str(cfg), "--sandbox", str(sandbox)],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
            stderr=err, stdin=subprocess.DEVNULL, process_group=0)
    try:
        wait_for(lambda: any(r.get("to") == "RUNNING" for r in checkpoint_records(sandbox)
                             if r["kind"] == "task"), 10, message="the task is RUNNING")
        wait_for(lambda: (sandbox / "inflight").exists(), 5, message="a health check is in flight")
        os.killpg(proc.pid, signal.SIGTSTP)
        time.sleep(1.1)  # longer than the check's timeout: a stopped supervisor would cut it
        state = supervisor_state(proc.pid)
        os.killpg(proc.pid, signal.SIGCONT)
        assert state != "T", "the supervisor was stopped by Ctrl-Z"
        attempts = len([r for r in checkpoint_records(sandbox) if r["kind"] == "health"])
        wait_for(lambda: len([r for r in checkpoint_records(sandbox) if r["kind"] == "health"]) > attempts,
                 5, message="a health check after the resume")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
    finally:
        end_run(proc, sandbox)
        err.close()
    health = [r for r in checkpoint_records(sandbox) if r["kind"] == "health"]
    assert [r["reason"] for r in health if r["outcome"] != "passed"] == []
    assert [r["to"] for r in checkpoint_records(sandbox) if r["kind"] == "task"] == \
        ["STARTING", "RUNNING", "KILLING", "KILLED"]
    stderr = (tmp_path / "stderr").read_text()
    assert stderr.count("Ctrl-Z (SIGTSTP): stoker run does not suspend") == 1, stderr


# The shell of a terminal with `stty tostop`: it starts `stoker run ...` as a background job
# (a process group of its own, not the terminal's foreground one) and says how it ended.
def one_process_in_a_terminal(tmp_path: Path, job_script: str, name: str, destination: str, cmdline: str) -> bytes:
    """`stoker run` of job `name`, of one process (`cmdline`, its logger's `destination`), run
    by `job_script` (`BACKGROUND_JOB`, `FOREGROUND_JOB`) in a pseudo-terminal: what it showed."""
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline={cmdline!r}, logger=Logger(destination={destination!r}))
        jobs = [Job(cluster='local', role='me', environment='test', name={name!r},
                    task=Task(processes=[main], {RESOURCES}))]
    """)
    sandbox = tmp_path / "sandbox"
    term = PtyProcess([], tmp_path, argv=[sys.executable, "-c", job_script, "run", str(cfg), "--sandbox", str(sandbox)])
    return output_of(term, sandbox)


BACKGROUND_JOB = """
import os, signal, sys, termios
attrs = termios.tcgetattr(0)
attrs[3] |= termios.TOSTOP
termios.tcsetattr(0, termios.TCSANOW, attrs)
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "executor", *sys.argv[1:]], os.environ, setpgroup=0)
_, status = os.waitpid(pid, os.WUNTRACED)
if os.WIFSTOPPED(status):
    print("stoker stopped by signal", os.WSTOPSIG(status), flush=True)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
else:
    print("stoker exited", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_background_run_under_stty_tostop_is_never_stopped_by_its_own_output(tmp_path):
    """`stty tostop` and `stoker run JOB &`: the kernel answered the first line Stoker wrote
    to the terminal with SIGTTOU, which stopped the supervisor (supervision frozen until
    `fg`); the copy of a `destination='both'` process's output did the same. Now the threads
    that write there block SIGTTOU and the kernel lets their writes through: every line
    arrives and the run ends on its own, and the task's processes get SIGTTOU as usual."""
    output = one_process_in_a_terminal(tmp_path, BACKGROUND_JOB, "bg", "both",
                                       "echo from-the-task; grep SigBlk /proc/self/status")
    assert b"stoker exited 0" in output, output
    assert b"from-the-task" in output
    assert b"SigBlk:\t0000000000000000" in output  # the task's processes block nothing of Stoker's
    assert b"RUNNING \xe2\x86\x92 FINISHED" in output


@pytest.mark.parametrize(("args", "said"), [
    (["run", "{config}", "--kill-grace", "soon"], b"stoker: error: --kill-grace='soon' is not a duration"),
    (["run", "--bogus", "{config}"], b"stoker run: error: unrecognized arguments: --bogus"),
])
def test_a_background_run_under_stty_tostop_that_fails_to_start_says_why_and_exits(tmp_path, args, said):
    """`stty tostop` and `stoker run JOB &` with a setting or a flag that is wrong: its one
    `stoker: error:` line (argparse's usage lines for a flag) was written by the main thread,
    before any writer thread blocked SIGTTOU, so the kernel stopped the job on it (`Stopped
    (tty output)`), its error unseen until `fg`. Now the line comes through and it exits 2."""
    cfg = batch(tmp_path)
    term = PtyProcess([], tmp_path, argv=[sys.executable, "-c", BACKGROUND_JOB,
                                          *(a.format(config=cfg) for a in args)])
    try:
        assert term.wait(20) == 0
        output = term.read_to_end(5)
    finally:
        term.close()
    assert b"stoker exited 2" in output, output
    assert said in output


# The shell of a terminal: `stoker run ... &` (a process group of its own, not the terminal's
# foreground one), its prompt written meanwhile, then `fg` once the task runs: the terminal
# made the job's, and SIGCONT. It prints stoker's pid and "fg" as it does.
FOREGROUND_LATER_JOB = """
import os, signal, sys, time
pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "executor", *sys.argv[1:]], os.environ, setpgroup=0)
print("stoker pid", pid, flush=True)
while not os.path.exists("fg"):  # the test's word: the run's RUNNING line is out
    time.sleep(0.01)
time.sleep(0.3)  # the user's pause before typing fg: a view drawn meanwhile would show
print("$ fg", flush=True)
os.tcsetpgrp(0, pid)
os.killpg(pid, signal.SIGCONT)
os.waitpid(pid, 0)
"""


def test_a_background_run_leaves_the_shell_s_line_alone_and_draws_its_view_on_fg(tmp_path):
    """`stoker run JOB &`, as the README advises to keep the shell: the live view was drawn
    all the same, each change (every health check) a `\\r ESC[2K` that wiped the shell's
    prompt and what the user was typing on it. Now a background run prints its lines alone,
    as when piped, and the view comes at `fg` (SIGCONT), drawn at once."""
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline='exec sleep 1000')
        jobs = [Service(cluster='local', role='me', environment='test', name='bg',
                        task=Task(processes=[main], {RESOURCES}))]
    """)
    sandbox = tmp_path / "sandbox"
    term = PtyProcess([], tmp_path, argv=[sys.executable, "-c", FOREGROUND_LATER_JOB,
                                          "run", str(cfg), "--sandbox", str(sandbox)])
    try:
        pid = int(term.read_until(b"\r\n", 10).split(b"stoker pid ")[1].split(b"\r\n")[0])
        # `fg` once the background run printed its RUNNING line (was: 0.3 s after the early
        # start's process ran, before the supervisor had loaded on a busy machine)
        term.read_until(b"task             STARTING \xe2\x86\x92 RUNNING", 20)
        (tmp_path / "fg").touch()
        before = term.read_until(b"$ fg\r\n").split(b"$ fg\r\n")[0]
        term.read_until(b"\x1b[7m[bg.0 RUNNING] main:RUNNING[0]\x1b[0m", 5)
        os.kill(pid, signal.SIGTERM)
        assert term.wait(20) == 0
        term.read_to_end(5)
    finally:
        term.close()
        kill_leftovers(task_pids(sandbox))
    assert b"task             STARTING \xe2\x86\x92 RUNNING" in before, before
    assert b"\x1b[" not in before, before
    assert b"task KILLED (exit 143)" in term.output


# The shell of a terminal: it runs `stoker run ...` in the foreground (its own process group,
# the terminal's foreground one) and says how it ended and whether the terminal's modes
# are as they were before it.
FOREGROUND_JOB = """
import subprocess, sys, termios
before = termios.tcgetattr(0)
status = subprocess.call([sys.executable, "-m", "executor", *sys.argv[1:]])
print("stoker exited", status, "modes as before:", termios.tcgetattr(0) == before, flush=True)
"""


def test_a_terminal_a_task_left_raw_is_put_back_as_the_run_ends(tmp_path):
    """A process whose logger is the console writes to the operator's terminal, and may
    change its modes (`stty raw -echo`, a program killed before it restored them): once
    `stoker run` ended, the shell echoed nothing and its lines never went back to the margin
    (`reset` needed). Now the run puts back the modes it found, with one warning line."""
    output = one_process_in_a_terminal(tmp_path, FOREGROUND_JOB, "raw", "console",
                                       "stty raw -echo <&1 && echo modes-changed")
    assert b"modes-changed" in output, output
    assert b"stoker exited 0 modes as before: True" in output, output
    assert output.count(b"stoker run: warning: a process of the task changed the terminal's modes") == 1


# The shell of a terminal running `stoker run ... | pager`: the pager (a process of the same
# foreground job) sets its terminal's modes as it starts, before stoker's, as `less` does, and
# puts them back once it has read the task's start (the operator's `q`); stoker runs on.
PIPED_INTO_A_PAGER = """
import subprocess, sys, termios, time
PAGER = (
    "import sys, termios, tty\\n"
    "saved = termios.tcgetattr(2)\\n"
    "tty.setraw(2)\\n"
    "for line in sys.stdin:\\n"
    "    if 'RUNNING' in line:\\n"
    "        break\\n"
    "termios.tcsetattr(2, termios.TCSANOW, saved)\\n")
before = termios.tcgetattr(0)
pager = subprocess.Popen([sys.executable, "-c", PAGER], stdin=subprocess.PIPE)
while termios.tcgetattr(0) == before:
    time.sleep(0.01)
status = subprocess.call([sys.executable, "-m", "executor", *sys.argv[1:]], stdout=pager.stdin)
pager.wait()
print("stoker exited", status, "modes as before:", termios.tcgetattr(0) == before, flush=True)
"""


def test_a_pager_s_modes_are_left_to_the_pager(tmp_path):
    """`stoker run JOB | less`, less quit (`q`) before the run ended: the run put back the
    terminal's modes as it had found them, which were less's (raw, no echo), and said a
    process of the task had changed them; the shell was left without echo (`reset` needed).
    A run whose stdout is a pipe now leaves the terminal's modes to the job's other
    processes, a pager's to the pager."""
    output = one_process_in_a_terminal(tmp_path, PIPED_INTO_A_PAGER, "paged", "file", "sleep 1")
    assert b"stoker exited 0 modes as before: True" in output, output
    assert b"changed the terminal's modes" not in output, output


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
                     "bad \\xff\\xfe \\u009b[1m end\\r\r\n")  # the C1 character: not a byte's \\x9b


def in_session(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None,
               timeout_secs: float = 20) -> subprocess.CompletedProcess:
    """`argv` run to its end in a session of its own (SIGKILLed whole if it outlives
    `timeout_secs`), its output captured."""
    proc = subprocess.Popen(argv, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_secs)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_tail_f_into_head_ends_when_head_does_even_on_an_idle_log(tmp_path):
    """`stoker tail -f SB web | head -2`: head exits after its lines; tail -f, with nothing
    new to write, used to follow the idle log for ever (the pipeline never ended), and when
    it wrote it failed with an error. It now ends quietly once its reader is gone."""
    sandbox = sandbox_with_log(tmp_path, b"one\ntwo\nthree\n")
    tail = python_sh("-m", "executor", "tail", "-f", sandbox, "web")
    result = in_session(["/bin/bash", "-c", f"set -o pipefail; {tail} 2>err | head -2"], tmp_path, timeout_secs=5)
    assert (result.returncode, result.stdout) == (0, b"one\ntwo\n")
    assert (tmp_path / "err").read_text() == ""


def test_stoker_kill_says_at_once_that_the_supervisor_is_stopped(tmp_path):
    """A supervisor stopped by SIGSTOP (`kill -STOP`, a debugger) answers nothing until it
    is continued: `stoker kill` used to wait in silence. It now says why, and goes on
    waiting; SIGCONT, and the kill runs."""
    cfg = write_config(tmp_path, f"""
        main = Process(name='main', cmdline='sleep 1000')
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main], {RESOURCES}))]
    """)
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(cfg), "--sandbox", str(sandbox)], tmp_path)
    kill = None
    try:
        run.wait_output("task             STARTING → RUNNING")
        os.kill(run.pid, signal.SIGSTOP)
        err = open(tmp_path / "kill.stderr", "wb")
        kill = subprocess.Popen([sys.executable, "-m", "executor", "kill", str(sandbox)], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        err.close()
        wait_for(lambda: b"is stopped" in (tmp_path / "kill.stderr").read_bytes(), 10,
                 message="stoker kill says the supervisor is stopped")
        os.kill(run.pid, signal.SIGCONT)
        assert kill.wait(10) == 0
        assert run.wait(10) == 0
    finally:
        if run.proc.poll() is None:
            os.kill(run.pid, signal.SIGCONT)
        if kill is not None and kill.poll() is None:
            os.killpg(kill.pid, signal.SIGKILL)
            kill.wait(10)
        run.close()
        kill_leftovers(task_pids(sandbox))
    assert (tmp_path / "kill.stderr").read_text() == (
        f"stoker kill: the supervisor (pid {run.pid}) is stopped (SIGSTOP, or a debugger): it "
        f"answers once continued (kill -CONT {run.pid})\n")

