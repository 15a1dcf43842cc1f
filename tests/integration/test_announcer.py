"""The ServerSet announcer against a real ZooKeeper server (tests/support/zookeeper.py).

One server is shared by the module's tests that leave it running (each under its own root
path); the tests that stop or never start ZooKeeper get their own server on their own port.
A plain kazoo client plays the ServerSet reader (Finagle, Aurora's tools).
"""
from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionClosedError, NoAuthError

from config.announcer import AnnouncerSpec
from config.spec import HealthSpec, JobSpec, TaskSpec
from config.zookeeper import AnnouncerSettings, parse_zk_auth
from executor.procs.exitby import ExitBy
from executor.task.announcer import AnnouncementChanged, ServerSetAnnouncer
from executor.task.membership import Connection, MemberState
from executor.task.serverset import TIMED_OUT_REASON, Announcement, plan_announcement
from tests.support.ports import free_ports
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

MEMBER = re.compile(r"^member_\d{10}$")
AUTH_FILE = {
    "auth": [{"scheme": "digest", "credential": "stoker:s3cret"}],
    "acl": [{"scheme": "digest", "credential": "stoker:s3cret",
             "permissions": {"read": True, "write": True, "create": True, "delete": True, "admin": True}},
            {"scheme": "world", "credential": "anyone", "permissions": {"read": True}}],
}




@contextlib.contextmanager
def zk_client(ensemble: str) -> Iterator[KazooClient]:
    """A started client of ENSEMBLE (the test's reader of what the announcer wrote), closed after."""
    client = KazooClient(hosts=ensemble, timeout=4.0)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def reader(zk):
    with zk_client(zk.ensemble) as client:
        yield client


class Recorder:
    """The owner's side of `post`: keeps every AnnouncementChanged."""

    def __init__(self) -> None:
        self.events: list[AnnouncementChanged] = []
        self._lock = threading.Lock()

    def __call__(self, event: AnnouncementChanged) -> None:
        with self._lock:
            self.events.append(event)

    def states(self) -> list[str]:
        with self._lock:
            return [f"{c.subject}:{c.new}" for e in self.events for c in e.changes]


@pytest.fixture
def announcers():
    """Makes announcers and closes every one of them, whatever happens in the test."""
    made: list[ServerSetAnnouncer] = []

    def make(announcement: Announcement, **kw) -> tuple[ServerSetAnnouncer, Recorder]:
        recorder = Recorder()
        kw.setdefault("session_timeout_secs", 2.0)
        kw.setdefault("reconnect_max_secs", 0.5)
        kw.setdefault("retry_initial_secs", 0.1)
        announcer = ServerSetAnnouncer(announcement, task="hello.3", post=recorder, **kw)
        made.append(announcer)
        return announcer, recorder

    yield make
    for announcer in made:
        announcer.close(timeout_secs=5)


def job(*, ports=None, health=None) -> JobSpec:
    return JobSpec(role="www-data", environment="prod", cluster="devcluster", name="hello",
                   instance=3, task_id="task-1", task=TaskSpec(name="hello", processes=()),
                   health=health or HealthSpec(), ports=ports if ports is not None else
                   {"http": 31001, "health": 31000})


def announcement(ensemble: str, root: str, *, announce: AnnouncerSpec | None = None, auth=None,
                 allow_custom: bool = False, health: HealthSpec | None = None) -> Announcement:
    settings = AnnouncerSettings(ensemble=ensemble, serverset_path=root, hostname="host-7.example",
                                 allow_custom_serverset_path=allow_custom, auth=auth)
    plan = plan_announcement(job(health=health), announce or AnnouncerSpec(), settings, "agent-host")
    assert plan is not None
    return plan


def unique_root() -> str:
    return f"/t-{uuid.uuid4().hex[:12]}"


def joined_then_stopped(private_zk, announcers) -> tuple[ServerSetAnnouncer, str]:
    """An announcer joined on the test's own server, which is then stopped: (it, the job's path)."""
    private_zk.start()
    root = unique_root()
    announcer, _ = announcers(announcement(private_zk.ensemble, root))
    announcer.join()
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    private_zk.stop()
    return announcer, f"{root}/www-data/prod/hello"


def members(client: KazooClient, path: str) -> list[str]:
    return sorted(client.get_children(path)) if client.exists(path) else []


