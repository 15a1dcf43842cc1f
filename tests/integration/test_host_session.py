"""A supervisor's hold on its sandbox (executor/host/session.py): the lock that refuses a
second supervisor, the registry entry, and the control socket that turns an operator's
request into an event on the owner's queue, answered through the connection."""
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
from executor.host.control import ControlUnavailable, connect
from executor.host.controlwire import KillControl, RestartControl
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.lock import holder
from executor.host.registry import Registry
from executor.host.sandbox import open_stoker_dir
from executor.host.session import OPERATOR_KILL, HostSession
from executor.procs.saferead import UnsafeEntry
from tests.support.control_socket import ask_all
from tests.support.stoker_proc import REPO
from tests.support.users import needs_root

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
    assert answer.startswith(f"busy: sandbox {session.sandbox} is held by a live stoker run "
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
    assert answer == (f"cannot open {sandbox}/.stoker: Permission denied (EACCES): only the "
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


def test_a_kill_while_the_supervisor_starts_waits_for_it(tmp_path, monkeypatch, capsys):
    """`stoker kill SANDBOX` while `stoker run` loads after its early start (the sandbox
    locked, no pid in the lock, no socket yet): it said "no live supervisor holds SANDBOX"
    and exited 1, and the task ran on. Now it waits for the supervisor and is answered.
    The client's wait is held until the session is up, so the order is the one asked for."""
    import fcntl
    import types

    from executor.cli import control as control_cli

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = os.open(sandbox / ".stoker" / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the early start takes it
    waiting, go = threading.Event(), threading.Event()

    def held(secs: float) -> None:  # the client waits for the supervisor: until the test says
        waiting.set()
        go.wait(10)

    monkeypatch.setattr(control_cli, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=held))
    got: list[object] = []

    def client() -> None:
        try:
            got.extend(control_cli._replies(sandbox, lambda: None, KillControl(), "kill"))
        except ControlUnavailable as exc:
            got.append(exc)
        finally:
            waiting.set()

    thread = threading.Thread(target=client)
    thread.start()
    assert waiting.wait(10)
    assert got == [], got  # it did not give up on a starting supervisor
    session = HostSession.open(sandbox, front_end=FrontEnd.RUN, held_lock=fd)
    try:
        events: queue.SimpleQueue = queue.SimpleQueue()
        session.task_started(task_id="t-1", job_key="k", label="t.0", marker="m", post=events.put)
        go.set()
        event = events.get(timeout=10)
        assert isinstance(event, KillRequested)
        event.reply(ControlReply(ok=True, done=True, message="task t.0 KILLED"))
        thread.join(10)
    finally:
        go.set()
        session.close()
    assert got == [ControlReply(ok=True, done=True, message="task t.0 KILLED")]
    assert capsys.readouterr().err == f"stoker kill: the supervisor of {sandbox} is starting; waiting for it\n"


def test_a_kill_as_a_new_supervisor_takes_the_sandbox_looks_its_entry_up_again(tmp_path):
    """`stoker kill SANDBOX` as a re-run in the same sandbox starts: the client found the
    ended entry of the run before in the registry, then the lock of the new one, and said
    "the lock names pid N, not the supervisor the host registry names", exit 1, the task
    running on. Now the registry is read again; its new entry pins the same `.stoker`."""
    import attrs

    from executor.cli import control as control_cli
    from executor.host.registry import find_sandbox

    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        events: queue.SimpleQueue = queue.SimpleQueue()
        session.task_started(task_id="t-2", job_key="k", label="t.0", marker="m", post=events.put)
        now = find_sandbox(Registry(settings).entries(), str(sandbox)).entry
        before = attrs.evolve(now, supervisor_start=now.supervisor_start + 100, ended_wall=time.time(),
                              task_id="t-1")  # the run before, in the same sandbox: gone
        looks = [before]  # the first look came before the new supervisor registered
        got: list[ControlReply] = []

        def lookup():
            return looks.pop(0) if looks else find_sandbox(Registry(settings).entries(), str(sandbox)).entry

        client = threading.Thread(target=lambda: got.extend(
            control_cli._replies(sandbox, lookup, KillControl(), "kill")))
        client.start()
        event = events.get(timeout=10)
        event.reply(ControlReply(ok=True, done=True, message="task t.0 KILLED"))
        client.join(10)
    finally:
        session.close()
    assert [r.message for r in got] == ["task t.0 KILLED"]


def test_an_attempt_s_task_id_still_finds_its_supervisor_after_a_restart(tmp_path):
    """`stoker run` starts each attempt with a task id of its own: an id `stoker ps` showed a
    moment before a restart was unknown to `stoker kill`, `status` and the observer."""
    from executor.host.registry import find

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


class _Driver:
    """The agent's side of an executor under test: the updates it was sent."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, object, str]] = []

    def send_status_update(self, tid, state, message, **_):
        self.updates.append((tid, state, message))


def _executor_for_a_sleep(tmp_path: Path, on_done):
    """A `stoker executor`'s front end in a sandbox of its own (no agent: `_Driver` takes
    its updates), and a LAUNCH of a task that sleeps."""
    from config.document import encode
    from config.executorsettings import ExecutorSettings
    from config.loader import load_job
    from executor.mesos import executor as mesos_executor
    from tests.support.agent_sim import make_task_info

    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    config = tmp_path / "long.aurora"
    config.write_text(
        "jobs = [Job(cluster='c', role='r', environment='test', name='long',\n"
        "            task=Task(processes=[Process(name='p', cmdline='exec sleep 60')],\n"
        "                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    settings = ExecutorSettings.from_env({
        "MESOS_AGENT_ENDPOINT": "127.0.0.1:9", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e",
        "MESOS_SANDBOX": str(sandbox)})
    executor = mesos_executor.StokerExecutor(settings, {"PATH": "/usr/bin:/bin"}, on_done=on_done)
    return executor, sandbox, make_task_info("task-1", encode(load_job(config)))


def test_an_operators_kill_as_the_executor_launches_its_task_stops_it(tmp_path, monkeypatch):
    """Under `stoker executor`, `stoker kill` as a LAUNCH's task was prepared and its owner
    not yet listening (a window of milliseconds) was answered "no task is running under this
    supervisor", exit 1, and the task started. Now it waits for the owner, as an agent's KILL
    that comes then does: the task ends KILLED before any process starts. One once the task
    has ended is not told that it was starting."""
    from executor.events import TaskState
    from executor.mesos import executor as mesos_executor

    done = threading.Event()
    executor, sandbox, launch = _executor_for_a_sleep(tmp_path, done.set)
    session = HostSession.open(sandbox, front_end=FrontEnd.EXECUTOR, on_operator_kill=executor.operator_kill)
    (idle,) = ask_all(sandbox, KillControl())  # no LAUNCH yet: nothing to stop
    answers: list[ControlReply] = []
    late: list[ControlReply] = []
    real_owner_for = mesos_executor.owner_for

    def owner_for(*args, **kwargs):  # the task is prepared; its owner does not exist yet
        answers.extend(ask_all(sandbox, KillControl()))
        owner = real_owner_for(*args, **kwargs)
        real_run = owner.run

        def ran():  # the task has ended; the LAUNCH's thread has not
            final = real_run()
            late.extend(ask_all(sandbox, KillControl()))
            return final

        owner.run = ran
        return owner

    monkeypatch.setattr(mesos_executor, "owner_for", owner_for)
    driver = _Driver()
    try:
        executor.launchTask(driver, launch)
        assert done.wait(10), "the task did not end"
    finally:
        session.close()
    assert (idle.ok, idle.message) == (False, "no task is running under this supervisor")
    assert [(a.ok, a.message) for a in answers] == [(True, "the task was starting; it stops")]
    assert [(a.ok, a.message) for a in late] == [(False, "no task is running under this supervisor")]
    assert driver.updates[-1] == ("task-1", TaskState.KILLED, OPERATOR_KILL), driver.updates
    assert "RUNNING" not in (sandbox / ".stoker" / "checkpoint.jsonl").read_text()  # nothing started


def test_an_internal_error_under_the_executor_logs_one_traceback(tmp_path, monkeypatch, caplog):
    """A bug in the task's owner under `stoker executor`: the owner logged its traceback
    (`owner_failed`) and the task thread logged the same one again
    (`executor_internal_error`). Now the second line names the error without it."""
    import logging

    from executor.events import TaskState
    from executor.mesos import executor as mesos_executor

    done = threading.Event()
    executor, sandbox, launch = _executor_for_a_sleep(tmp_path, done.set)
    real_owner_for = mesos_executor.owner_for

    def owner_for(*args, **kwargs):
        owner = real_owner_for(*args, **kwargs)

        def step() -> bool:
            raise RuntimeError("a bug")

        owner.step = step
        return owner

    monkeypatch.setattr(mesos_executor, "owner_for", owner_for)
    driver = _Driver()
    session = HostSession.open(sandbox, front_end=FrontEnd.EXECUTOR)
    try:
        with caplog.at_level(logging.ERROR):
            executor.launchTask(driver, launch)
            assert done.wait(10), "the task did not end"
    finally:
        session.close()
    assert driver.updates[-1] == ("task-1", TaskState.FAILED, "executor internal error: RuntimeError: a bug")
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, tracebacks
    assert any("executor_internal_error" in r.getMessage() for r in caplog.records)


def test_a_supervisor_without_a_control_socket_is_not_waited_for_as_starting(tmp_path, monkeypatch, capsys):
    """A supervisor whose control socket could not be made (`control_unavailable`: no
    descriptor, a full disk) holds its sandbox for good without one: `stoker kill` took it
    for one starting, said "the supervisor of SANDBOX is starting; waiting for it" and
    waited 5 s each time before failing. A lock taken longer ago than that is not a start."""
    import types

    from executor.cli import control as control_cli
    from executor.host.lock import SandboxLock

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    fd = open_stoker_dir(sandbox)
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run",
                               time.time() - 2 * control_cli.STARTING_SECS)  # no socket made

    def waited(secs: float) -> None:
        raise AssertionError("it waited for a supervisor that is not starting")

    clock = types.SimpleNamespace(monotonic=time.monotonic, time=time.time, sleep=waited)
    monkeypatch.setattr(control_cli, "time", clock)
    try:
        with pytest.raises(ControlUnavailable, match="has no control socket"):
            list(control_cli._replies(sandbox, lambda: None, KillControl(), "kill"))
    finally:
        lock.release()
        os.close(fd)
    assert "starting" not in capsys.readouterr().err


def test_a_kill_as_a_re_run_starts_where_a_killed_supervisor_left_its_socket_waits_for_the_new_one(
        tmp_path, monkeypatch):
    """A supervisor SIGKILLed leaves its control socket behind. `stoker kill` as a re-run in
    that sandbox started (its lock taken, its own socket not made yet) took the old socket
    for the new supervisor's, and said "the supervisor of SANDBOX does not answer (it is
    gone)". A socket made before the lock was taken is not the new supervisor's: it waits."""
    import types

    from executor.cli import control as control_cli
    from executor.host.lock import SandboxLock

    class Waited(Exception):
        """The client chose to wait for the new supervisor."""

    def waited(secs: float) -> None:
        raise Waited

    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700)
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(sandbox / ".stoker" / "control.sock"))
    old.close()  # the killed supervisor's, left behind
    os.utime(sandbox / ".stoker" / "control.sock", (time.time() - 60, time.time() - 60))
    fd = open_stoker_dir(sandbox)
    lock = SandboxLock.acquire(fd, str(sandbox), own_identity(), "run", time.time())  # the re-run's
    clock = types.SimpleNamespace(monotonic=time.monotonic, time=time.time, sleep=waited)
    monkeypatch.setattr(control_cli, "time", clock)
    try:
        with pytest.raises(Waited):
            control_cli._started(fd, str(sandbox), "kill")
    finally:
        lock.release()
        os.close(fd)
