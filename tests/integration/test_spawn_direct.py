"""The supervisor's runs as its own user, started by posix_spawn (`earlyfork.spawn_in`,
through `spawn.fork_run`), and the ones that still go through Popen: what each run gets is
what Popen gave it. Real processes; `fork_run` is watched (called through, its answers
noted), never replaced. Where unshare is denied: test_denied_calls.py."""
from __future__ import annotations

import errno
import json
import os
import queue
import resource
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from config.spec import ProcessSpec
from executor.procs import spawn
from executor.procs.identity import RunAs, current_user
from executor.procs.supervisor import Supervisor
from tests.support.limits import pids_cgroup
from tests.support.stoker_proc import REPO
from tests.support.supervision import HANG_GUARD_SECS, Harness

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def forked(monkeypatch):
    """Each run's (pid, whether Popen started it), as `spawn.fork_run` answered."""
    answers: list[tuple[int, bool]] = []
    real = spawn.fork_run

    def noted(*args, **kw):  # type: ignore[no-untyped-def]
        pid, popen = real(*args, **kw)
        answers.append((pid, popen is not None))
        return pid, popen

    monkeypatch.setattr(spawn, "fork_run", noted)
    return answers


def test_a_run_as_this_process_is_posix_spawned_in_its_sandbox_without_what_stoker_inherited(
        tmp_path, tracker, forked):
    """A descriptor Stoker inherited open for exec is closed in the run, as Popen's close_fds
    did; the run is in the sandbox, and neither this process's directory nor a thread's it
    did not start moved (the forking thread's own is, for the spawn alone)."""
    planted = os.open(os.devnull, os.O_RDONLY)  # as if inherited: open for exec before the start
    os.set_inheritable(planted, True)
    seen: list[str] = []
    gate, done = threading.Event(), threading.Event()

    def look() -> None:  # a thread that was there before: its directory stays the process's
        gate.wait(10)
        seen.append(os.getcwd())
        done.set()

    watcher = threading.Thread(target=look)
    watcher.start()
    h = Harness(tmp_path / "sandbox", tracker)
    try:
        pid = h.spawn("p", f"test -e /proc/$$/fd/{planted} && echo open || echo closed; pwd; ls /proc/$$/fd; true")
        assert h.next_exit().status.exit_code == 0
        gate.set()
        assert done.wait(10)
    finally:
        h.sup.close()
        os.close(planted)
        gate.set()
        watcher.join(10)
    closed, cwd, *fds = h.log("p").read_text().splitlines()
    assert (closed, cwd) == ("closed", str(h.sandbox))
    assert sorted(fds) == ["0", "1", "2"]
    assert forked == [(pid, False)]
    assert seen == [os.getcwd()] and os.getcwd() != str(h.sandbox)


class _Through:
    """A `Wrap` that is plain bash: its runs must still go through Popen."""

    def argv(self, cmdline: str, user: RunAs | None) -> list[str]:
        return ["/bin/bash", "-c", cmdline]

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        return dict(env)


def test_a_wrapped_run_still_goes_through_popen(tmp_path: Path, tracker, forked):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    h = Harness(sandbox, tracker)
    h.sup.close()
    h.sup = Supervisor(sandbox=sandbox, task_label="test.0", env={"PATH": os.environ["PATH"]},
                       post=h.events.put, wrap=_Through())
    try:
        pid = h.spawn("w", "pwd")
        assert h.next_exit().status.exit_code == 0
    finally:
        h.sup.close()
    assert h.log("w").read_text() == f"{sandbox}\n"
    assert forked == [(pid, True)]


