"""A Stoker that is not root, under a /proc mounted `hidepid=2` (a hardened host's, some
containers'): /proc hides from it every process it may not ptrace, so a daemon of the task
that made itself not dumpable (ssh-agent, gpg-agent) has no /proc entry for it, though the
subreaper adopted it and its pid is in Stoker's children list. It is still stopped with the
task (`proctree.hidden_child`); it outlived the task before.

Emulated in a mount and PID namespace of the test's own, with a /proc of its own remounted
`hidepid=2` (the host's /proc is not touched); root and util-linux only, skipped elsewhere.
"""
from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.e2e.test_as_init import _can_unshare, _children, _state
from tests.support.users import open_sandbox, stoker_as
from tests.support.waiting import wait_for

NOBODY = 65534

DAEMON = """\
import ctypes, os, sys, time
if os.fork(): os._exit(0)
os.setsid()
if os.fork(): os._exit(0)
libc = ctypes.CDLL(None)
libc.prctl(15, b"stkr-agent", 0, 0, 0)  # PR_SET_NAME: the test finds it so
libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0, as ssh-agent
time.sleep(60)
"""

# PID 1 of the namespace is this shell, not Stoker; it outlives Stoker, so that a daemon
# Stoker left behind is still there to be seen (it re-parents to the shell).
# Its exit status is written beside and renamed into place: read between the redirection's
# truncation and the echo, the file was empty (seen once, on two workers under a load of 7).
SHELL = 'mount -o remount,hidepid=2 /proc || exit 97; "$@"; echo $? > "$RC.new"; mv "$RC.new" "$RC"; exec sleep 60'


def test_a_daemon_proc_hides_is_stopped_with_the_task() -> None:
    if not _can_unshare():
        pytest.skip("needs root and util-linux's unshare")
    stoker = stoker_as(NOBODY, NOBODY)
    if stoker is None:
        pytest.skip("no Python an unprivileged user may run this checkout with")
    with open_sandbox() as top:
        os.chmod(top, 0o755)
        os.chown(top, NOBODY, NOBODY)
        (top / "daemon.py").write_text(DAEMON)
        (top / "job.aurora").write_text(textwrap.dedent(f"""
            main = Process(name='main', cmdline='python3 {top}/daemon.py; exec sleep 60')
            jobs = [Service(cluster='local', role='nobody', environment='test', name='svc',
                            task=Task(processes=[main], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
        """))
        env = {**os.environ, "RC": str(top / "rc"), "STOKER_ROOT": str(top / "registry"),
               "STOKER_PLAN_CACHE": str(top / "plans")}
        argv = [*stoker, "run", "--cgroups", "off", "--sandbox", str(top / "sb"), str(top / "job.aurora")]
        with open(top / "out", "wb") as out:
            ns = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c", SHELL,
                                   "sh", *argv], cwd=top, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            # Generous bounds (30 s), not wait_for's 5 s: stoker run starts as nobody, and its
            # task's Python forks the daemon twice; the whole test takes about 1 s on a quiet
            # host, up to 17 s with two of it at once under a load of 16.
            init = wait_for(lambda: _children(ns.pid), 30, message="the namespace's shell")[0]
            # the shell's first child may be its `mount` still (on a busy host): not stoker run,
            # nor is a fork of the shell that has not exec'd yet (`_running`)
            supervisor = wait_for(lambda: _running(init, str(top / "job.aurora")), 30, message="stoker run")
            agent = wait_for(lambda: _named(supervisor, "stkr-agent"), 30, message="the daemon, adopted")
            os.kill(supervisor, signal.SIGTERM)
            wait_for(lambda: (top / "rc").exists(), 10, message="stoker run's exit")
            text = (top / "out").read_text(errors="replace")
            assert (top / "rc").read_text().strip() == "143", text
            assert _state(agent) in ("gone", "Z"), f"the hidden daemon outlived its task:\n{text}"
        finally:
            os.killpg(ns.pid, signal.SIGKILL)  # unshare and the namespace's init: the namespace dies
            ns.wait(10)


def _named(parent: int, name: str) -> int | None:
    """The child of `parent` named `name` (its /proc/PID/comm)."""
    for pid in _children(parent):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                return pid
        except OSError:
            continue
    return None


def _running(parent: int, arg: str) -> int | None:
    """The child of `parent` given `arg` on its command line, once it runs a program of its
    own: a fork of the namespace's shell not yet exec'd (its `mount`, or the child that
    execs stoker run) has the shell's command line, `sh -c SHELL sh ARGV...`, which holds
    `arg` too. Taken for stoker run, the `mount` left the test waiting on a pid gone."""
    for pid in _children(parent):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv and argv[0] != b"sh":
            return pid
    return None
