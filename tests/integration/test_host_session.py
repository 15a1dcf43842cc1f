"""A supervisor's hold on its sandbox (executor/host/session.py): the lock that refuses a
second supervisor, the registry entry, and the control socket that turns an operator's
request into an event on the owner's queue, answered through the connection. An operator's
request while a supervisor starts or restarts is in test_host_session_starting.py, one under
`stoker executor` in test_host_session_executor.py."""
from __future__ import annotations

import contextlib
import os
import queue
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.events import ControlReply, KillRequested, RestartRequested
from executor.host.control import MAX_CONNECTIONS
from executor.host.controlclient import ControlUnavailable, connect
from executor.host.controlwire import MAX_LINE, KillControl, RestartControl
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.lock import holder
from executor.host.registry import Registry
from executor.host.sandbox import open_stoker_dir
from executor.host.session import OPERATOR_KILL, HostSession
from executor.procs.saferead import UnsafeEntry
from tests.support.control_socket import ask_all
from tests.support.pty_proc import typed_into_interactive_bash
from tests.support.stoker_proc import REPO
from tests.support.users import needs_root
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

SECOND = """
import sys
from executor.host.session import HostSession
from executor.host.lock import SandboxBusy
try:
    HostSession.open(sys.argv[1]).close()
    print("held")
except SandboxBusy as exc:
    print(f"busy: {exc}")
"""