def joined(zk, reader: KazooClient, announcers) -> tuple[ServerSetAnnouncer, Recorder, str, list[str]]:
    """Under a fresh root, joined (listed, its create's answer read): announcer, recorder, path, members."""
    root = unique_root()
    path = f"{root}/www-data/prod/hello"
    announcer, recorder = announcers(announcement(zk.ensemble, root))
    announcer.join()
    listed = wait_for(lambda: members(reader, path), timeout_secs=10)
    wait_for(lambda: announcer.view().member == listed[0], timeout_secs=10)  # its create's answer read
    return announcer, recorder, path, listed


def test_the_member_appears_at_the_jobs_path_with_aurora_json(zk, reader, announcers):
    root = unique_root()
    announcer, recorder = announcers(announcement(zk.ensemble, root))
    announcer.join()
    path = f"{root}/www-data/prod/hello"
    names = wait_for(lambda: members(reader, path), timeout_secs=10)
    assert len(names) == 1 and MEMBER.match(names[0]), names
    data, stat = reader.get(f"{path}/{names[0]}")
    assert json.loads(data) == {
        "serviceEndpoint": {"host": "host-7.example", "port": 31001},
        "additionalEndpoints": {"aurora": {"host": "host-7.example", "port": 31001},
                                "health": {"host": "host-7.example", "port": 31000},
                                "http": {"host": "host-7.example", "port": 31001}},
        "status": "ALIVE",
        "shard": 3,
    }
    assert stat.ephemeralOwner != 0  # ephemeral: it goes with the announcer's session
    view = wait_for(lambda: announcer.view() if announcer.view().state is MemberState.JOINED else None)
    assert (view.path, view.member, view.connection, view.first_joined) == (
        path, names[0], Connection.CONNECTED, True)
    assert recorder.states()[:3] == ["member:JOINING", "connection:CONNECTED", "member:JOINED"]
    assert not announcer.overdue(time.monotonic() + 3600)


def test_join_is_the_first_change_even_when_the_session_is_up_before_join_returns(zk, announcers):
    """kazoo may connect (and its listener queue CONNECTED) before `join` has queued the
    join: the join is still the first change. Forced here by holding `join` until the
    connection is reported, as a loaded machine may; once a test's flake."""
    announcer, recorder = announcers(announcement(zk.ensemble, unique_root()))
    start = announcer._start

    def start_and_connect() -> None:
        start()
        wait_for(lambda: announcer.view().connection is Connection.CONNECTED, timeout_secs=10)

    announcer._start = start_and_connect
    announcer.join()
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    assert recorder.states()[:3] == ["member:JOINING", "connection:CONNECTED", "member:JOINED"]


def test_join_twice_is_one_member(zk, reader, announcers):
    root = unique_root()
    announcer, _ = announcers(announcement(zk.ensemble, root))
    announcer.join()
    announcer.join()
    path = f"{root}/www-data/prod/hello"
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    announcer.join()
    assert len(members(reader, path)) == 1


def test_a_custom_path_is_used_when_allowed(zk, reader, announcers):
    custom = f"{unique_root()}/uns/v1/service"
    announcer, _ = announcers(announcement(zk.ensemble, "/aurora", allow_custom=True,
                                           announce=AnnouncerSpec(zk_path=custom)))
    announcer.join()
    assert MEMBER.match(wait_for(lambda: members(reader, custom), timeout_secs=10)[0])
    assert announcer.view().path == custom


def test_leave_removes_the_member_and_join_brings_a_new_one(zk, reader, announcers):
    announcer, recorder, path, first = joined(zk, reader, announcers)
    assert announcer.leave(timeout_secs=5) is True  # done, within its bound
    assert members(reader, path) == []
    assert announcer.view().state is MemberState.LEFT and announcer.view().member is None
    assert announcer.leave(timeout_secs=1) is True  # idempotent
    assert recorder.states().count("member:LEFT") == 1
    announcer.join()
    second = wait_for(lambda: members(reader, path), timeout_secs=10)
    assert len(second) == 1 and second != first


def test_close_ends_the_session_and_the_member(zk, reader, announcers):
    announcer, _, path, _ = joined(zk, reader, announcers)
    announcer.close(timeout_secs=5)
    assert members(reader, path) == []
    assert announcer.view().state is MemberState.CLOSED


def test_a_member_deleted_by_someone_else_is_created_again(zk, reader, announcers):
    announcer, _, path, [first] = joined(zk, reader, announcers)
    reader.delete(f"{path}/{first}")
    again = wait_for(lambda: [m for m in members(reader, path) if m != first], timeout_secs=10)
    assert len(again) == 1
    wait_for(lambda: announcer.view().member == again[0], timeout_secs=5)


