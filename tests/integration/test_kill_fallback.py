"""kill() where no pidfd carries a signal (`pidsignal.pidfd_signal`, `kill_checked`), under a
real seccomp filter (`tests/support/seccomp.py`) and, for a pid reused at a moment the test
chooses, in a PID namespace of its own whose next pid the test sets (`ns_last_pid`).

- A pid reused between the re-check in /proc and the signal: without pidfds (a kernel
  before 5.3, an older Docker profile) the judged process's start time, and where only
  pidfd_send_signal is denied its pidfd, is asked again just before kill(): the process
  that took the pid is not stopped (before, it was SIGSTOPped and left so, not being ours).
- A process that refuses the signal (another user's, to a Stoker that is not root) where
  pidfds work: its EPERM is not retried by kill() (before, it was, and a pid reused between
  the two calls would have taken the signal); shown by a filter that denies kill().
- pidfd_open's EMFILE as the reaper starts is no `pidfds_unavailable` warning (before, it
  was one, naming EMFILE, as if the host denied pidfds).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support import seccomp
from tests.support.stoker_proc import REPO
from tests.support.users import reachable, stoker_as

NOBODY = 65534


REUSED = """
import os, signal, subprocess, time
from executor.procs import proctree
target = subprocess.Popen(["sleep", "30"])
took = []
def check(info, ours):  # the judged process exits, is reaped, and its pid is taken, just now
    target.kill()
    target.wait()
    time.sleep(0.02)  # a clock tick later: another start time
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(target.pid - 1))
    took.append(subprocess.Popen(["sleep", "30"]))
    return info.pid == target.pid
sent = proctree.send_checked([target.pid], signal.SIGSTOP, check)
print(took[0].pid == target.pid, sent)
took[0].kill()
took[0].wait()
"""


@pytest.mark.parametrize("rules", [["no-pidfds"], ["pidfd_send_signal=EPERM"]], ids="+".join)
def test_a_pid_reused_after_the_re_check_is_not_signalled(rules):
    seccomp.require()  # skips where no filter can be installed (another arch, no seccomp)
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("a PID namespace of its own (unshare, as root)")
    result = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", *seccomp.launcher(rules),
                             sys.executable, "-c", REUSED], capture_output=True, text=True, timeout=20, cwd=REPO)
    if result.returncode and "unshare" in result.stderr:
        pytest.skip(f"no PID namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True []\n"  # the pid was reused; nothing sent (before: [2], SIGSTOPped)


REFUSED = """
import signal, sys
from executor.procs import proctree
pid = int(sys.argv[1])
refused = []
try:
    sent = proctree.send_checked([pid], signal.SIGTERM, lambda info, ours: True, refused=refused)
    print(sent, refused == [pid])
except OSError as e:
    print("kill() asked:", e)
"""


def test_a_refusal_through_a_pidfd_is_not_asked_of_kill():
    seccomp.require()
    if os.geteuid() != 0:
        pytest.skip("another user's process to refuse the signal: the test must be root")
    stoker = stoker_as(NOBODY, NOBODY)
    if stoker is None:
        pytest.skip("no Python an unprivileged user may run this checkout with")
    python = stoker[:-2]  # setpriv ... env PYTHONPATH=... python, without "-m executor"
    target = subprocess.Popen(["sleep", "30"])  # root's: nobody may not signal it
    try:
        result = subprocess.run([*python, reachable(seccomp.launcher([])[1], stoker), "kill=EDOM", "--", python[-1], "-c", REFUSED,
                                 str(target.pid)], capture_output=True, text=True, timeout=20, cwd="/")
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[] True\n"  # refused, as its own: before, "kill() asked: ... EDOM"


NO_FD = """
import contextlib, logging, os, resource, sys
from executor.procs import reaper
logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
with contextlib.suppress(OSError):  # until every descriptor the limit allows is taken
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
print("pidfds usable:", reaper.check_pidfds())
"""


def test_a_moment_without_a_descriptor_to_spare_is_not_taken_for_a_host_without_pidfds():
    """pidfd_open's EMFILE as the reaper starts (every descriptor of the limit in use): no
    `pidfds_unavailable` warning, which would send an operator after a seccomp profile;
    each signal's own pidfd_open asks again. Before, the warning named EMFILE."""
    result = subprocess.run([sys.executable, "-c", NO_FD], capture_output=True, text=True, timeout=20, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pidfds usable: True\n"
