"""One task's ServerSet membership in ZooKeeper: the adapter over kazoo.

Owns `ServerSetAnnouncer`. Import this module only for a task that announces
(`executor.task.serverset.plan_announcement` returned an `Announcement`): it imports kazoo,
which no other task should pay for.

The owner calls `join()` (the task became RUNNING), `leave()` (the first step of a kill or
failure, before any signal), `close()` (the task is over), `view()` (what `stoker status`
shows) and `overdue(now)` (the first announcement missed its bound: fail the task with
`serverset.TIMED_OUT_REASON`). `join` returns at once; `leave` and `close` wait a bounded
time, which ends at the process's exit time too (`exit_by`: `stoker executor`'s after
SHUTDOWN, set before or during the wait; ZooKeeper stalled must not keep the executor past
the agent's shutdown grace, when the agent destroys it). Every state change is one
`announcer_*` log line and one `AnnouncementChanged` handed to `post` (the owner's queue).

Threads: one worker thread per announcer makes every ZooKeeper call and feeds the pure
`Membership` machine (executor/task/membership.py), which decides what to do next. The
owner's calls and kazoo's threads (connection listener, node watch) only put messages on the
worker's queue; nothing here touches task state. The worker waits on that queue, with a
timeout only while a failed create or delete waits for its back-off. kazoo reconnects by
itself, forever, with back-off up to `reconnect_max_secs`; a new session after an expiry
gets a new member. Not after ZooKeeper refused the credentials (AuthFailed): kazoo stops
for good, and the view says so (`Membership.credentials_refused`).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    ConnectionLoss,
    NoAuthError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.protocol.states import EventType, KeeperState, WatchedEvent
from kazoo.retry import KazooRetry

from config.words import quoted
from executor.logs import log_event, start_thread
from executor.procs.exitby import ExitBy
from executor.task.announcing import LEAVE_SHARE
from executor.task.membership import (
    RETRY_INITIAL_SECS,
    Action,
    AnnouncementChanged,
    AnnouncerView,
    Change,
    Connection,
    Membership,
    MemberState,
    first_join_overdue,
)
from executor.task.serverset import MEMBER_PREFIX, Announcement
from executor.task.zkclient import CheckedStartHandler, node_acl

logger = logging.getLogger(__name__)
# kazoo logs a WARNING for every reconnect attempt while ZooKeeper is down; the announcer's own
# lines report each state change once, so only kazoo's errors (its bugs) get through.
_kazoo_logger = logging.getLogger(__name__ + ".kazoo")
_kazoo_logger.setLevel(logging.ERROR)

SESSION_TIMEOUT_SECS = 10.0
RECONNECT_MAX_SECS = 10.0
OPERATION_TIMEOUT_SECS = 10.0
LEAVE_TIMEOUT_SECS = 2.0
CLOSE_TIMEOUT_SECS = 3.0
# a leave or close still waiting this long is said (`waiting`): ZooKeeper answers in milliseconds
SAID_AFTER_SECS = 0.2
_SETTLED = (MemberState.IDLE, MemberState.LEFT, MemberState.CLOSED)
Waiting = Callable[[float], None]  # told the seconds a wait has left (`leave`, `close`)


# Messages on the worker's queue.
@attrs.frozen(slots=True)
class _Join:
    pass


@attrs.frozen(slots=True)
class _Leave:
    done: threading.Event  # set once the member is gone (or a later join wins)


@attrs.frozen(slots=True)
class _Close:
    pass


@attrs.frozen(slots=True)
class _ConnectionChanged:
    connection: Connection
    refused: bool = False  # LOST because ZooKeeper refused the credentials (AuthFailed)


@attrs.frozen(slots=True)
class _MemberEvent:
    member: str
    deleted: bool


class ServerSetAnnouncer:
    """See the module docstring."""

    def __init__(self, announcement: Announcement, *, task: str,
                 post: Callable[[AnnouncementChanged], None],
                 session_timeout_secs: float = SESSION_TIMEOUT_SECS,
                 reconnect_max_secs: float = RECONNECT_MAX_SECS,
                 operation_timeout_secs: float = OPERATION_TIMEOUT_SECS,
                 retry_initial_secs: float = RETRY_INITIAL_SECS,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, exit_by: ExitBy | None = None) -> None:
        self._a, self._data, self._task, self._post = announcement, announcement.data, task, post
        self._session_timeout_secs, self._reconnect_max_secs = session_timeout_secs, reconnect_max_secs
        self._op_timeout_secs, self._clock, self._wall = operation_timeout_secs, clock, wall
        # The worker's alone: the machine, the client, the pending leave() calls.
        self._machine = Membership(retry_initial_secs=retry_initial_secs)
        self._zk: KazooClient | None = None
        self._leave_waiters: list[threading.Event] = []
        # The owner's alone: whether it wants the member, and the first announcement's bound.
        self._joining, self._closed = False, False
        self._first_join_deadline_at: float | None = None
        self._worker: threading.Thread | None = None
        # Shared: the exit time, by which the owner's waits end (the worker wakes them through
        # it), and the close's end (the worker's, or no member left: the session ends after)
        self._exit_by = exit_by if exit_by is not None else ExitBy()
        self._closed_enough = threading.Event()
        self._hurried = threading.Event()  # a kill at once (`hurry`): the leave's and the close's waits end
        self._auth_failed = threading.Event()  # kazoo's listener saw AuthFailed (`_refused`)
        # Shared: the queue, and the view the worker publishes under the condition.
        self._inbox: queue.Queue[object] = queue.Queue()
        self._cond = threading.Condition()
        self._view = self._snapshot()

    # ---- the owner's side ----

    def join(self) -> None:
        """Be in the ServerSet: returns at once; the worker creates the member (idempotent).
        The first call starts the clock of the first announcement's bound."""
        if self._closed or self._joining:
            return
        self._joining = True
        if self._first_join_deadline_at is None:
            self._first_join_deadline_at = self._clock() + self._a.first_join_bound_secs
        self._inbox.put(_Join())  # before the session starts: the join comes before CONNECTED
        self._start()

    def leave(self, timeout_secs: float = LEAVE_TIMEOUT_SECS, waiting: Waiting | None = None) -> bool:
        """Leave the ServerSet; True once the member is gone, False after `timeout_secs`, or
        `LEAVE_SHARE` of what was left until the SIGKILL of a SHUTDOWN's grace end (else the
        exit time) as it began or was set (the worker keeps trying; the member expires with
        the session anyway). `waiting(secs left)`, once, when it still waits SAID_AFTER_SECS in."""
        self._joining = False
        if self._worker is None:
            return True
        done = threading.Event()
        self._inbox.put(_Leave(done))
        return self._exit_by.wait(lambda: done.is_set() or self._hurried.is_set(), timeout_secs, share=LEAVE_SHARE,
                                  to_kill=True, noted=None if waiting is None else (SAID_AFTER_SECS, waiting)) \
            and done.is_set()

    def close(self, timeout_secs: float = CLOSE_TIMEOUT_SECS, waiting: Waiting | None = None) -> None:
        """Leave and end the ZooKeeper session, waiting as `leave` does (and saying so); with
        no member left, not for the session's end, which goes on on the worker's thread (a
        ZooKeeper that never answers held it to its bound). Final."""
        self._closed, self._joining = True, False
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._inbox.put(_Close())
        self._exit_by.wait(lambda: self._closed_enough.is_set() or self._hurried.is_set(), timeout_secs,
                           share=LEAVE_SHARE, noted=None if waiting is None else (SAID_AFTER_SECS, waiting))

    def hurry(self) -> None:
        """A kill at once (a second Ctrl-C): the leave and the close wait no more, now or
        later (the member goes with the session). Safe from any thread."""
        self._hurried.set()
        self._exit_by.wake()

    def view(self) -> AnnouncerView:
        with self._cond:
            return self._view

    def overdue(self, now: float) -> bool:
        """The first announcement missed its bound (`now`: time.monotonic())."""
        return first_join_overdue(self._first_join_deadline_at, self.view().first_joined,
                                  self._joining, now)

    @property
    def first_join_deadline_at(self) -> float | None:
        """When `overdue` may first be true (None until `join`)."""
        return self._first_join_deadline_at

    # ---- the worker ----

    def _start(self) -> None:
        """Start the session, then the worker. A thread refused (no room for one) leaves
        nothing started behind and goes on to the owner, which fails the task (was: a close
        that waited its whole bound for a worker never started, a kazoo thread left waiting
        for good, an ERROR line from stopping a connection never started)."""
        if self._worker is not None:
            return
        zk = KazooClient(
            hosts=self._a.ensemble, timeout=self._session_timeout_secs,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2,
                                        max_delay=self._reconnect_max_secs),
            auth_data=[(c.scheme, c.credential) for c in self._a.auth.auth] if self._a.auth else None,
            default_acl=node_acl(self._a.auth), logger=_kazoo_logger, handler=CheckedStartHandler())
        def changed(state: str) -> None:  # on kazoo's connection thread
            refused = zk.client_state == KeeperState.AUTH_FAILED
            if refused:  # before kazoo closes the connection (what a request then meets)
                self._auth_failed.set()
            self._inbox.put(_ConnectionChanged(Connection(state), refused=refused))

        zk.add_listener(changed)
        try:
            zk.start_async()
        except BaseException:
            zk.handler.stop()  # its workers, if both started (a refused one's are stopped)
            zk.close()  # its socket pair, if made: its connection thread never ran
            raise
        worker = threading.Thread(target=self._run, name=f"announcer-{self._task}", daemon=True)
        self._zk = zk  # before the worker runs: it makes every call through it
        try:
            start_thread(worker)
        except BaseException:
            self._zk = None
            self._end_session(zk)
            raise
        self._worker = worker

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug: say so, and end the session so the member cannot linger
            log_event(logger, logging.ERROR, "announcer_crashed", task=self._task, path=self._a.path,
                      exc_info=True)
            if self._zk is not None:
                self._zk.stop()
        finally:
            self._closed_enough.set()
            self._exit_by.wake()  # a close waiting for it

    def _loop(self) -> None:
        while True:
            deadline = self._machine.next_deadline_at
            try:
                message = self._inbox.get(timeout=None if deadline is None
                                          else max(0.0, deadline - self._clock()))
            except queue.Empty:
                message = None
            if isinstance(message, _Close):
                self._shutdown()
                return
            if message is not None:
                self._publish(self._apply(message))
            while (action := self._machine.next_action(self._clock())) is not None:
                self._publish(self._create() if action is Action.CREATE else self._delete())
            if self._machine.want or self._machine.state in _SETTLED:
                self._release_leave_waiters()

    def _release_leave_waiters(self) -> None:
        if not self._leave_waiters:
            return
        for done in self._leave_waiters:
            done.set()
        self._leave_waiters.clear()
        self._exit_by.wake()  # the leave waiting for it

    def _apply(self, message: object) -> list[Change]:
        m = self._machine
        match message:
            case _Join():
                return m.join()
            case _Leave(done=done):
                self._leave_waiters.append(done)
                return m.leave()
            case _ConnectionChanged(refused=True):
                return m.credentials_refused(self._why(AuthFailedError()), self._session_timeout_secs)
            case _ConnectionChanged(connection=connection):
                changes = m.connection_changed(connection)
                if connection is Connection.CONNECTED and m.member is not None:
                    self._watch(m.member)  # kazoo drops watches with the connection
                return changes
            case _MemberEvent(member=member, deleted=True):
                return m.vanished(member)
            case _MemberEvent(member=member):
                # A change, or kazoo dropping the watch with the connection (watched again
                # on CONNECTED): watch again if there is something to watch.
                if member == m.member and m.connection is Connection.CONNECTED:
                    self._watch(member)
                return []
        raise TypeError(f"unexpected message {quoted(message)}")

    def _create(self) -> list[Change]:
        assert self._zk is not None
        try:
            orphan = self._orphan() if self._machine.check_orphans else None
            if orphan is None:
                path = self._zk.create_async(self._a.member_prefix, self._data, ephemeral=True,
                                             sequence=True, makepath=True).get(timeout=self._op_timeout_secs)
                orphan = path.rsplit("/", 1)[1]
        except Exception as exc:  # every outcome becomes a fact for the machine
            if self._refused(exc):  # the session's end, for good (not a retry's reason)
                return self._machine.credentials_refused(self._why(AuthFailedError()), self._session_timeout_secs)
            ambiguous = isinstance(exc, (ConnectionLoss, OperationTimeoutError,
                                         self._zk.handler.timeout_exception))
            return self._machine.failed(Action.CREATE, self._why(exc), self._clock(), ambiguous=ambiguous)
        changes = self._machine.created(orphan, self._clock())
        self._watch(orphan)
        return changes

    def _delete(self) -> list[Change]:
        assert self._zk is not None
        member = self._machine.member
        try:
            if member is None:  # a create whose answer was lost may have made one
                member = self._orphan()
            if member is not None:
                self._zk.delete_async(f"{self._a.path}/{member}").get(timeout=self._op_timeout_secs)
        except NoNodeError:
            pass  # already gone: what we wanted
        except Exception as exc:
            if self._refused(exc):
                return self._machine.credentials_refused(self._why(AuthFailedError()), self._session_timeout_secs)
            return self._machine.failed(Action.DELETE, self._why(exc), self._clock())
        return self._machine.deleted(member)

    def _refused(self, exc: Exception) -> bool:
        """ZooKeeper refused the session's credentials: `exc` says so, or it is what a request
        meets once kazoo closed the connection after the refusal (ConnectionClosedError)."""
        return isinstance(exc, AuthFailedError) or self._auth_failed.is_set()

    def _orphan(self) -> str | None:
        """A member this session created in a call whose answer was lost, if there is one.
        Its session is read once the listing came: kazoo gives none while a connection is
        down (`client_id`), and a look with none found no member of its own, then made a
        second one or left with the first still listed (2 runs in 10 of a test, a loaded machine);
        with none then, the look fails as the connection did, and is tried again."""
        assert self._zk is not None
        try:
            children = self._zk.get_children(self._a.path)
        except NoNodeError:
            return None
        if not (session := self._zk.client_id):
            raise ConnectionLoss("the connection dropped as the members were listed")
        session_id = session[0]
        for child in sorted(children):
            if child.startswith(MEMBER_PREFIX):
                try:
                    data, stat = self._zk.get(f"{self._a.path}/{child}")
                except NoNodeError:  # gone since the listing (was: a leave's "already gone")
                    continue
                if stat.ephemeralOwner == session_id and data == self._data:
                    return str(child)
        return None

    def _watch(self, member: str) -> None:
        """Tell the worker when the member node is deleted (or changed: watch again)."""
        assert self._zk is not None

        def on_event(event: WatchedEvent) -> None:
            self._inbox.put(_MemberEvent(member, deleted=event.type == EventType.DELETED))

        try:
            stat = self._zk.exists_async(f"{self._a.path}/{member}", watch=on_event).get(
                timeout=self._op_timeout_secs)
        except Exception:
            return  # not connected: the listener's SUSPENDED or LOST follows, then CONNECTED
        if stat is None:
            self._inbox.put(_MemberEvent(member, deleted=True))

    def _shutdown(self) -> None:
        m = self._machine
        if (m.member is not None or m.check_orphans) and m.connection is Connection.CONNECTED:
            self._publish(self._machine.leave())
            self._publish(self._delete())
        owned = m.member is not None or m.check_orphans  # (not connected: the session's end takes it)
        changes, zk, self._zk = self._machine.close(), self._zk, None
        if not owned:
            self._publish(changes)
            self._closed_enough.set()
            self._exit_by.wake()
        if zk is not None:
            self._end_session(zk)
        if owned:
            self._publish(changes)
        self._release_leave_waiters()

    def _end_session(self, zk: KazooClient) -> None:
        """End the ZooKeeper session (its ephemeral member goes with it) and free the client."""
        try:
            zk.stop()
            zk.close()
        except Exception as exc:
            log_event(logger, logging.ERROR, "announcer_close_failed", task=self._task,
                      error=f"{type(exc).__name__}: {exc}")

    def _why(self, exc: BaseException) -> str:
        source = self._a.auth.source if self._a.auth else "none: no --announcer-zookeeper-auth-config"
        if isinstance(exc, NoAuthError):
            return f"ZooKeeper refused it: not authorized (NoAuth) under {self._a.path}; credentials from {source}"
        if isinstance(exc, AuthFailedError):
            return f"ZooKeeper refused the session's credentials (AuthFailed); credentials from {source}"
        if isinstance(exc, (ConnectionLoss, SessionExpiredError)):
            return f"connection to ZooKeeper lost ({type(exc).__name__})"
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def _snapshot(self) -> AnnouncerView:
        m = self._machine
        return AnnouncerView(path=self._a.path, member=m.member, state=m.state, reason=m.reason,
                             since=self._wall(), connection=m.connection,
                             first_joined=m.first_joined_at is not None)

    def _publish(self, changes: list[Change]) -> None:
        if not changes:
            return
        with self._cond:
            self._view = self._snapshot()
            self._cond.notify_all()
            view = self._view
        for change in changes:
            failing = change.reason.startswith("could not") or change.new in ("SUSPENDED", "LOST")
            log_event(logger, logging.WARNING if failing else logging.INFO, f"announcer_{change.subject}",
                      task=self._task, path=view.path, member=view.member,
                      **_transition(change.old, change.new), reason=change.reason)
        self._post(AnnouncementChanged(task=self._task, view=view, changes=tuple(changes)))


def _transition(old: str, new: str) -> dict[str, Any]:
    """`from` and `to`, as a log line's fields (`from` is a keyword)."""
    return {"from": old, "to": new}
