"""Stoker when memory cannot be had: an address-space limit (ulimit -v, RLIMIT_AS), under
which a thread's stack or an allocation is refused (a memory cgroup's limit instead brings
the OOM killer: the supervisor's kill -9, whose leftovers the watchdog ends).

- A thread refused for its stack said 'the process limit is reached (a pids cgroup's
  pids.max, or ulimit -u)': pthread's EAGAIN is the same for both. It now names the
  address-space limit, with what is mapped.
- A MemoryError in the owner was 'executor internal error: MemoryError: ' with a traceback
  (exit 70) and one more per later step that failed for it; it is now the host's, one line,
  like a thread or descriptor that could not be had, where a limit of the host's was in
  force (ulimit -v, -d, strict overcommit); without one, a bug's, with its traceback. Under
  `stoker executor` too (was: exit 1, an internal error's line, after the TASK_FAILED).
- A MemoryError in the reaper's thread ended that thread: no child's exit was heard again,
  and the task's runs never ended for their supervisor. It now waits again a moment later
  (the child is still there: its exit is taken with WNOWAIT); one the kernel reaped as the
  MemoryError came is handed on with the status its wait saw.
- So did one in the signal relay's read: every later SIGTERM and SIGINT was ignored (only
  kill -9 stopped `stoker run`), or in its reaction's error line. It goes on a moment later
  where it was (a buffer made once: no signal is lost, none run twice).
- So did one in the health loop outside its check (the snooze file's look, the failed
  attempt's words): a task waiting for its first passed check stayed STARTING for good. That
  attempt fails, as one whose check raised, and the loop goes on; so it does after one as
  it hands a result on.
- So did one in the supervisor's move into the task's cgroup, the move taken for done: the
  runs were born outside a cgroup the containment line named. It is a failed move now (the
  task contained without a cgroup, the reason said).
"""
from __future__ import annotations

import errno
import json
import os
import re
import resource
import subprocess
import sys

import pytest

from executor.logs import FIRST_ALLOCATIONS_BYTES, _kib, address_space, clone3_denied, no_room
from tests.support.agent_sim import make_task_info
from tests.support.executor_e2e import EXECUTOR, agent_for, document
from tests.support.limits import DATA_LIMIT_SET
from tests.support.ports import free_ports
from tests.support.stoker_proc import REPO, live, task_pids

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


def child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`script` run by this Python with `args`, ended with exit 0 (else its stderr's end)."""
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=40)
    assert done.returncode == 0, done.stderr[-3000:]
    return done

# The limit is set a MiB above what the child maps, below the thread's stack (8 MiB, or glibc's
# 2 MiB when the stack limit is unlimited); then a GiB above it, where a thread has room.
ADDRESS_SPACE_CHILD = r"""
import json, resource, sys, threading
sys.path.insert(0, sys.argv[1])
from executor.logs import address_space_full, no_room
with open("/proc/self/status") as status:
    mapped = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) * 1024
limit = mapped + 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
said = {"limit": limit, "mapped": mapped}
try:
    threading.Thread(target=lambda: None).start()
except RuntimeError as exc:
    said["thread"] = no_room(exc)
try:
    bytearray(64 * 1024 * 1024)
except MemoryError as exc:
    said["memory"] = no_room(exc)
resource.setrlimit(resource.RLIMIT_AS, (limit + 1024 ** 3, resource.RLIM_INFINITY))
said["room"] = address_space_full()
print(json.dumps(said))
"""