def test_a_session_expiry_while_joined_ends_with_a_new_member(zk, reader, announcers):
    announcer, recorder, path, [first] = joined(zk, reader, announcers)
    # Expire the announcer's session the classic way: a second client attaches to it with
    # its id and password, then closes it. (Reaching into the adapter is the test's privilege.)
    session_id, password = announcer._zk.client_id
    thief = KazooClient(hosts=zk.ensemble, client_id=(session_id, password), timeout=2.0)
    thief.start(timeout=10)
    thief.stop()
    thief.close()
    again = wait_for(lambda: [m for m in members(reader, path) if m != first], timeout_secs=15)
    assert len(again) == 1 and first not in members(reader, path)
    wait_for(lambda: announcer.view().member == again[0], timeout_secs=5)
    assert "connection:LOST" in recorder.states()


def test_a_zookeeper_restart_while_joined_ends_with_the_member_present(private_zk, announcers):
    announcer, path = joined_then_stopped(private_zk, announcers)
    wait_for(lambda: announcer.view().connection is not Connection.CONNECTED, timeout_secs=10)
    private_zk.start()  # same port, same data directory
    with zk_client(private_zk.ensemble) as client:
        names = wait_for(lambda: announcer.view().state is MemberState.JOINED
                         and members(client, path), timeout_secs=20)
        assert len(names) == 1 and announcer.view().member == names[0]


def test_digest_auth_applies_the_acl_and_a_wrong_password_is_refused(zk, reader, announcers, tmp_path):
    auth_path = tmp_path / "announcer-auth.json"
    auth_path.write_text(json.dumps(AUTH_FILE))
    auth = parse_zk_auth(auth_path.read_text(), str(auth_path))
    root = unique_root()
    path = f"{root}/www-data/prod/hello"
    announcer, _ = announcers(announcement(zk.ensemble, root, auth=auth))
    announcer.join()
    [name] = wait_for(lambda: members(reader, path), timeout_secs=10)
    acls, _ = reader.get_acls(f"{path}/{name}")
    assert sorted((a.id.scheme, a.perms) for a in acls) == [("digest", 31), ("world", 1)]
    json.loads(reader.get(f"{path}/{name}")[0])  # anyone may read it
    with pytest.raises(NoAuthError):  # but not delete it
        reader.delete(f"{path}/{name}")

    wrong = json.loads(json.dumps(AUTH_FILE))
    wrong["auth"][0]["credential"] = "stoker:n0t-it"
    wrong_path = tmp_path / "other-auth.json"
    wrong_path.write_text(json.dumps(wrong))
    intruder, recorder = announcers(announcement(
        zk.ensemble, root, auth=parse_zk_auth(wrong_path.read_text(), str(wrong_path))))
    intruder.join()
    view = wait_for(lambda: intruder.view() if "NoAuth" in intruder.view().reason else None, timeout_secs=10)
    assert view.state is MemberState.JOINING and view.member is None
    assert str(wrong_path) in view.reason and "n0t-it" not in view.reason  # names the file, not the secret
    assert members(reader, path) == [name]


def test_zookeeper_down_at_join_reports_the_timeout_and_keeps_retrying(private_zk, announcers):
    root = unique_root()
    path = f"{root}/www-data/prod/hello"
    health = HealthSpec(initial_interval_secs=0.5, interval_secs=0.25, max_consecutive_failures=2)
    announcer, _ = announcers(announcement(private_zk.ensemble, root, health=health))
    assert announcer.overdue(time.monotonic()) is False  # not asked to join yet
    joined_at = time.monotonic()
    announcer.join()
    assert announcer.first_join_deadline_at == pytest.approx(joined_at + 1.0, abs=0.2)
    assert announcer.overdue(time.monotonic()) is False
    wait_for(lambda: announcer.overdue(time.monotonic()), timeout_secs=5)
    assert time.monotonic() - joined_at >= 1.0
    view = announcer.view()
    assert (view.state, view.connection, view.first_joined) == (MemberState.JOINING, Connection.LOST, False)
    assert TIMED_OUT_REASON == "Creating Announcer Serverset timed out."

    private_zk.start()  # the announcer was retrying all along
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=15)
    assert announcer.overdue(time.monotonic()) is False
    with zk_client(private_zk.ensemble) as client:
        assert members(client, path) == [announcer.view().member]


