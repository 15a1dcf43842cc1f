"""The early start (executor/cli/launch.py) and signals: what a run it forks inherits, and
what happens to a stray signal its runs send while `stoker run` loads and the early start
is given up. (The stops while it loads, with the adopted runs: test_early_start.py.)"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.support.earlyjob import stdout_of, write
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(120)


def test_the_early_start_records_the_strays_the_relay_ignores_and_drops_them_when_given_up():
    from executor.cli import start
    from executor.host.early import STRAYS
    from executor.host.signals import STRAY_SIGNALS

    assert STRAYS == STRAY_SIGNALS == start.STRAYS  # and those the entry point ignores while loading
    # An early start given up puts the handlers back and raises the stops that came: not a
    # stray its runs sent, which would end the command the supervisor would have ignored it in.
    code = ("import signal; from executor.host import early; early.defer_stop_signals(); "
            "signal.raise_signal(signal.SIGUSR1); signal.raise_signal(signal.SIGRTMIN + 3); "
            "early.undefer_stop_signals(); print('supervises on')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "supervises on\n"), done.stderr


def test_every_run_starts_with_the_same_signals_whatever_stoker_was_started_with(tmp_path):
    # Stoker started with SIGINT and SIGQUIT ignored (as a script's background job is), and
    # SIGTERM, SIGTSTP and SIGCHLD too, and SIGTERM and SIGUSR1 blocked. A supervisor must
    # reap its children (an ignored SIGCHLD has the kernel reap them) and stop on SIGTERM,
    # and it handles its stop signals itself, so every run gets those at their defaults and
    # nothing blocked, whichever path forked it: `first` starts early (from the plan made
    # ahead at the first run, from the kept one at the third), or from the supervisor with
    # STOKER_EARLY_START=off (the second); `then` (after it) from the supervisor. One it leaves alone (SIGQUIT) stays ignored, as
    # across any exec. (glibc's posix_spawn leaves its own two signals, 32 and 33, ignored
    # in an early run: a known difference, executor/procs/earlyfork.py.)
    show = "exec grep -E \"^Sig(Blk|Ign):\" /proc/self/status"
    config = write(tmp_path, f"Process(name='first', cmdline='{show}')", f"Process(name='then', cmdline='{show}')")
    config.write_text(config.read_text().replace("finalization_wait=2)", "finalization_wait=2, "
                                                 "constraints=order('first', 'then'))"))

    def started_so() -> None:  # in the child, before it execs Stoker
        for signum in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:  # whatever pytest got
            with contextlib.suppress(OSError, ValueError):  # (`nohup make test`: SIGHUP ignored)
                signal.signal(signum, signal.SIG_DFL)
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGTSTP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})

    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    env.update(PYTHONPATH=str(REPO), STOKER_PLAN_CACHE=str(tmp_path / "plans"), STOKER_LOG_LEVEL="DEBUG")
    states, adoptions = [], []
    for attempt, early in enumerate(("on", "off", "on")):  # planned ahead, kept (started late, then early)
        sandbox = tmp_path / f"sandbox{attempt}"
        try:
            done = subprocess.run([sys.executable, "-m", "executor", "run", str(config), "--sandbox", str(sandbox)],
                                  cwd=tmp_path, env={**env, "STOKER_EARLY_START": early}, capture_output=True,
                                  text=True, timeout=60,
                                  preexec_fn=started_so, start_new_session=True)
        finally:
            kill_leftovers(task_pids(sandbox))
        assert done.returncode == 0, done.stdout + done.stderr
        adoptions.append(re.findall(r"process_adopted task=\S+ process=(\S+) run=0", done.stderr))
        for process in ("first", "then"):
            text = stdout_of(sandbox, process)
            blocked, ignored = (int(re.search(rf"{name}:\s+([0-9a-f]+)", text)[1], 16) for name in ("SigBlk", "SigIgn"))
            states.append((blocked, ignored & ~(1 << 31 | 1 << 32)))  # but glibc's 32 and 33
    assert adoptions == [["first"], [], ["first"]]
    assert states == [(0, 1 << (signal.SIGQUIT - 1))] * 6


def stop_as_the_sandbox_is_made(name: str, signum: int) -> str:
    """A hook that sends `signum` to the process (from itself) right as the early start has
    made its sandbox, when the sandbox is named `name`."""
    return patched_at_load("executor.cli.launch", f"""
    def _patch(module):
        real = os.mkdir

        def mkdir(path, *args, **kwargs):
            real(path, *args, **kwargs)
            if "dir_fd" not in kwargs and os.path.basename(path) == {name!r}:
                os.kill(os.getpid(), {int(signum)})

        module.os = type(sys)("os")
        module.os.__dict__.update(os.__dict__, mkdir=mkdir)
    """)


def test_a_ctrl_c_as_the_early_start_makes_its_sandbox_leaves_none(tmp_path):
    """Was: the sandbox made, the KeyboardInterrupt raised before the early start held it
    (and would give it up), the empty directory stayed behind."""
    config = write(tmp_path, "Process(name='first', cmdline='true')")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(stop_as_the_sandbox_is_made("sandbox1", signal.SIGINT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    env.update(PYTHONPATH=f"{hook}{os.pathsep}{REPO}", STOKER_PLAN_CACHE=str(tmp_path / "plans"))
    statuses, said = [], []
    for attempt in range(2):  # started early from the plan made ahead, then from the kept one
        sandbox = tmp_path / f"sandbox{attempt}"
        try:
            done = subprocess.run([sys.executable, "-m", "executor", "run", str(config), "--sandbox", str(sandbox)],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        finally:
            kill_leftovers(task_pids(sandbox))
        assert "Traceback" not in done.stderr, done.stderr
        statuses.append(done.returncode)
        said.append(done.stdout + done.stderr)
    assert statuses == [0, 130], said
    assert not (tmp_path / "sandbox1").exists()


def test_a_first_run_with_a_second_thread_starts_nothing_early_that_a_stop_could_leave_behind(tmp_path):
    """Was: a line logged before `stoker run` starts its plan's first runs (here systemd's
    NOTIFY_SOCKET of a kind Stoker does not speak) started the log spool's thread, which
    took the SIGTERM the early start held off in the main thread alone; raised as its
    sandbox was made, before it held it: the empty directory stayed behind (exit 143). With
    a second thread, the early start's mask holds no stop: it starts nothing early."""
    config = write(tmp_path, "Process(name='first', cmdline='true')")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(stop_as_the_sandbox_is_made("sandbox", signal.SIGTERM))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    env.update(PYTHONPATH=f"{hook}{os.pathsep}{REPO}", STOKER_PLAN_CACHE=str(tmp_path / "plans"),
               STOKER_LOG_LEVEL="DEBUG", NOTIFY_SOCKET="vsock:2:9")
    sandbox = tmp_path / "sandbox"
    try:
        done = subprocess.run([sys.executable, "-m", "executor", "run", str(config), "--sandbox", str(sandbox)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    finally:
        kill_leftovers(task_pids(sandbox))
    assert "systemd_notify_unsupported" in done.stderr  # the line that started the spool's thread
    assert done.returncode == 0, done.stdout + done.stderr
    assert "process_adopted" not in done.stderr
    assert (sandbox / ".stoker" / "checkpoint.jsonl").exists()
