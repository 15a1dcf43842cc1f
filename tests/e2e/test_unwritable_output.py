"""What `stoker` writes when its output cannot take it, end to end: a closed stdin, stdout or
stderr (the supervisor's descriptor /dev/null while it runs), an output that cannot be
written (`/dev/full`) for `run`, `tail`, `--help` and `--version`,
a run into a full disk, and a C locale without UTF-8 mode. The live view at a terminal is
tests/e2e/test_terminal.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_terminal import batch, in_session, sandbox_with_log
from tests.support.configs import RESOURCES, write_config
from tests.support.shellwords import c_locale_starts, python_sh
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids
from tests.support.waiting import wait_for


def shell(tmp_path: Path, command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`command` in /bin/sh (`stoker` is this checkout's CLI), in a session of its own."""
    return in_session(["/bin/sh", "-c", command.replace("stoker", python_sh("-m", "executor"))], tmp_path, env)


def test_a_closed_stdout_or_stderr_is_as_good_as_dev_null(tmp_path):
    """`>&-` / `2>&-`: no traceback, no message moved to the other stream, and a process
    that writes to the console does not fail for it (its stdout used to be a closed
    descriptor: `echo` failed with EBADF, and the task with it)."""
    cfg = batch(tmp_path, "echo to the console && echo done > done")
    cfg.write_text(cfg.read_text().replace("cmdline=", "logger=Logger(destination='console'), cmdline="))
    result = shell(tmp_path, f"stoker run {cfg} --sandbox {tmp_path / 'run'} >&-")
    kill_leftovers(task_pids(tmp_path / "run"))
    assert result.returncode == 0, result.stderr.decode()
    assert b"Bad file descriptor" not in result.stderr and b"Traceback" not in result.stderr
    sandbox = sandbox_with_log(tmp_path, b"logged\n")
    for command in (f"stoker status {tmp_path / 'run'} >&-", f"stoker tail {sandbox} web >&-"):
        result = shell(tmp_path, command)
        assert (result.returncode, result.stderr) == (0, b""), (command, result.stderr.decode())
    result = shell(tmp_path, f"stoker tail {sandbox} nope 2>&-")
    assert (result.returncode, result.stdout) == (1, b"")  # the error is not printed as output
    assert (tmp_path / "run" / "done").exists()