def test_leave_while_zookeeper_is_down_returns_within_its_bound(private_zk, announcers):
    announcer, path = joined_then_stopped(private_zk, announcers)
    started = time.monotonic()
    assert announcer.leave(timeout_secs=0.5) is False
    # Given up at its bound, not at ZooKeeper's return (a guard: a loaded machine adds time).
    assert time.monotonic() - started < 0.5 + 5.0
    assert announcer.view().state is MemberState.LEAVING
    private_zk.start()
    wait_for(lambda: announcer.view().state is MemberState.LEFT, timeout_secs=20)
    with zk_client(private_zk.ensemble) as client:
        assert members(client, path) == []


def test_close_while_zookeeper_is_unreachable_is_quick_and_leaves_no_thread():
    announcer = ServerSetAnnouncer(announcement(f"127.0.0.1:{free_ports(1)[0]}", "/aurora"), task="hello.3",
                                   post=Recorder(), session_timeout_secs=2.0, reconnect_max_secs=0.2)
    announcer.join()
    wait_for(lambda: any(t.name == "announcer-hello.3" for t in threading.enumerate()))
    started = time.monotonic()
    announcer.close(timeout_secs=30)
    assert time.monotonic() - started < 10.0  # quick: not its bound (a guard against waiting it out)
    assert announcer.view().state is MemberState.CLOSED
    wait_for(lambda: not any(t.name == "announcer-hello.3" for t in threading.enumerate()))
    announcer.join()  # after close: nothing happens
    assert announcer.view().state is MemberState.CLOSED and announcer.leave() is True


def test_close_against_a_server_that_never_answers_does_not_wait_for_the_sessions_end(announcers):
    """A socket that accepts and never answers (a hung ZooKeeper): no member can exist, so
    the close is done at once, CLOSED recorded; kazoo's stop, which waits for its connection
    attempt to time out, goes on on the worker's thread. Was: the close waited its bound."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        announcer, recorder = announcers(announcement(f"127.0.0.1:{silent.getsockname()[1]}", "/aurora"),
                                         session_timeout_secs=20.0)  # kazoo's connect timeout: 20 s
        announcer.join()
        wait_for(lambda: any(t.name == "announcer-hello.3" for t in threading.enumerate()))
        time.sleep(0.5)  # kazoo is connecting by now
        started = time.monotonic()
        announcer.close(timeout_secs=30)
        assert time.monotonic() - started < 5.0  # not kazoo's connect timeout nor the bound (a guard)
        assert announcer.view().state is MemberState.CLOSED and recorder.states()[-1] == "member:CLOSED"


def test_a_zookeeper_stalled_past_the_session_timeout_ends_with_one_member_the_announcers(private_zk, announcers):
    """The server stopped (SIGSTOP) longer than the session's 2 s: the announcer sees the
    connection drop and keeps the member meanwhile (the session may resume). Once the server
    runs again it expires the session and its member, and the announcer joins anew, or
    (its reconnection served before the expiry) the session goes on: either way one member
    in the end, the announcer's."""
    private_zk.start()
    root = unique_root()
    path = f"{root}/www-data/prod/hello"
    announcer, _ = announcers(announcement(private_zk.ensemble, root))
    announcer.join()
    first = wait_for(lambda: announcer.view().member, timeout_secs=10)
    assert not announcer._refused(ConnectionClosedError("Connection has been closed"))  # a session kept
    with private_zk.stalled():
        wait_for(lambda: announcer.view().connection is Connection.SUSPENDED, timeout_secs=10)
        time.sleep(4.0)  # twice the session's timeout
        assert (announcer.view().state, announcer.view().member) == (MemberState.JOINED, first)
    with zk_client(private_zk.ensemble) as client:
        wait_for(lambda: (v := announcer.view()).state is MemberState.JOINED and v.connection is Connection.CONNECTED
                 and members(client, path) == [v.member], timeout_secs=20)


def refused_view(announcer):
    """The view once ZooKeeper's refusal is read: its reason (from the operation that met it)
    and kazoo's LOST (from its listener's thread) come in either order; under load the reason
    was read with the connection still CONNECTED (a test failed so)."""
    return wait_for(lambda: v if "AuthFailed" in (v := announcer.view()).reason and v.connection is Connection.LOST
                    else None, timeout_secs=10)


