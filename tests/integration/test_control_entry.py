"""`stoker kill` and `restart` against what the host registry says (`control._replies`, in
this process): the entry looked up, and looked up again when the lock names another
supervisor; the `.stoker` it pins; the words of each refusal, and the task's state said by
the entry's truth. This process takes the supervisor's part: it holds the sandbox's lock
(taken a minute ago: no control socket is waited for), or a lock file names another boot's."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import attrs
import pytest

from executor.cli.control import _replies
from executor.host.controlclient import ControlUnavailable
from executor.host.controlwire import KillControl
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.lock import SandboxLock
from executor.host.sandbox import open_stoker_dir

pytestmark = pytest.mark.timeout(30)

OTHER_BOOT = "00000000-0000-4000-8000-000000000000"


def _sandbox(tmp_path: Path) -> Path:
    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    return sandbox


def _entry(sandbox: Path, pid: int, start: int, boot: str = "", pin: str = "") -> RegistryEntry:
    return RegistryEntry(sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start,
                         supervisor_boot=boot or own_identity().boot_id, front_end=FrontEnd.RUN,
                         registered_wall=time.time() - 60, task_id="web-0-1", stoker_dir=pin)


def _refusal(sandbox: Path, lookup) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ControlUnavailable) as refused:
        list(_replies(sandbox, lookup, KillControl(None), "kill"))
    return str(refused.value)


@pytest.fixture
def held(tmp_path):  # type: ignore[no-untyped-def]
    """A sandbox whose lock this process took a minute ago, with no control socket."""
    sandbox = _sandbox(tmp_path)
    fd = open_stoker_dir(sandbox)
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", time.time() - 60,
                               time.clock_gettime(time.CLOCK_BOOTTIME) - 60)
    try:
        yield sandbox
    finally:
        lock.release()
        os.close(fd)


def test_a_lock_that_names_another_supervisor_than_the_registry_is_refused_after_a_second_look(held):
    """The entry names pid 1, the lock this process: looked up once more (a new supervisor
    may have registered meanwhile), then refused in words that name both."""
    me, looks = own_identity(), []

    def lookup() -> RegistryEntry:
        looks.append(1)
        return _entry(held, 1, 0)
    assert _refusal(held, lookup) == (f"the lock in '{held}/.stoker' names pid {me.pid}, not the supervisor the host "
                                      "registry names (pid 1)")
    assert len(looks) == 2
    again = iter([_entry(held, 1, 0), _entry(held, me.pid, me.start_ticks)])  # registered since the first look
    assert _refusal(held, again.__next__) == f"{held} has no control socket (is its supervisor running?)"


def test_a_stoker_directory_that_is_not_the_one_the_entry_pins_is_refused(held):
    me = own_identity()
    assert _refusal(held, lambda: _entry(held, me.pid, me.start_ticks, pin="1:2")) == (
        f"'{held}/.stoker' is not the directory its supervisor (pid {me.pid}) made ({held}/.stoker is not the "
        "directory its supervisor made (the task may have put another in its place); nothing in it is trusted): "
        "it was renamed or removed since the task started; rename that back to .stoker to control the task")


def test_no_lock_holder_is_an_unknown_task_and_a_dead_one_s_task_is_the_entry_s(tmp_path):
    """No lock file: nobody's task, `unknown`. A lock file naming a supervisor of another
    boot, which the registry says let go (before any checkpoint): the entry's task, NEW (the
    sandbox alone says LOST)."""
    sandbox = _sandbox(tmp_path)
    assert _refusal(sandbox, lambda: None) == f"no live supervisor holds '{sandbox}' (its task is unknown)"
    me = own_identity()
    (sandbox / ".stoker" / "supervisor.lock").write_text(json.dumps(
        {"pid": me.pid, "start": me.start_ticks, "boot": OTHER_BOOT, "front_end": "run", "since": time.time() - 60}))
    let_go = attrs.evolve(_entry(sandbox, me.pid, me.start_ticks, boot=OTHER_BOOT), ended_wall=time.time() - 5)
    assert _refusal(sandbox, lambda: let_go) == f"no live supervisor holds '{sandbox}' (its task is NEW)"
    assert _refusal(sandbox, lambda: None) == f"no live supervisor holds '{sandbox}' (its task is LOST)"


def test_a_lock_file_that_names_a_live_process_that_does_not_hold_the_lock_is_refused(tmp_path):
    """No entry, nobody holding the lock, and the file names a live process of this boot (a
    task may write it, naming a stranger): refused, in words that say so."""
    sandbox = _sandbox(tmp_path)
    me = own_identity()
    (sandbox / ".stoker" / "supervisor.lock").write_text(json.dumps(
        {"pid": me.pid, "start": me.start_ticks, "boot": me.boot_id, "front_end": "run", "since": time.time() - 60}))
    assert _refusal(sandbox, lambda: None) == (f"no live supervisor holds '{sandbox}': the process its lock file "
                                               "names does not hold the lock")


SERVER = """
import socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(8)
print("listening", flush=True)
sys.stdin.read()
"""


def test_a_control_socket_another_process_serves_is_not_the_supervisor_s(held):
    """The lock is this process's, the socket another's (a task's, planted): refused by its
    peer's pid, before a word is sent to it."""
    import subprocess
    import sys

    me = own_identity()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(held / ".stoker" / "control.sock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "listening\n"
        assert _refusal(held, lambda: None) == (f"the control socket in {held} belongs to pid {server.pid}, not to "
                                                f"the sandbox's supervisor (pid {me.pid})")
    finally:
        server.kill()
        server.wait()