@pytest.mark.parametrize("soft_stack, stack_kib", [(8 * 1024 * 1024, 8192), (resource.RLIM_INFINITY, 2048)])
def test_a_thread_or_memory_refused_for_the_address_space_limit_names_that_limit(soft_stack, stack_kib) -> None:
    """The thread's stack is the soft stack limit's (not the hard one's), glibc's 2 MiB when
    that is unlimited; the limit and what is mapped in KiB; under a limit with room, no word."""
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    if hard != resource.RLIM_INFINITY:
        pytest.skip("a hard stack limit here: the soft one cannot be set apart from it, nor unlimited")
    done = subprocess.run([sys.executable, "-c", ADDRESS_SPACE_CHILD, str(REPO)],
                          capture_output=True, text=True, timeout=30,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_STACK, (soft_stack, hard)))
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout)
    limit_kib, mapped_kib = said["limit"] // 1024, said["mapped"] // 1024
    thread = re.fullmatch(r"no thread could be started: the address-space limit \(ulimit -v: (\d+) KiB\) leaves "
                          rf"no room for a thread's {stack_kib} KiB stack and {FIRST_ALLOCATIONS_BYTES // 1024} KiB for its "
                          r"first allocations \((\d+) KiB mapped already\)", said["thread"])
    assert thread and int(thread[1]) == limit_kib and mapped_kib <= int(thread[2]) <= limit_kib, said
    memory = re.fullmatch(r"no memory could be had \(MemoryError\): the address-space limit \(ulimit -v: (\d+) "
                          r"KiB\) is reached \((\d+) KiB mapped\)", said["memory"])
    assert memory and int(memory[1]) == limit_kib and mapped_kib <= int(memory[2]) <= limit_kib, said
    assert said["room"] is None, said


# A MemoryError is the host's under a limit of its own (ulimit -v, -d) or strict overcommit;
# without any, the kernel refuses only a request larger than all its memory: a bug's, whose
# traceback is kept (was: `bytearray(2**50)` in Stoker's own code, one line blaming the host,
# exit 2, no traceback).
BUG_CHILD = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
from executor.logs import no_room
try:
    bytearray(2 ** 50)
except MemoryError as exc:
    print(no_room(exc))
resource.setrlimit(resource.RLIMIT_DATA, (1 << 40, resource.RLIM_INFINITY))
try:
    bytearray(2 ** 50)
except MemoryError as exc:
    print(no_room(exc))
"""


def test_a_memory_error_with_no_limit_in_force_is_a_bug_s_and_under_one_the_host_s() -> None:
    with open("/proc/sys/vm/overcommit_memory") as setting:
        if setting.read().strip() == "2":
            pytest.skip("this host's overcommit is strict (vm.overcommit_memory=2)")
    if any(resource.getrlimit(limit)[0] != resource.RLIM_INFINITY
           for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA)):
        pytest.skip("this test runs under an address-space or data-size limit (ulimit -v, -d)")
    done = subprocess.run([sys.executable, "-c", BUG_CHILD, str(REPO)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [
        "None", "no memory could be had (MemoryError): the data-size limit (ulimit -d: "
                "1073741824 KiB) is reached"], done.stdout


@pytest.mark.parametrize("exc, said", [
    (RuntimeError("can't start new thread"),  # no address-space limit here, clone3 not denied
     "no thread could be started: the process limit is reached (a pids cgroup's pids.max, or ulimit -u)"),
    (OSError(errno.EMFILE, "Too many open files"), "no file descriptor is left: Too many open files (ulimit -n)"),
    (OSError(errno.ENFILE, "Too many open files in system"),
     "no file descriptor is left: Too many open files in system (ulimit -n)"),
    (OSError(errno.EAGAIN, "Resource temporarily unavailable"),
     "Resource temporarily unavailable: the process limit may be reached (a pids cgroup's pids.max, or ulimit -u)"),
    (RuntimeError("another error"), None), (OSError(errno.ENOENT, "No such file"), None), (ValueError("x"), None),
])
def test_no_room_says_which_limit_a_thread_or_descriptor_met_and_nothing_of_another_error(exc, said) -> None:
    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        pytest.skip("this test runs under an address-space limit (ulimit -v)")
    if said and said.startswith("no thread") and clone3_denied():
        pytest.skip("clone3 is denied here")
    assert no_room(exc) == said


def test_the_address_space_is_this_process_s_limit_and_its_vmsize_in_bytes() -> None:
    limit, mapped = address_space()
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    assert limit == (None if soft == resource.RLIM_INFINITY else soft)
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    # whole pages of 4 KiB, and near what the status says a moment later
    assert isinstance(mapped, int) and mapped % 4096 == 0 and abs(mapped - kib * 1024) < 64 * 1024 * 1024
    assert (_kib(None), _kib(1024 * 1024 + 1023)) == ("an unknown size", "1024 KiB")  # whole KiB, rounded down


def supervised_run(patch: str) -> str:
    """The reaper tests' child: `patch` (Python that replaces one call of `os` and arms it
    when `armed` is not empty, appending the run's pid to `refused` as it raises) run first,
    then a supervisor without cgroups in the sandbox argv[1] (this checkout: argv[2]) spawns
    one run of the shell command argv[3] with the patch armed, and prints whether the patch
    refused for that run and the (exit code, signal) of each exit posted."""
    return r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from config.spec import ProcessSpec
from executor.procs.supervisor import Supervisor
armed, refused = [], []
""" + patch + r"""
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


# A real Supervisor and run; the reaper's waitid answers, then its result cannot be made
# (what CPython raises when the allocation after the system call fails): once, for the run's
# exit. The run's exit must still be posted.
REAPER_CHILD = supervised_run(r"""
real_waitid = os.waitid
def waitid(*args):
    info = real_waitid(*args)
    if armed and not refused:
        refused.append(info.si_pid)
        raise MemoryError
    return info