@pytest.mark.parametrize(("umask", "popen"), [(0o077, True), (0o022, False)])
def test_a_run_and_a_command_as_stokers_own_user_start_with_its_umask(tmp_path: Path, tracker, forked, umask, popen):
    """A root executor running a root role (`RunAs` of this process's user, with the umask
    the agent gave it: `keep_logs_readable` relaxed the process's to keep the logs readable):
    its runs and shell health commands start with that umask, as another role's do. Before,
    both had the process's relaxed one: Popen was given no umask for a user it did not switch
    to. The run is posix_spawn's when that umask is the process's (an agent's 022, which
    `keep_logs_readable` keeps; was: Popen's for any umask), Popen's otherwise (077)."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    me = attrs.evolve(current_user(), umask=umask)
    old = os.umask(0o022)
    events: queue.SimpleQueue = queue.SimpleQueue()
    sup = Supervisor(sandbox=sandbox, task_label="test.0", env={"PATH": os.environ["PATH"]}, post=events.put,
                     run_as=me)
    try:
        sup.start()
        pid = sup.spawn(ProcessSpec("u", "umask"), 0)
        tracker.add(pid)
        assert events.get(timeout=HANG_GUARD_SECS).status.exit_code == 0
        command = sup.run_command("umask", HANG_GUARD_SECS)
    finally:
        sup.close()
        os.umask(old)
    assert (sandbox / ".logs/u/0/stdout").read_text() == f"{umask:04o}\n"
    assert command.output == f"{umask:04o}\n"
    assert forked == [(pid, popen)]


def child_says(program: str, *args: str) -> Any:
    """What `program` printed as JSON, run in a Python child with `args` and this checkout
    last on its command line; the child must exit 0."""
    done = subprocess.run([sys.executable, "-c", program, *args, str(REPO)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout)


# A supervisor in a pids cgroup that holds more than its pids.max (no fork, no thread): what
# its spawn says, and what Popen's error for the same fork names, each as a JSON line.
FULL_CHILD = r"""
import json, os, sys
from pathlib import Path
from typing import Any
sys.path.insert(0, sys.argv[3])
cg, sandbox = Path(sys.argv[1]), Path(sys.argv[2])
(cg / "cgroup.procs").write_text(str(os.getpid()))
from config.spec import ProcessSpec
from executor.procs import spawn
from executor.procs.supervisor import SpawnError, Supervisor
sup = Supervisor(sandbox=sandbox, task_label="full.0", env={}, post=lambda e: None, cgroups="off")
out = {}
try:
    sup.start()
    (cg / "pids.max").write_text("1")
    try:
        out["spawn"] = f"started {sup.spawn(ProcessSpec('p', 'true'), 0)}"
    except SpawnError as e:
        out["spawn"] = str(e)
    try:
        out["popen"] = f"started {spawn.fork_exec('true', cwd=sandbox, env={}, stdin=0, stdout=1, stderr=2).pid}"
    except OSError as e:
        out["popen"] = [e.errno, e.filename]
finally:
    (cg / "pids.max").write_text("max")
    sup.close()
    print(json.dumps(out), flush=True)