def second_supervisor(sandbox: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", SECOND, str(sandbox)], capture_output=True,
                          text=True, timeout=20, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def session(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    s = HostSession.open(sandbox, front_end=FrontEnd.RUN)
    yield s
    s.close()


def test_a_session_makes_stoker_owner_only_locks_it_and_registers(session):
    sandbox = session.sandbox
    st = os.stat(sandbox / ".stoker")
    assert stat.S_IMODE(st.st_mode) == 0o700
    sock = os.stat(sandbox / ".stoker" / "control.sock")
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o600
    fd = open_stoker_dir(sandbox)
    try:
        assert holder(fd).pid == os.getpid()
    finally:
        os.close(fd)
    (listed,) = [i.entry for i in registry_from_env().entries() if i.entry.sandbox == str(sandbox)]
    assert listed.supervisor_pid == os.getpid() and listed.ended_wall is None


def registry_from_env() -> Registry:
    return Registry(RegistrySettings.from_env(os.environ))


def test_a_second_supervisor_is_refused_at_once_and_the_lock_dies_with_its_holder(session):
    started = time.monotonic()
    answer = second_supervisor(session.sandbox)
    assert answer.startswith(f"busy: sandbox '{session.sandbox}' is held by a live stoker run "
                             f"(pid {os.getpid()}, since 20")
    assert "one supervisor per sandbox" in answer
    assert time.monotonic() - started < 15  # at once: it never waited for the lock
    again = HostSession.open(session.sandbox)  # the same process: the same session
    assert again is session
    again.close()
    session.close()
    assert second_supervisor(session.sandbox) == "held"
    assert not (session.sandbox / ".stoker" / "control.sock").exists()
    reopened = HostSession.open(session.sandbox)
    assert reopened is not session
    reopened.close()
    session.close()  # a second close of a closed session does nothing
    assert HostSession._open == {}


def test_an_operator_s_kill_becomes_an_event_and_the_owner_answers_through_it(session):
    events: queue.SimpleQueue = queue.SimpleQueue()
    session.task_started(task_id="t-1", job_key="c/r/e/t", label="t.0", marker="m", post=events.put)
    got: list[ControlReply] = []
    client = threading.Thread(target=lambda: got.extend(ask_all(session.sandbox, KillControl(2.5))))
    client.start()
    event = events.get(timeout=10)
    assert isinstance(event, KillRequested)
    assert (event.reason, event.grace_secs, event.use_lifecycle) == (OPERATOR_KILL, 2.5, True)
    event.reply(ControlReply(ok=True, done=False, message="killing"))
    event.reply(ControlReply(ok=True, done=True, message="task t.0 KILLED", state="KILLED"))
    event.reply(ControlReply(ok=True, done=True, message="after the end: dropped"))
    client.join(10)
    assert [(r.message, r.state) for r in got] == [("killing", None), ("task t.0 KILLED", "KILLED")]
    entry = [i.entry for i in registry_from_env().entries() if i.entry.sandbox == str(session.sandbox)]
    assert entry[0].task_id == "t-1" and entry[0].marker == "m"


def test_a_restart_request_names_its_process(session):
    events: queue.SimpleQueue = queue.SimpleQueue()
    session.task_started(task_id="t-1", job_key="k", label="t.0", marker="m", post=events.put)
    got: list[ControlReply] = []
    client = threading.Thread(target=lambda: got.extend(ask_all(session.sandbox, RestartControl("web"))))
    client.start()
    event = events.get(timeout=10)
    assert isinstance(event, RestartRequested) and event.process == "web"
    event.reply(ControlReply(ok=True, done=True, message="started", process="web", run=1, pid=77))
    client.join(10)
    assert got == [ControlReply(ok=True, done=True, message="started", process="web", run=1, pid=77)]


def test_without_a_task_a_restart_is_refused_and_a_kill_goes_to_the_front_end(session):
    (refused,) = ask_all(session.sandbox, RestartControl("web"))
    assert not refused.ok and refused.message == "no task is running under this supervisor (between attempts)"
    (refused,) = ask_all(session.sandbox, KillControl())
    assert not refused.ok and refused.message == "no task is running under this supervisor"
    session.on_operator_kill(lambda reached, grace: None)  # a front end with nothing to stop
    (refused,) = ask_all(session.sandbox, KillControl())
    assert not refused.ok and refused.message == "no task is running under this supervisor"
    heard = []
    session.on_operator_kill(lambda reached, grace: heard.append((reached, grace)) or "it stops")
    (taken,) = ask_all(session.sandbox, KillControl(3.0))
    assert (taken.ok, taken.message) == (True, "it stops") and heard == [(False, 3.0)]


def test_a_request_that_comes_as_the_task_ends_is_posted_before_the_owner_empties_its_queue(session):
    """The control thread read the owner's `post` under the session's lock and called it after:
    a request that came as the task ended could be posted once the owner's close had called
    `task_ended` and emptied its queue, and nobody answered it (a `stoker restart` waited until
    the supervisor exited, under a service's `stoker run` for good). Here the owner's close
    runs at that moment (in `post`): the request is in the queue it empties."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    answered: list[object] = []

    def owner_close() -> None:  # as TaskOwner.close: task_ended, then what is queued hears the end
        session.task_ended()
        while not events.empty():
            answered.append(events.get_nowait())

    closing = threading.Thread(target=owner_close)
    started = threading.Event()

    def post(event: object) -> None:  # the owner's close starts between the lookup and the put
        closing.start()
        started.set()
        closing.join(0.2)  # it ends at once unless it waits for this post
        events.put(event)

    session.task_started(task_id="t-1", job_key="k", label="t.0", marker="m", post=post)
    got: list[ControlReply] = []
    client = threading.Thread(target=lambda: got.extend(ask_all(session.sandbox, RestartControl("web"))))
    client.start()
    assert started.wait(10)
    closing.join(10)
    assert [type(e) for e in answered] == [RestartRequested]
    answered[0].reply(ControlReply(ok=False, done=True, message="the task ended"))
    client.join(10)
    assert [r.message for r in got] == ["the task ended"]


def test_a_malformed_request_is_answered_and_a_silent_client_blocks_no_one(session):
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(str(session.sandbox / ".stoker" / "control.sock"))
    try:
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(str(session.sandbox / ".stoker" / "control.sock"))
        raw.sendall(b'{"op": "reboot"}\n')
        assert raw.makefile("rb").readline() == (
            b'{"ok": false, "done": true, "message": "unknown op \'reboot\' (kill or restart)"}\n')
        raw.close()
        (refused,) = ask_all(session.sandbox, RestartControl("web"))
        assert not refused.ok
    finally:
        silent.close()


def test_the_client_refuses_a_socket_that_is_not_the_supervisor_s(session, tmp_path):
    fd = open_stoker_dir(session.sandbox)
    try:
        with pytest.raises(ControlUnavailable, match=f"belongs to pid {os.getpid()}, not to the "
                                                     f"sandbox's supervisor \\(pid 1\\)"):
            connect(fd, "sb", expected_pid=1)
    finally:
        os.close(fd)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / ".stoker").mkdir()
    os.symlink(session.sandbox / ".stoker" / "control.sock", other / ".stoker" / "control.sock")
    fd = open_stoker_dir(other)
    try:
        with pytest.raises(ControlUnavailable, match="is not a socket"):
            connect(fd, str(other), expected_pid=os.getpid())
    finally:
        os.close(fd)


def test_a_sandbox_deeper_than_a_socket_path_can_be_still_has_its_socket(tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 8)
    deep.mkdir(parents=True)
    assert len(str(deep / ".stoker" / "control.sock")) > 108
    s = HostSession.open(deep)
    try:
        (refused,) = ask_all(deep, RestartControl("web"))
        assert refused.message.startswith("no task is running")
    finally:
        s.close()


def test_a_planted_symlink_or_fifo_in_stoker_is_refused_without_waiting(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(target, linked / ".stoker")
    with pytest.raises(UnsafeEntry, match="symlink"):
        HostSession.open(linked)
    assert not list(target.iterdir())
    fifo = tmp_path / "fifo"
    (fifo / ".stoker").mkdir(parents=True)
    os.mkfifo(fifo / ".stoker" / "supervisor.lock")
    with pytest.raises(UnsafeEntry, match="supervisor.lock: it is a FIFO, not a regular file"):
        HostSession.open(fifo)
    assert HostSession._open == {}  # nothing is held after either refusal


def test_a_starting_session_reads_no_other_entry_and_its_close_prunes_the_expired(tmp_path):
    """What a supervisor writes before its first fork is its own entry only; the expired
    entries of supervisors long gone go when a session closes."""
    root = tmp_path / "root"
    settings = RegistrySettings(registry_root=str(root), registry_retention_secs=3600.0)
    registry = Registry(settings)
    ident = own_identity()  # an entry of a supervisor that is gone: this pid, another start
    gone = RegistryEntry(sandbox=str(tmp_path / "old"), supervisor_pid=ident.pid,
                         supervisor_start=ident.start_ticks + 100, supervisor_boot=ident.boot_id,
                         front_end=FrontEnd.RUN, registered_wall=time.time() - 7200,
                         ended_wall=time.time() - 7200)
    registry.write(gone)
    then = time.time() - 7200  # its file written at its end, as a supervisor's last write is
    os.utime(root / gone.name, (then, then))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        session.task_started(task_id="t-1", job_key="k", label="t.0", marker="m", post=lambda e: None)
        assert (root / gone.name).exists()
        assert len(os.listdir(root)) == 2
    finally:
        session.close()
    assert not (root / gone.name).exists()
    assert len(os.listdir(root)) == 1


@contextlib.contextmanager
def _root_s_task() -> Iterator[Path]:
    """A sandbox under /tmp that every user may enter, held by a session of this (root's)."""
    from tests.support.users import open_sandbox

    with open_sandbox() as top:
        os.chmod(top, 0o755)
        sandbox = top / "sandbox"
        sandbox.mkdir()
        os.chmod(sandbox, 0o755)
        held = HostSession.open(sandbox, front_end=FrontEnd.RUN)
        try:
            yield sandbox
        finally:
            held.close()


@needs_root
def test_another_user_s_kill_is_told_who_may_not_that_it_is_no_task_sandbox():
    """A non-root operator's `stoker kill SANDBOX` of root's task said "SANDBOX is not a task
    sandbox: .stoker: Permission denied": it is one, and the operator went looking for
    another. Now it says who may control it."""
    from executor.cli.control import _replies
    from tests.support.users import as_nobody

    with _root_s_task() as sandbox:
        def ask() -> str:
            try:
                next(_replies(sandbox, lambda: None, KillControl(), "kill"))
                return "answered"
            except ControlUnavailable as exc:
                return str(exc)

        answer = as_nobody(ask)
    assert answer == (f"cannot open '{sandbox}/.stoker': Permission denied (EACCES): only the "
                      f"supervisor's user (or root) may control its task")


@needs_root
def test_a_non_root_status_of_root_s_task_says_who_may_read_it():
    """`stoker status SANDBOX` of root's task as another user said "cannot read the
    checkpoint ...: Permission denied" and no more, while `stoker tail` of the same task
    printed its log (logs are 0644): it says now that the state is its supervisor's user's."""
    from executor.task.inspection import inspect_sandbox
    from tests.support.users import as_nobody

    with _root_s_task() as sandbox:
        answer = as_nobody(lambda: inspect_sandbox(sandbox).problem)
    assert answer == (f"cannot read the checkpoint in {sandbox}/.stoker: Permission denied (EACCES): "
                      f"only the supervisor's user (or root) may read its task's state")


def test_an_attempt_s_task_id_still_finds_its_supervisor_after_a_restart(tmp_path):
    """`stoker run` starts each attempt with a task id of its own: an id `stoker ps` showed a
    moment before a restart was unknown to `stoker kill`, `status` and the observer."""
    from executor.host.registrylookup import find

    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        for task_id in ("t-1", "t-2"):  # two attempts
            session.task_started(task_id=task_id, job_key="k", label="t.0", marker="m", post=lambda e: None)
            session.task_ended()
        listed = Registry(settings).read()
        assert find(listed, "t-1") is not None and find(listed, "t-1") == find(listed, "t-2")
        assert find(listed, "t-1").entry.task_id == "t-2"
        assert find(listed, "t-3") is None
    finally:
        session.close()


def test_a_request_line_longer_than_the_limit_is_refused_without_waiting_for_its_end(session):
    """A client that sends more than MAX_LINE bytes and no newline is answered at once (the
    server never buffers more), and the socket serves the next client."""
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(session.sandbox / ".stoker" / "control.sock"))
        raw.settimeout(10)  # a generous bound: no answer fails the test, not the suite's timeout
        raw.sendall(b"x" * (MAX_LINE + 1))
        assert raw.makefile("rb").readline() == (
            b'{"ok": false, "done": true, "message": "a request is at most %d bytes"}\n' % MAX_LINE)
    (refused,) = ask_all(session.sandbox, RestartControl("web"))
    assert not refused.ok and "at most" not in refused.message


def test_past_the_connection_limit_a_client_is_refused_and_one_closed_makes_room(session):
    """MAX_CONNECTIONS silent clients hold every place: the next is told so at once, and
    once one of them goes a request is served again."""
    path = str(session.sandbox / ".stoker" / "control.sock")
    silent: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            silent.append(socket.socket(socket.AF_UNIX))
            silent[-1].connect(path)
        with socket.socket(socket.AF_UNIX) as extra:
            extra.connect(path)  # (blocking: a full backlog waits for the server's accepts)
            extra.settimeout(10)
            assert extra.makefile("rb").readline() == (
                b'{"ok": false, "done": true, "message": "too many control connections (at most %d)"}\n'
                % MAX_CONNECTIONS)
        silent.pop().close()
        served = wait_for(lambda: [a for a in ask_all(session.sandbox, RestartControl("web"))
                                   if "too many" not in a.message], 5, message="a place freed")
        assert served[-1].done and not served[-1].ok  # no task to restart: the usual answer
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.parametrize("name", ["it's $HOME `id` a\\b", "line\nbreak \udcff\x1b", "a!b \x01!!"],
                         ids=["shell-specials", "controls", "bang-and-control"])
def test_the_kill_command_a_busy_sandbox_suggests_names_that_sandbox_in_a_shell(tmp_path, name):
    """`(stoker kill WORD)`: WORD, pasted into bash, is the sandbox's own path. Was: its
    repr, `"…/it's $HOME `id` a\\\\b"`, in which bash expands `$HOME` and runs `id`, and a
    backslash, a newline or a byte that is not UTF-8 came out as two to four characters."""
    sandbox = tmp_path / name
    sandbox.mkdir()
    s = HostSession.open(sandbox, front_end=FrontEnd.RUN)
    try:
        answer = second_supervisor(sandbox)
    finally:
        s.close()
    assert "\n" not in answer and "\x1b" not in answer  # one line, whatever the name
    word = answer.split("(`stoker kill ", 1)[1].split("`)", 1)[0]
    for shell in ("dash", "bash"):  # any POSIX shell: dash has no `$'...'`, which was the form
        shown = subprocess.run([shell, "-c", f"printf %s {word}"], capture_output=True, timeout=20, check=True)
        assert shown.stdout == os.fsencode(str(sandbox)), shell
    # typed at an interactive bash, whose history expansion reads `!` in double quotes
    assert typed_into_interactive_bash(word, tmp_path) == os.fsencode(str(sandbox))