def test_credentials_zookeeper_refuses_say_so_and_that_nothing_is_retried(zk, announcers, tmp_path):
    """An auth entry whose scheme the server has no provider for: ZooKeeper refuses the
    session (AuthFailed), and kazoo stops for good. Was: "reconnecting" and "retrying",
    forever, in the log and `stoker status`."""
    auth_path = tmp_path / "announcer-auth.json"
    auth_path.write_text(json.dumps({"auth": [{"scheme": "nosuch", "credential": "stoker:s3cret"}]}))
    auth = parse_zk_auth(auth_path.read_text(), str(auth_path))
    announcer, recorder = announcers(announcement(zk.ensemble, unique_root(), auth=auth))
    announcer.join()
    view = refused_view(announcer)
    assert (view.state, view.connection, view.member) == (MemberState.JOINING, Connection.LOST, None)
    assert "does not reconnect" in view.reason and "retrying" not in view.reason
    assert str(auth_path) in view.reason and "s3cret" not in view.reason  # the file, never the secret
    last_connection = wait_for(lambda: next((c for c in reversed([c for e in recorder.events for c in e.changes
                                                                  if c.subject == "connection"]) if c.new == "LOST"), None))
    # (the recorder hears kazoo's LOST after the view has it: its last change was read CONNECTED once)
    assert last_connection.new == "LOST" and "reconnecting" not in last_connection.reason
    # the create that met the refusal (made as the session came up) said no "retrying" either:
    # it may meet it as AuthFailedError or, as kazoo closes the connection after setting
    # AUTH_FAILED, as ConnectionClosedError (once in CI: "connection to ZooKeeper lost ...;
    # retrying"): both are the refusal
    assert not [c.reason for e in recorder.events for c in e.changes if "retrying" in c.reason]
    assert announcer._refused(ConnectionClosedError("Connection has been closed"))
    assert announcer.leave(timeout_secs=5) is True and announcer.view().state is MemberState.LEFT


def test_a_leave_begun_before_the_exit_time_takes_a_quarter_of_what_is_left_once_it_is_set(
        private_zk, announcers):
    """A KILL's leave waiting on a stalled ZooKeeper, then SHUTDOWN sets the exit time: the
    leave ends a quarter of what is left later, as one begun after it does. Was: it ran on to
    the exit time, holding the owner past the SIGKILL at the end of the processes' grace."""
    private_zk.start()
    exit_by = ExitBy()
    announcer, _ = announcers(announcement(private_zk.ensemble, unique_root()), exit_by=exit_by)
    announcer.join()
    wait_for(lambda: announcer.view().state is MemberState.JOINED, timeout_secs=10)
    with private_zk.stalled():
        setter = threading.Timer(0.3, lambda: exit_by.set(time.monotonic() + 6.0))
        setter.start()
        try:
            began = time.monotonic()
            assert announcer.leave(timeout_secs=30) is False
            assert time.monotonic() - began < 4.5  # about 0.3 + 1.5 s (was: 6.3 s, the exit time)
        finally:
            setter.cancel()
            setter.join()


def test_credentials_refused_as_the_session_is_resumed_say_its_member_stays_until_it_expires(
        zk, reader, announcers):
    """A joined announcer's connection drops; kazoo resumes the session and sends its
    credentials again, which ZooKeeper refuses (a scheme it has no provider for, added here as
    an operator's changed server would refuse the old one): ZooKeeper closes the connection,
    not the session, so the member stays listed until the session times out (4 s here, the
    server's most: a slow reconnect is not an expiry; 10 s in `stoker run`). Was: the view
    said "no ZooKeeper session" alone meanwhile."""
    root = unique_root()
    path = f"{root}/www-data/prod/hello"
    announcer, _ = announcers(announcement(zk.ensemble, root), session_timeout_secs=4.0)
    announcer.join()
    before = wait_for(lambda: members(reader, path), timeout_secs=10)
    wait_for(lambda: announcer.view().member == before[0], timeout_secs=10)  # its create's answer read
    client = announcer._zk
    client.auth_data.add(("nosuch", "stoker:s3cret"))  # sent again as the session is resumed
    client._connection._socket.shutdown(socket.SHUT_RDWR)  # the connection drops, the session does not
    view = refused_view(announcer)
    assert members(reader, path) == before  # still listed as the view is read
    assert (view.connection, view.member) == (Connection.LOST, None)
    assert f"its member {before[0]} stays in ZooKeeper until the session's timeout (4 s) ends it" in view.reason
    wait_for(lambda: not members(reader, path), timeout_secs=10)  # then it goes
