"""Run the real `stoker` CLI as a child process for end-to-end tests.

`StokerProcess` starts `python -m executor ARGS` in its own session, captures stdout and
stderr to files (so a chatty child can never block on a full pipe), and always cleans up:
`close()` SIGKILLs the whole session, and every pid the task ever had (read from the
sandbox checkpoint) is checked dead. The child starts with SIGHUP, SIGINT and SIGQUIT at
their defaults even when the tests run under nohup or as a script's background job
(`stop_signals_default`). Under `make coverage` (its environment names coverage's
configuration) `close()` first sends a SIGTERM and waits a moment, so that the process ends
by its own path and saves what it ran: one killed outright saves nothing (docs/testing.md
§14).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support import pidnames
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
# `make coverage`: every Python child measures itself, and saves its data when it exits
MEASURED = "COVERAGE_PROCESS_CONFIG" in os.environ
MEASURED_STOP_SECS = 10


def measured(env: dict[str, str]) -> dict[str, str]:
    """`env` (a child's cleared environment) with `make coverage`'s variables when it runs:
    a Python child started with `env` alone was not measured (docs/testing.md §14); and with
    the mutant `make mutation` runs the tests of (`MUTANT_UNDER_TEST`): such a child ran the
    code unmutated, and every mutant of what it ran survived (33 of `_chosen`'s 33)."""
    return {**env, **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "MUTANT_UNDER_TEST"}}


_STOPS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


@contextlib.contextmanager
def stop_signals_default() -> Iterator[None]:
    """SIGHUP, SIGINT and SIGQUIT at their defaults while children are forked, when this
    test run ignores them: under nohup (SIGHUP), or as a background job of a script (`make
    test &`: SIGINT and SIGQUIT). An ignored signal is inherited, and `stoker run` keeps it ignored
    until its own handlers are up (a Ctrl-C while an early start loads was lost, and the
    tests that send it failed); the tests that send them are about a terminal's defaults."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ignored = [signum for signum in _STOPS if signal.getsignal(signum) is signal.SIG_IGN]
    for signum in ignored:
        signal.signal(signum, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)


# What the installed `stoker` console script runs (`python -m executor` also loads runpy and
# importlib.util, which a supervisor then keeps: the bench measures what operators run).
CONSOLE_ENTRY = ("-c", "import sys; from executor.cli.start import run; sys.exit(run())")


_claimed: set[Path] = set()  # the output files of this test run's StokerProcesses


def _output_paths(workdir: Path) -> tuple[Path, Path]:
    """`stoker.stdout` and `stoker.stderr` in `workdir`, or for a second process there
    (`stoker kill` beside the `stoker run` it stops) `stoker-2.stdout`, ...: opening the
    first one's files again truncated what it had written."""
    number = 1
    while (stdout := workdir / ("stoker.stdout" if number == 1 else f"stoker-{number}.stdout")) in _claimed:
        number += 1
    stderr = stdout.with_suffix(".stderr")
    _claimed.update((stdout, stderr))
    return stdout, stderr


class StokerProcess:
    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = (), launcher: tuple[str, ...] = (),
                 entry: tuple[str, ...] = ("-m", "executor")) -> None:
        """`launcher`: a command prefix that execs the rest (a seccomp filter's, tests/support/seccomp.py);
        `entry`: what Python runs (`CONSOLE_ENTRY`: what the installed `stoker` script runs)."""
        self.workdir = Path(workdir)
        self.stdout_path, self.stderr_path = _output_paths(self.workdir)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
        full_env["PYTHONPATH"] = str(REPO)
        full_env.update(env or {})
        self.sandbox: Path | None = None  # where stoker_runs' runs keep their task
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err, stop_signals_default():
            self.proc = subprocess.Popen(
                [*launcher, sys.executable, *entry, *args],
                cwd=self.workdir, env=full_env, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=pass_fds,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, name: str = "") -> list[dict]:
        """Its log lines on stderr as `--log-format json` writes them, those of event `name`
        when given."""
        said = [json.loads(line) for line in self.stderr().splitlines() if line.startswith("{")]
        return [e for e in said if e["event"] == name] if name else said

    def wait_output(self, text: str, timeout_secs: float = 10, count: int = 1) -> str:
        wait_for(lambda: self.stdout().count(text) >= count or self.proc.poll() is not None,
                 timeout_secs, message=f"{text!r} in stoker's output")
        out = self.stdout()
        assert out.count(text) >= count, f"{text!r} not in output:\n{out}\nstderr:\n{self.stderr()}"
        return out

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_secs: float = 20) -> int:
        return self.proc.wait(timeout_secs)

    def exited(self, code: int = 0) -> StokerProcess:
        """Waits for its exit, which must have status `code` (else the failure shows what it
        printed), and closes it either way."""
        try:
            assert self.wait() == code, self.stdout() + self.stderr()
        finally:
            self.close()
        return self

    def stop(self, sig: int, code: int) -> float:
        """Sends `sig` and waits for an exit with status `code`: how long the exit took."""
        started = time.monotonic()
        self.signal(sig)
        assert self.wait() == code, self.stderr()
        return time.monotonic() - started

    def sigterm_and_close(self) -> None:
        """A SIGTERM, its exit awaited, closed (whatever is left SIGKILLed)."""
        try:
            self.signal(signal.SIGTERM)
            self.wait()
        finally:
            self.close()

    def close(self) -> None:
        if MEASURED and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(MEASURED_STOP_SECS)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def checkpoint_records(sandbox: Path) -> list[dict]:
    path = Path(sandbox) / ".stoker" / "checkpoint.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    return records


