"""The supervisor's runs as its own user, started by posix_spawn (`earlyfork.spawn_in`,
through `spawn.fork_run`), and the ones that still go through Popen: what each run gets is
what Popen gave it. Real processes; `fork_run` is watched (called through, its answers
noted), never replaced. Where unshare is denied: test_denied_calls.py."""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest

from config.spec import ProcessSpec
from executor.procs import spawn
from executor.procs.identity import RunAs, current_user
from executor.procs.supervisor import Supervisor
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


def test_a_run_and_a_command_as_stokers_own_user_start_with_its_umask(tmp_path: Path, tracker, forked):
    """A root executor running a root role (`RunAs` of this process's user, with the umask
    the agent gave it: `keep_logs_readable` relaxed the process's to keep the logs readable):
    its runs and shell health commands start with that umask, as another role's do. Before,
    both had the process's relaxed one: Popen was given no umask for a user it did not switch
    to, and posix_spawn has none to give (such a run is Popen's)."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    me = attrs.evolve(current_user(), umask=0o077)
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
    assert (sandbox / ".logs/u/0/stdout").read_text() == "0077\n"
    assert command.output == "0077\n"
    assert forked == [(pid, True)]
