"""Stoker's supervisor when memory cannot be had on one of its threads (a MemoryError where
an allocation is refused, made in a child Python, `python_child`): each thread goes on.

- A MemoryError in the reaper's thread ended that thread: no child's exit was heard again,
  and the task's runs never ended for their supervisor. It now waits again a moment later
  (the child is still there: its exit is taken with WNOWAIT); one the kernel reaped as the
  MemoryError came is handed on with the status its wait saw.
- So did one in the signal relay's read: every later SIGTERM and SIGINT was ignored (only
  kill -9 stopped `stoker run`), or in its reaction's error line. It goes on a moment later
  where it was (a buffer made once: no signal is lost, none run twice).
- So did one in the supervisor's move into the task's cgroup, the move taken for done: the
  runs were born outside a cgroup the containment line named. It is a failed move now (the
  task contained without a cgroup, the reason said).

The limits and the owner's MemoryError: test_audit_memory.py; the health loop's:
test_audit_memory_health.py.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from tests.support.limits import python_child
from tests.support.stoker_proc import REPO

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


# A real Supervisor and run; the reaper's waitid answers, then its result cannot be made
# (what CPython raises when the allocation after the system call fails): once, for the run's
# exit. The run's exit must still be posted.
REAPER_CHILD = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from config.spec import ProcessSpec
from executor.procs import reaper
from executor.procs.supervisor import Supervisor
refusals, runs, line_refused = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "line refused"
real_waitid, armed, refused = os.waitid, [], []
def waitid(*args):
    info = real_waitid(*args)
    if armed and info is not None and refused.count(info.si_pid) < refusals:
        refused.append(info.si_pid)
        raise MemoryError
    return info
os.waitid = waitid
real_log = reaper.log_event
def log_event(*args, **kwargs):
    if line_refused:
        raise MemoryError  # nor the line saying so
    return real_log(*args, **kwargs)
reaper.log_event = log_event
events, pids = [], []
sup = Supervisor(sandbox=Path(sys.argv[1]), task_label="memory.0", env={}, post=events.append,
                 cgroups="off")
sup.start()
try:
    armed.append(True)
    for run in range(runs):  # one after the other: a shortage each, with a pass between
        pids.append(sup.spawn(ProcessSpec("p", "exit 3"), run))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(type(e).__name__ == "ProcessExited" for e in events) <= run:
            time.sleep(0.01)
    exited = [str(e.status) for e in events if type(e).__name__ == "ProcessExited"]
    print(json.dumps({"refused_for_the_runs": refused == [p for p in pids for _ in range(refusals)],
                      "exited": exited}), flush=True)
finally:
    armed.clear()  # (the watchdog's exit at the close is not refused)
    sup.close()
"""

SHORT_OF_MEMORY = ('reaper_short_of_memory reason="a child\'s exit could not be taken (MemoryError); '
                   'tried again every 0.1 s until it can"\n')


@pytest.mark.parametrize(("refusals", "runs", "line", "said"), [
    (1, 1, "", SHORT_OF_MEMORY), (3, 1, "", SHORT_OF_MEMORY),  # once however many in a row
    (1, 2, "", SHORT_OF_MEMORY * 2),  # once a shortage: a pass between ends one
    (1, 1, "line refused", ""),  # the line too found none: the exit is taken all the same
])
def test_a_memory_error_in_the_reaper_s_wait_does_not_end_the_hearing_of_exits(
        tmp_path, refusals, runs, line, said) -> None:
    (tmp_path / "sb").mkdir()
    done = python_child(REAPER_CHILD, str(tmp_path / "sb"), str(REPO), str(refusals), str(runs), line)
    out = json.loads(done.stdout)
    assert out["refused_for_the_runs"], out
    assert len(out["exited"]) == runs and all("3" in e for e in out["exited"]), out
    assert done.stderr == said, done.stderr[-2000:]


