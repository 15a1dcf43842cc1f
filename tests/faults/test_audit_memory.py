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

A MemoryError on a supervisor's threads: test_audit_memory_supervisor.py (the reaper, the
signal relay, the move into the task's cgroup) and test_audit_memory_health.py (the health
loop).
"""
from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
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


# A child's `too_large()`: a request larger than all the host's memory, and the line `no_room`
# makes of its MemoryError.
TOO_LARGE = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
from executor.logs import no_room
def too_large():
    try:
        bytearray(2 ** 50)
    except MemoryError as exc:
        print(no_room(exc))
"""

# A MemoryError is the host's under a limit of its own (ulimit -v, -d) or strict overcommit;
# without any, the kernel refuses only a request larger than all its memory: a bug's, whose
# traceback is kept (was: `bytearray(2**50)` in Stoker's own code, one line blaming the host,
# exit 2, no traceback).
BUG_CHILD = TOO_LARGE + r"""
too_large()
resource.setrlimit(resource.RLIMIT_DATA, (1 << 40, resource.RLIM_INFINITY))
too_large()
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


# Strict overcommit, or no /proc/sys to read it from, as the child reads it: the setting's file
# replaced in a private mount namespace (`unshare --mount`, as root), never the host's own.
STRICT_CHILD = TOO_LARGE + "too_large()\n"


@pytest.mark.parametrize("setting", ["2\n", None])
def test_a_memory_error_under_strict_overcommit_or_with_no_setting_to_read_is_the_host_s(tmp_path, setting) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace)")
    if any(resource.getrlimit(limit)[0] != resource.RLIM_INFINITY
           for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA)):
        pytest.skip("this test runs under an address-space or data-size limit (ulimit -v, -d)")
    if setting is None:  # an empty directory over /proc/sys/vm: the setting cannot be read
        (tmp_path / "vm").mkdir()
        mount = f"mount --bind {tmp_path / 'vm'} /proc/sys/vm"
    else:
        (tmp_path / "overcommit_memory").write_text(setting)
        mount = f"mount --bind {tmp_path / 'overcommit_memory'} /proc/sys/vm/overcommit_memory"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f'{mount} && exec "$0" -c "$1" "$2"', sys.executable, STRICT_CHILD, str(REPO)],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "no memory could be had (MemoryError): the host refused an "
                                                 "allocation (no memory left under vm.overcommit_memory=2)\n"), done


@pytest.mark.parametrize("exc, said", [
    (RuntimeError("can't start new thread"),  # no address-space limit here, clone3 not denied
     "no thread could be started: the process limit is reached (a pids cgroup's pids.max, or ulimit -u)"),
    (OSError(errno.EMFILE, "Too many open files"), "no file descriptor is left: Too many open files (ulimit -n)"),
    (OSError(errno.ENFILE, "Too many open files in system"),
     "no file descriptor is left: Too many open files in system (the host's limit, fs.file-max)"),  # not ulimit -n
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
