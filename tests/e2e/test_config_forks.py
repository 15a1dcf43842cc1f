"""A config whose code forks a process that outlives it (a daemon started from a `.aurora`
file): `stoker inspect` and `stoker run` answer once the process running the config has
answered and ended, not when that fork exits. The fork inherited the write end of the
pipe the answer comes through; reading until the pipe ended waited for the fork (for ever,
for a daemon) before printing anything (`executor.local.planahead.read_answer`)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.support import pidnames
from tests.support.stoker_proc import REPO, measured
from tests.support.waiting import wait_for

# The fork leaves the terminal's streams (a daemon's own would keep a caller's pipe open,
# whatever Stoker does) but not the descriptors it inherited, writes its pid and sleeps
# until the test kills it.
CONFIG = textwrap.dedent("""
    import os, time
    if os.fork() == 0:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        open("fork.pid.tmp", "w").write(str(os.getpid()))
        os.rename("fork.pid.tmp", "fork.pid")
        time.sleep(600)
        os._exit(0)
    jobs = [Job(cluster='local', role='me', environment='test', name='forks',
                task=Task(processes=[Process(name='once', cmdline='echo ran > ran')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
""")


@pytest.mark.parametrize("words", [
    ["inspect"],
    ["run", "--sandbox", "box"],  # the first run: planned by the child forked ahead
    ["run", "--bind", "unused=1", "--sandbox", "box"],  # planned by `plan_apart`'s child
], ids=["inspect", "run-ahead", "run-apart"])
def test_a_fork_the_config_leaves_running_does_not_hold_the_answer(tmp_path, words):
    (tmp_path / "forks.aurora").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "STOKER_"))}
    # a registry of its own: `stoker run` registers its task (the host's, /var/run/stoker as
    # root, kept two entries of every run of this test)
    env.update(PYTHONPATH=str(REPO), STOKER_PLAN_CACHE=str(tmp_path / "plans"), STOKER_ROOT=str(tmp_path / "registry"))
    pid_file = tmp_path / "fork.pid"
    try:
        result = subprocess.run([sys.executable, "-m", "executor", *words, "forks.aurora"], cwd=tmp_path,
                                env=measured(env), capture_output=True, text=True, timeout=45)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert pid_file.exists()  # it was forked, and sleeps 600 s: the answer did not wait for it
        if words[0] == "run":  # (which then ended it, as it ends whatever its job left: a subreaper)
            assert (tmp_path / "box" / "ran").read_text() == "ran\n"
        else:
            assert pidnames.is_live(pidnames.pid_in(pid_file))  # still running
            assert result.stdout.startswith("job local/me/test/forks\n")
    finally:
        forks = pidnames.pid_file(pid_file)  # (one `stoker run` ended is gone: its pid may be another's)
        for pid in forks:
            pidnames.kill(pid)
        wait_for(lambda: not pidnames.live(forks), 10, message="the config's fork gone")