os.waitid = waitid
""")


def test_a_memory_error_in_the_reaper_s_wait_does_not_end_the_hearing_of_exits(tmp_path) -> None:
    (tmp_path / "sb").mkdir()
    done = child(REAPER_CHILD, str(tmp_path / "sb"), str(REPO), "exit 3")
    out = json.loads(done.stdout)
    assert out["refused_for_the_run"], out
    assert out["exited"] == [[3, None]], out
    assert "reaper_short_of_memory" in done.stderr and "thread_crashed" not in done.stderr, done.stderr[-2000:]



# The same, cut one step later: the reap's `waitpid` reaps the run in the kernel, then its
# answer cannot be made (CPython builds it after the system call). Before, the run's
# watcher was already out of the registry and the zombie gone: the retry found nothing to
# wait for, and the run's exit was never posted. Its status is the one `waitid` saw.
REAP_CHILD = supervised_run(r"""
real_waitpid = os.waitpid
def waitpid(pid, options):
    got = real_waitpid(pid, options)
    if armed and not refused and got[0] == pid:
        refused.append(pid)
        raise MemoryError
    return got
os.waitpid = waitpid
""")


@pytest.mark.parametrize(("command", "exited"), [("exit 3", [3, None]),
                                                  ("kill -KILL $$", [None, 9])])
def test_a_memory_error_after_the_kernel_reaped_a_run_still_posts_its_exit(
        tmp_path, command, exited) -> None:
    (tmp_path / "sb").mkdir()
    done = child(REAP_CHILD, str(tmp_path / "sb"), str(REPO), command)
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
    done = child(RELAY_REACTION_CHILD, str(REPO))
    assert done.stdout == "heard True\n", (done.stdout, done.stderr[-2000:])

# The health loop, whose look for the snooze file cannot be made once (a MemoryError, and
# none left to word the failed attempt): before, the thread ended, and a task waiting for
# its first passed check stayed STARTING for good. The attempt fails (as one whose check
# raised), and the next one runs.
# The health loop tests' child: a check that always passes, the loop's module, a sandbox
# (argv[1]) and this checkout (argv[2]).
HEALTH_LOOP_PREAMBLE = r"""
import sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from executor.logs import start_thread
from healthcheck import loop as loopmod
from healthcheck.policy import Attempt

class Passing:
    def check(self):
        return Attempt.passed()
    def describe(self):
        return "passing"
"""
HEALTH_CHILD = HEALTH_LOOP_PREAMBLE + r"""
results, two = [], threading.Event()
def on_result(attempt, latency):
    results.append(attempt.reason or "passed")
    if len(results) == 2:
        two.set()
loop = loopmod.HealthLoop(Passing(), 0.05, Path(sys.argv[1]) / ".healthchecksnooze", on_result,
                          start_thread=start_thread)
real_snoozed, refused = loop._is_snoozed, []
def snoozed():
    if not refused:
        refused.append(True)
        raise MemoryError
    return real_snoozed()