def task_pids(sandbox: Path) -> set[int]:
    """Every pid the checkpoint says a run of the task had, each named (`pidnames.named`) as
    its process started by the latest record naming it, when its records have a wall time
    (one that took the pid since started later: it is not the run's)."""
    latest: dict[int, float | None] = {}
    for r in checkpoint_records(sandbox):
        if r.get("kind") == "process" and (pid := r.get("pid")):
            wall = r.get("wall")
            known = latest.get(pid)
            latest[pid] = wall if known is None else max(known, wall or known)
    return {pidnames.named(pid, wall) for pid, wall in latest.items()}


def live(pids) -> set[int]:
    return pidnames.live(pids)


def signal_a_worker_thread(pid: int, sig: int) -> int:
    """Sends `sig` to one thread of process `pid` that is not its main thread (tgkill), as
    the kernel may do with a signal sent to the whole process; returns that thread's id."""
    workers = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    if not workers:
        raise AssertionError(f"process {pid} has no thread but its main one")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, workers[0], sig) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"tgkill({pid}, {workers[0]}): {os.strerror(err)}")
    return workers[0]


def kill_leftovers(pids) -> None:
    """SIGKILL each of `pids` that lives (a `pidnames.Named`, as `task_pids` gives them, only
    while its process is the one named: `pidnames.kill`), and wait a bounded time for them
    to be gone."""
    pids = list(pids)
    for pid in pids:
        pidnames.kill(pid)
    deadline = time.monotonic() + 10  # a bound: SIGKILLed processes a loaded host is slow to end
    while live(pids) and time.monotonic() < deadline:
        time.sleep(0.01)


def end_run(proc: subprocess.Popen, sandbox: Path) -> None:
    """A test's own `Popen` of `stoker run` (in a session of its own) ended, whatever the test
    did: its session SIGKILLed when it still runs, and every process of its task (the pids in
    `sandbox`'s checkpoint) killed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    kill_leftovers(task_pids(sandbox))


@contextlib.contextmanager
def stoker_runs(tmp_path: Path) -> Iterator[Callable[..., StokerProcess]]:
    """A fixture's maker of `stoker run ARGS --sandbox SANDBOX` runs, as many as the test
    starts: `start(*args, work=tmp_path, sandbox=work/"sandbox", env=None)`, the run's
    `.sandbox` set. After the test each run is closed and its task's processes killed."""
    started: list[StokerProcess] = []

    def start(*args: str, work: Path | None = None, sandbox: Path | None = None,
              env: dict[str, str] | None = None) -> StokerProcess:
        work = work or tmp_path
        sandbox = sandbox or work / "sandbox"
        proc = StokerProcess(["run", *args, "--sandbox", str(sandbox)], work, env=env)
        proc.sandbox = sandbox
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.close()
            kill_leftovers(task_pids(proc.sandbox))