"""


def test_a_fork_that_the_pids_limit_refuses_fails_the_run_as_popens_did(tmp_path: Path) -> None:
    """posix_spawn names /bin/bash in every error, its fork's too; Popen names no file for a
    fork that failed (EAGAIN: a pids limit, RLIMIT_NPROC), so the run's reason named
    `/bin/bash` as if the file were at fault."""
    (tmp_path / "sb").mkdir()
    with pids_cgroup() as cg:
        out = child_says(FULL_CHILD, str(cg), str(tmp_path / "sb"))
    assert out["popen"] == [errno.EAGAIN, None], out  # no file named
    assert out["spawn"] == "cannot start /bin/bash for process 'p' run 0: Resource temporarily unavailable (EAGAIN)"


# A thread's first spawn while no descriptor is left, then its next with them back: each
# `spawn_in`'s answer (None: Popen's to do), as a JSON line. In a child: no reaper there.
SPENT_CHILD = r"""
import json, os, sys, threading
sys.path.insert(0, sys.argv[2])
from executor.procs.earlyfork import spawn_in
from tests.support.limits import no_descriptor_left
null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
answers = []
def spawn():
    pid = spawn_in(sys.argv[1], "true", {}, stdin=null, stdout=null, stderr=null)
    answers.append(pid if pid is None else os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
def forks():
    with no_descriptor_left():
        spawn()
    spawn()
thread = threading.Thread(target=forks)
thread.start()
thread.join()
print(json.dumps(answers), flush=True)
"""


def test_a_thread_out_of_descriptors_at_its_first_spawn_spawns_once_they_are_back(tmp_path: Path) -> None:
    """The descriptor a thread keeps of its directory could not be opened (EMFILE): that run
    is Popen's (which fails as well, or not); before, the thread was Popen's for good."""
    assert child_says(SPENT_CHILD, str(tmp_path)) == [None, 0]


# A supervisor that inherited a descriptor open for exec past its soft descriptor limit (a
# parent's `exec 3000>...; ulimit -n 256`): its run's exit code and the descriptors it had,
# or the SpawnError, as a JSON line.
HIGH_CHILD = r"""
import json, os, queue, resource, sys
from pathlib import Path
from typing import Any
sys.path.insert(0, sys.argv[2])
from config.spec import ProcessSpec
from executor.procs.supervisor import SpawnError, Supervisor
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
os.dup2(os.open(os.devnull, os.O_RDONLY), 3000)  # open for exec, as inherited
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
events = queue.SimpleQueue()
sup = Supervisor(sandbox=Path(sys.argv[1]), task_label="high.0", env={}, post=events.put, cgroups="off")
try:
    sup.start()
    sup.spawn(ProcessSpec("p", "/bin/ls /proc/$$/fd"), 0)
    out = [events.get(timeout=10).status.exit_code, (Path(sys.argv[1]) / ".logs/p/0/stdout").read_text().split()]
except SpawnError as e:
    out = str(e)
finally:
    sup.close()
print(json.dumps(out), flush=True)
"""


def test_a_descriptor_inherited_past_the_descriptor_limit_neither_fails_a_run_nor_reaches_it(tmp_path: Path) -> None:
    """posix_spawn's file actions cannot name a descriptor past the soft limit (EBADF): each
    run of a supervisor that had inherited one failed, where Popen's close_fds closed it."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 3000:
        pytest.skip("the hard descriptor limit here leaves no descriptor 3000 to inherit")
    assert child_says(HIGH_CHILD, str(tmp_path)) == [0, ["0", "1", "2", "3"]]  # 3: ls's listing


# A Python whose posix_spawn cannot start a session (built for a libc without
# POSIX_SPAWN_SETSID: it raises NotImplementedError for `setsid=True`, before any fork), as
# the platform answers; a supervisor's two runs there: their exit codes and output, the
# posix_spawn calls made and whether its watchdog runs in a session of its own, as a JSON
# line (or the SpawnError).
NO_SETSID_CHILD = r"""
import json, os, queue, sys
from pathlib import Path
from typing import Any
sys.path.insert(0, sys.argv[2])
from tests.support.nosetsid import posix_spawn_without_setsid
tried = posix_spawn_without_setsid()
from config.spec import ProcessSpec
from executor.procs.supervisor import SpawnError, Supervisor
events = queue.SimpleQueue()
sandbox = Path(sys.argv[1])
sup = Supervisor(sandbox=sandbox, task_label="nosid.0", env={}, post=events.put, cgroups="off")
try:
    sup.start()
    out = []
    for run in (0, 1):
        sup.spawn(ProcessSpec("p", "echo $$ $(ps -o sid= -p $$)"), run)
        code = events.get(timeout=10).status.exit_code
        pid, sid = (sandbox / f".logs/p/{run}/stdout").read_text().split()
        out.append([code, pid == sid])
    dog = sup.watchdog_pid
    out.append([tried, dog is not None and os.getsid(dog) == dog])
except SpawnError as e:
    out = str(e)
finally:
    sup.close()
print(json.dumps(out), flush=True)
"""


def test_where_posix_spawn_cannot_start_a_session_every_run_is_popens(tmp_path: Path) -> None:
    """Was: the run's NotImplementedError failed the task, an internal error (exit 70)."""
    said = child_says(NO_SETSID_CHILD, str(tmp_path))
    # each run in a session of its own (Popen's), posix_spawn tried once for the runs and
    # once for the watchdog, which runs too, in a session of its own (Popen's)
    assert said == [[0, True], [0, True], [[True, True], True]]