loop._is_snoozed = snoozed
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", flush=True)
loop.stop()
"""


def test_a_memory_error_in_the_health_loop_fails_that_attempt_and_the_loop_goes_on(
        tmp_path) -> None:
    done = child(HEALTH_CHILD, str(tmp_path), str(REPO))
    assert done.stdout.strip() == ("['internal health check error: MemoryError (no memory could "
                                   "be had)', 'passed']"), (done.stdout, done.stderr[-2000:])


# The same loop while `.healthchecksnooze` is there: its look for the file cannot be made once,
# or the line saying the checks are snoozed (argv[3]). Before, that attempt failed as above,
# though the check was not run: a snoozed attempt counts as a pass (docs/aurora.md §1).
HEALTH_SNOOZED_CHILD = HEALTH_LOOP_PREAMBLE + r"""
(Path(sys.argv[1]) / ".healthchecksnooze").write_bytes(b"")
results, two, refused = [], threading.Event(), []
def on_result(attempt, latency):
    results.append(attempt.outcome.value)
    if len(results) == 2:
        two.set()
loop = loopmod.HealthLoop(Passing(), 0.05, Path(sys.argv[1]) / ".healthchecksnooze", on_result,
                          start_thread=start_thread)
def refusing(real):
    def once(*args, **kwargs):
        if not refused:
            refused.append(True)
            raise MemoryError
        return real(*args, **kwargs)
    return once
if sys.argv[3] == "look":
    loop._is_snoozed = refusing(loop._is_snoozed)
else:
    loopmod.log_event = refusing(loopmod.log_event)
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", refused, flush=True)
loop.stop()
"""


@pytest.mark.parametrize("refused", ["look", "line"])
def test_a_memory_error_in_a_snoozed_attempt_is_a_snoozed_attempt_not_a_failure(tmp_path, refused) -> None:
    done = child(HEALTH_SNOOZED_CHILD, str(tmp_path), str(REPO), refused)
    assert done.stdout.strip() == "['snoozed', 'snoozed'] [True]", (done.stdout, done.stderr[-2000:])


# Whether an attempt a MemoryError cut short is snoozed is this attempt's look, made before its
# check (docs/aurora.md §1): "stale", the file removed after a snoozed attempt and the next
# attempt's look (and a look again) finding no memory; "mid-check", the file put there while a
# check that was run failed, its failure's words finding no memory.
HEALTH_LOOK_CHILD = HEALTH_LOOP_PREAMBLE + r"""
snooze = Path(sys.argv[1]) / ".healthchecksnooze"
results, two, armed = [], threading.Event(), []
class Refusing:
    def __fspath__(self):
        if armed:
            raise MemoryError
        return str(snooze)
class SnoozedMeanwhile:
    def check(self):
        snooze.write_bytes(b"")
        raise MemoryError
    def describe(self):
        return "snoozed meanwhile"
def on_result(attempt, latency):
    results.append(attempt.outcome.value)
    armed[:] = [True] if sys.argv[3] == "stale" and len(results) == 1 else []
    if len(results) == 1 and sys.argv[3] == "stale":
        snooze.unlink()
    if len(results) == 2:
        two.set()
if sys.argv[3] == "stale":
    snooze.write_bytes(b"")
    loop = loopmod.HealthLoop(Passing(), 0.05, snooze, on_result, start_thread=start_thread)
    loop._snooze_path = Refusing()
else:
    def refused(*args, **kwargs):
        raise MemoryError
    loopmod.log_event = refused
    loop = loopmod.HealthLoop(SnoozedMeanwhile(), 0.05, snooze, on_result, start_thread=start_thread)
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", flush=True)
loop.stop()
"""


@pytest.mark.parametrize("case, outcomes", [("stale", "['snoozed', 'failed']"), ("mid-check", "['failed', 'snoozed']")])
def test_a_memory_error_is_a_snoozed_attempt_only_when_its_own_look_found_the_snooze_file(
        tmp_path, case, outcomes) -> None:
    """Was: the file looked for again after the MemoryError, and the last attempt's look kept
    when that too found no memory: a check that was run and failed passed as snoozed, and once
    snoozed, attempts whose look finds no memory passed for good after the file was removed."""
    done = child(HEALTH_LOOK_CHILD, str(tmp_path), str(REPO), case)
    assert done.stdout.strip() == outcomes, (done.stdout, done.stderr[-2000:])


# The same loop, whose result cannot be handed on (a MemoryError in the callback), nor its
# error line: before, that MemoryError ended the thread; that result is dropped, and the
# next attempt's is delivered.
HEALTH_DELIVERY_CHILD = HEALTH_LOOP_PREAMBLE + r"""
results, two, refused = [], threading.Event(), []
def on_result(attempt, latency):
    if not refused:
        refused.append("the result")
        raise MemoryError
    results.append(attempt.reason or "passed")
    if len(results) == 2:
        two.set()