@pytest.mark.parametrize("fd", [0, 1, 2])
def test_a_descriptor_closed_at_exec_is_dev_null_for_the_supervisor_s_whole_run(tmp_path, fd):
    """`stoker run JOB <&-` (or `>&-`, `2>&-`): descriptor 0, 1 or 2 is /dev/null as soon as
    Stoker starts, so that no file it opens later (its lock, its checkpoint, a run's log) takes
    that number, where a process's console output or a stray read would reach it; the task
    runs, and a stop ends it as ever."""
    cfg = batch(tmp_path, f"touch {tmp_path / 'started'}; exec sleep 1000")
    sandbox = tmp_path / "run"
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen(["/bin/sh", "-c", f'exec "$@" {fd}<&-', "sh", sys.executable, "-m", "executor",
                                 "run", str(cfg), "--sandbox", str(sandbox)],
                                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / "started").exists() or proc.poll() is not None, 20)
        assert proc.poll() is None, (tmp_path / "err").read_text()
        assert os.readlink(f"/proc/{proc.pid}/fd/{fd}") == os.devnull
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM
        assert "Traceback" not in (tmp_path / "err").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        kill_leftovers(task_pids(sandbox))


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_an_output_that_cannot_be_written_is_one_error_line_and_status_1(tmp_path, unbuffered):
    """`stoker ps > /dev/full` (a full disk, a quota): the interpreter's last flush failed
    silently, so the command exited 0 with its output lost (`stoker status --json >
    state.json` on a full disk: an empty file, and success); with PYTHONUNBUFFERED set, and
    for any output past a buffer, it was a traceback (`stoker tail`'s: exit 120). Now one
    `stoker: error:` line says so, status 1, whichever command wrote it (`inspect CONFIG`'s
    in the child that runs the config too)."""
    sandbox, ran = sandbox_with_log(tmp_path, b"logged\n"), tmp_path / "ran"
    cfg, registry = batch(tmp_path), {"STOKER_ROOT": str(tmp_path / "registry")}
    result = shell(tmp_path, f"stoker run {cfg} --sandbox {ran} > /dev/null", env=registry)
    kill_leftovers(task_pids(ran))
    assert result.returncode == 0, result.stderr.decode()
    commands = [f"stoker tail {sandbox} web", f"stoker inspect {cfg}", "stoker ps --all",
                f"stoker status {ran}", f"stoker status {ran} --json"]
    for command in commands:
        result = shell(tmp_path, f"{command} > /dev/full",
                       env={"PYTHONUNBUFFERED": unbuffered, **registry})
        assert (result.returncode, result.stderr.decode()) == (
            1, "stoker: error: cannot write to stdout: No space left on device\n"), command


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_help_and_version_that_cannot_be_written_are_one_error_line_and_status_1(tmp_path, unbuffered):
    """`stoker --help > /dev/full`, `--version`, a command's --help: argparse swallowed the
    failed write (and its flush), so they exited 0 with the text lost; they now say so as
    every command's output does (one `stoker: error:` line, status 1). A reader that closed
    the pipe once it had what it wanted is no error."""
    for command in ("stoker --help", "stoker --version", "stoker run --help", "stoker ps --help"):
        result = shell(tmp_path, f"{command} > /dev/full", env={"PYTHONUNBUFFERED": unbuffered})
        assert (result.returncode, result.stderr.decode()) == (
            1, "stoker: error: cannot write to stdout: No space left on device\n"), command
    reader, writer = os.pipe()
    os.close(reader)  # gone before the help is written: EPIPE at its first write
    try:
        closed = subprocess.run([sys.executable, "-m", "executor", "--help"], cwd=tmp_path, stdout=writer,
                                stderr=subprocess.PIPE, timeout=20,
                                env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": unbuffered})
    finally:
        os.close(writer)
    assert (closed.returncode, closed.stderr) == (0, b"")


def test_a_run_into_a_full_disk_says_once_that_its_lines_are_lost(tmp_path):
    """`stoker run > /dev/full`: a full disk is taken for a passing state (the console says
    how many lines were lost once a write works again), but /dev/full never takes one, so
    nothing ever said that the console's lines were lost (exit 0, stderr empty). Now one
    WARNING says so the first time, however many lines are lost; and with stderr full too
    the run neither blocks nor fails."""
    cfg = batch(tmp_path, "echo out; sleep 0.2; echo done")
    result = shell(tmp_path, f"stoker run {cfg} --sandbox {tmp_path / 'run'} > /dev/full")
    kill_leftovers(task_pids(tmp_path / "run"))
    assert result.returncode == 0, result.stderr.decode()
    said = [line for line in result.stderr.decode().splitlines() if "stdout_lost" in line]
    assert len(said) == 1 and "stdout could not be written (the disk was full)" in said[0], result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    result = shell(tmp_path, f"stoker run {cfg} --sandbox {tmp_path / 'again'} > /dev/full 2>&1")
    kill_leftovers(task_pids(tmp_path / "again"))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


@c_locale_starts
def test_a_c_locale_without_utf8_mode_writes_out_what_ascii_cannot_show(tmp_path):
    """`LC_ALL=C PYTHONUTF8=0`: Python's stdout is ASCII with surrogateescape, which raises
    on `ô` as strict does; `stoker inspect` (as `ps`, `status` and `kill`) of a job whose
    text is French and Chinese ended in a UnicodeEncodeError traceback, and `stoker run`'s
    console took it for a closed stdout and printed nothing more. Now it is written out,
    and a closed stdout (the /dev/null stream Stoker opens in its place) takes it too. (A
    job key is ASCII, as Aurora's: the command line carries the text.)"""
    cfg = write_config(tmp_path, f"""
        jobs = [Job(cluster='local', role='me', environment='test', name='job',
                    task=Task(processes=[Process(name='p', cmdline='echo rôle 作业')], {RESOURCES}))]
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHON"))}
    env.update({"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONPATH": str(REPO)})
    done = subprocess.run([sys.executable, "-m", "executor", "inspect", str(cfg)],
                          capture_output=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr.decode()
    assert b"| echo r\\xf4le \\u4f5c\\u4e1a\n" in done.stdout, done.stdout
    closed = shell(tmp_path, f"stoker inspect {cfg} >&-", env={"LC_ALL": "C", "PYTHONUTF8": "0"})
    assert (closed.returncode, closed.stderr) == (0, b""), closed.stderr.decode()  # /dev/null's stream too


def test_observe_whose_address_line_cannot_be_written_says_so_not_that_it_cannot_listen(tmp_path):
    """`stoker observe > /dev/full`: the line naming its address failed, and the error said
    `cannot listen on 127.0.0.1:0: No space left on device` (it listened); to a pipe whose
    reader is gone, `cannot listen ...: Broken pipe`, exit 1. Now as every command's output:
    one `cannot write to stdout` line, status 1; a reader gone, status 0 and no line."""
    registry = {"STOKER_ROOT": str(tmp_path / "registry")}
    observe = "stoker observe --port 0 --log-level WARNING"
    result = shell(tmp_path, f"{observe} > /dev/full", env=registry)
    assert (result.returncode, result.stderr.decode()) == (
        1, "stoker: error: cannot write to stdout: No space left on device\n")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the line is written
    try:
        ended = subprocess.run(["/bin/sh", "-c", observe.replace("stoker", python_sh("-m", "executor"))],
                               stdout=write, stderr=subprocess.PIPE, cwd=tmp_path, timeout=30,
                               env={**os.environ, **registry})
    finally:
        os.close(write)
    assert (ended.returncode, ended.stderr.decode()) == (0, "")