# The same, cut one step later: the reap's `waitpid` reaps the run in the kernel, then its
# answer cannot be made (CPython builds it after the system call). Before, the run's
# watcher was already out of the registry and the zombie gone: the retry found nothing to
# wait for, and the run's exit was never posted. Its status is the one `waitid` saw.
REAP_CHILD = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from config.spec import ProcessSpec
from executor.procs.supervisor import Supervisor
real_waitpid, armed, refused = os.waitpid, [], []
def waitpid(pid, options):
    if sys.argv[4] == "before" and armed and not refused:  # the zombie still there
        refused.append(pid)
        raise MemoryError
    got = real_waitpid(pid, options)
    if sys.argv[4] == "after" and armed and not refused and got[0] == pid:
        refused.append(pid)
        raise MemoryError
    return got
os.waitpid = waitpid
events = []
sup = Supervisor(sandbox=Path(sys.argv[1]), task_label="memory.0", env={}, post=events.append,
                 cgroups="off")
sup.start()
try:
    armed.append(True)
    pid = sup.spawn(ProcessSpec("p", sys.argv[3]), 0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(type(e).__name__ == "ProcessExited" for e in events):
        time.sleep(0.01)
    exited = [(e.status.exit_code, e.status.signal) for e in events
              if type(e).__name__ == "ProcessExited"]
    print(json.dumps({"refused_for_the_run": refused == [pid], "exited": exited}), flush=True)
finally:
    sup.close()
"""


@pytest.mark.parametrize("when", ["after", "before"])  # before: the zombie is reaped at the retry
@pytest.mark.parametrize(("command", "exited"), [("exit 3", [3, None]),
                                                  ("kill -KILL $$", [None, 9])])
def test_a_memory_error_after_the_kernel_reaped_a_run_still_posts_its_exit(
        tmp_path, command, exited, when) -> None:
    (tmp_path / "sb").mkdir()
    done = subprocess.run([sys.executable, "-c", REAP_CHILD, str(tmp_path / "sb"), str(REPO),
                           command, when], capture_output=True, text=True, timeout=40)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["refused_for_the_run"], out
    assert out["exited"] == [exited], (out, done.stderr[-2000:])
    assert "reap_lost" not in done.stderr and "thread_crashed" not in done.stderr, done.stderr[-2000:]

# The signal relay's thread, whose read of the wakeup pipe cannot have its buffer once (a
# MemoryError before the read: no byte taken): before, the thread ended, and every later
# SIGTERM or SIGINT reached only the handler that leaves the relay to act.
RELAY_CHILD = r"""
import os, signal, sys, threading
sys.path.insert(0, sys.argv[1])
from executor.host.signals import SignalRelay
heard = threading.Event()
relay = SignalRelay([signal.SIGUSR1], lambda signum: heard.set())
real_readv, refused = os.readv, []
def readv(fd, buffers):
    if fd == relay._read and not refused:
        refused.append(fd)
        raise MemoryError
    return real_readv(fd, buffers)
os.readv = readv
os.write(relay._write, b"\x7f")  # no relayed signal's number: wakes the thread into the refusal
while not refused:
    threading.Event().wait(0.01)
os.kill(os.getpid(), signal.SIGUSR1)
print("heard" if heard.wait(20) else "not heard", flush=True)
relay.close()
"""


def test_a_memory_error_in_the_signal_relay_s_read_does_not_end_the_relay() -> None:
    done = subprocess.run([sys.executable, "-c", RELAY_CHILD, str(REPO)], capture_output=True,
                          text=True, timeout=40)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "heard\n", (done.stdout, done.stderr[-2000:])


# The relay's reaction to a signal cannot be made (a MemoryError), nor its error line: that
# MemoryError, out of the read's `try`, ended the thread, and every later signal was ignored.
RELAY_REACTION_CHILD = r"""
import os, signal, sys, threading
sys.path.insert(0, sys.argv[1])
from executor.host import signals
heard, refused = [], []
def on_signal(signum):
    if not refused:
        refused.append(signum)
        raise MemoryError  # the reaction could not be made
    heard.append(signum)
real_log = signals.log_event
def log_event(*args, **kwargs):
    if len(refused) == 1:
        refused.append("its line")
        raise MemoryError  # nor the line saying so
    return real_log(*args, **kwargs)
signals.log_event = log_event
relay = signals.SignalRelay([signal.SIGUSR1], on_signal)
os.kill(os.getpid(), signal.SIGUSR1)
while len(refused) < 2:
    threading.Event().wait(0.01)
os.kill(os.getpid(), signal.SIGUSR1)
for _ in range(2000):
    if heard:
        break
    threading.Event().wait(0.01)
print("heard" if heard else "not heard", relay._thread.is_alive(), flush=True)
relay.close()
"""


def test_a_memory_error_in_a_signal_s_reaction_and_its_line_does_not_end_the_relay() -> None:
    done = python_child(RELAY_REACTION_CHILD, str(REPO))
    assert done.stdout == "heard True\n", (done.stdout, done.stderr[-2000:])

# The supervisor's move into the task's cgroup, cut by a MemoryError: before, the thread
# that moves it ended with the move taken for done, and the task's runs were forked outside
# a cgroup the containment line still named ('cgroup2 cgroup ... (cgroup.kill)'); it is now
# a failed move, said as one, and the task runs contained without a cgroup.
ENTER_CHILD = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from config.spec import ProcessSpec
from executor.procs import cgroups
from executor.procs.supervisor import Supervisor
called = []
def enter(self):
    called.append(self.place.directory)
    raise MemoryError
cgroups.TaskCgroup.enter = enter
sup = Supervisor(sandbox=Path(sys.argv[1]), task_label="memory.0", env={}, post=lambda e: None)
sup.start()
try:
    pid = sup.spawn(ProcessSpec("p", "sleep 30"), 0)
    with open(f"/proc/{pid}/cgroup") as f:
        inside = [line.strip() for line in f if "stoker-" in line]
    print(json.dumps({"called": called, "containment": sup.containment, "cgroup": sup.cgroup,
                      "run_inside": inside}), flush=True)
finally:
    sup.close()
"""


def test_a_memory_error_in_the_move_into_the_task_s_cgroup_is_a_failed_move(tmp_path) -> None:
    (tmp_path / "sb").mkdir()
    done = python_child(ENTER_CHILD, str(tmp_path / "sb"), str(REPO))
    out = json.loads(done.stdout)
    if not out["called"]:
        pytest.skip(f"no task cgroup could be made here: {out['containment']}")
    assert out["cgroup"] is None and out["run_inside"] == [], out
    assert out["containment"].startswith("process groups, task markers and the subreaper (no "
                                         f"cgroup: cannot move the supervisor into {out['called'][0]}: "
                                         "Cannot allocate memory (ENOMEM)"), out
    assert not os.path.exists(out["called"][0]), "the cgroup made for the task was left"


# The same cut in the early start's move (`cgrouplife.begin`, on its own thread, before the
# supervisor loads): a failed move, the cgroup made for it removed when it is given up.
EARLY_ENTER_CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from executor.procs import cgrouplife, cgroups
def enter(self):
    raise MemoryError if sys.argv[2] == "MemoryError" else PermissionError(13, "Permission denied")
cgroups.TaskCgroup.enter = enter
cgrouplife.begin(os.urandom(16).hex(), cgroups.SETTING_AUTO, -1, ())
made = cgrouplife._made
out = {"made": None if made is None else made.cgroup.directory}
if made is not None:
    cgrouplife.wait_moved()
    out.update(error=None if made.error is None else [made.error.errno, made.error.strerror],
               alive=made.thread.is_alive(), moved=sorted(made.moved))
    cgrouplife.discard()
    out["left"] = os.path.exists(made.cgroup.directory)
print(json.dumps(out))
"""


@pytest.mark.parametrize(("refusal", "error"), [("MemoryError", [errno.ENOMEM, os.strerror(errno.ENOMEM)]),
                                                 ("EACCES", [errno.EACCES, "Permission denied"])])  # (as ever)
def test_a_memory_error_in_the_early_start_s_move_is_a_failed_move_and_its_cgroup_goes(refusal, error) -> None:
    out = json.loads(python_child(EARLY_ENTER_CHILD, str(REPO), refusal).stdout)
    if out["made"] is None:
        pytest.skip("no task cgroup could be made here")
    assert out == {"made": out["made"], "error": error, "alive": False, "moved": [], "left": False}, out