real_log = loopmod.log_event
def log_event(*args, **kwargs):
    if len(refused) == 1:
        refused.append("its line")
        raise MemoryError
    return real_log(*args, **kwargs)
loopmod.log_event = log_event
loop = loopmod.HealthLoop(Passing(), 0.05, Path(sys.argv[1]) / ".healthchecksnooze", on_result,
                          start_thread=start_thread)
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", refused, flush=True)
loop.stop()
"""


def test_a_memory_error_as_the_health_loop_hands_a_result_on_and_logs_it_does_not_end_it(
        tmp_path) -> None:
    done = child(HEALTH_DELIVERY_CHILD, str(tmp_path), str(REPO))
    assert done.stdout.strip() == "['passed', 'passed'] ['the result', 'its line']", (
        done.stdout, done.stderr[-2000:])

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
    done = child(ENTER_CHILD, str(tmp_path / "sb"), str(REPO))
    out = json.loads(done.stdout)
    if not out["called"]:
        pytest.skip(f"no task cgroup could be made here: {out['containment']}")
    assert out["cgroup"] is None and out["run_inside"] == [], out
    assert out["containment"].startswith("process groups, task markers and the subreaper (no "
                                         f"cgroup: cannot move the supervisor into {out['called'][0]}: "
                                         "Cannot allocate memory (ENOMEM)"), out
    assert not os.path.exists(out["called"][0]), "the cgroup made for the task was left"


# `stoker executor` under the agent simulator, a MemoryError in its owner (as the module a
# supervisor loads at a process's first restart is read: under `ulimit -v`, any allocation).
# The owner stopped the processes and sent TASK_FAILED with the host's reason; then the
# executor took it for a bug of its own: exit 1 and `executor_internal_error error="MemoryError:
# "`. It ends as `stoker run` does: one `stoker: error: cannot go on: ...` line, exit 2 (the
# MemoryError blamed on a data-size limit set for it: DATA_LIMIT_SET).
NO_MEMORY_AT_A_RESTART = DATA_LIMIT_SET + """
import sys, types
class NoMemory(types.ModuleType):
    def __getattr__(self, name):
        raise MemoryError
sys.modules["executor.procs.runprune"] = NoMemory("executor.procs.runprune")
"""

RESTARTING_JOB = """
    keep = Process(name='keep', cmdline='exec sleep 60')
    flaky = Process(name='flaky', cmdline='exit 1', min_duration=0, max_failures=3)
    jobs = [Service(cluster='local', role='me', environment='test', name='short',
                    task=Task(processes=[keep, flaky], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                              finalization_wait=1))]
"""


@pytest.fixture
def agent(tmp_path):
    """The agent simulator: closed, and every process the task left killed, afterwards."""
    yield from agent_for(tmp_path)


def test_a_memory_error_in_the_executor_s_owner_fails_the_task_and_ends_with_one_line(
        agent, tmp_path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_MEMORY_AT_A_RESTART)
    agent.launch_executor(EXECUTOR, cwd=agent.sandbox,
                          env_overrides={"PYTHONPATH": f"{hook}{os.pathsep}{REPO}"})
    agent.wait_subscribed(timeout_secs=15)
    agent.launch(make_task_info("task-1", document(tmp_path, RESTARTING_JOB), ports=free_ports(2)))
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 30)
    status = agent.wait_exit(30)
    log = agent.executor_log()
    assert agent.states("task-1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"], log[-3000:]
    assert failed.message.startswith("the task could not go on: no memory could be had "
                                     "(MemoryError): "), failed
    pids = task_pids(agent.sandbox)
    assert pids and not live(pids), pids
    errors = [line for line in log.splitlines() if line.startswith("stoker: error:")]
    assert errors == [f"stoker: error: cannot go on: {failed.message.split(': ', 1)[1]}"], log[-3000:]
    assert "executor_internal_error" not in log and status == 2, (status, log[-3000:])
