"""One task's ServerSet membership as a state machine: facts in, the next ZooKeeper step out.

Owns `Membership`, which the announcer adapter (executor/task/announcer.py) feeds with what
happened (the owner asked to join or leave, the connection changed, a create or delete
succeeded or failed, the member node vanished) and asks what to do next (`next_action`:
create the member, delete it, or nothing until `next_deadline_at`). Each fact returns the
`Change`s it made, for one log line each; a failure that repeats with the same reason is no
change.

    IDLE --join--> JOINING --created--> JOINED --leave--> LEAVING --deleted--> LEFT
                    ^   |                 |                  |
                    |   +-- create failed: retry after back-off (0.5 s doubling to 30 s)
                    +---- session lost or member deleted by someone else (re-create when
                          connected: the ephemeral node went with the session)
    LEFT --join--> JOINING;   LEAVING --session lost--> LEFT;   any --close--> CLOSED

The connection (kazoo's CONNECTED / SUSPENDED / LOST) is tracked beside the state: nothing
is created or deleted unless CONNECTED. SUSPENDED keeps the member (the session may resume);
LOST means the session, and with it the ephemeral member, is gone. A create whose outcome is
unknown (the connection dropped mid-call) sets `check_orphans`: before creating again the
adapter adopts a member its own session already made, so an instance never appears twice;
asked to leave meanwhile, it looks for that member and deletes it (LEAVING until it has
looked), so a leave never says done while the lost create's member is listed.
ZooKeeper refusing the session's credentials (`refused`) is LOST for good: ZooKeeper's
client does not reconnect after that, so nothing is tried again, and each line says so
(was: "reconnecting" and "retrying" while nothing was).

The first announcement has a bound: `first_join_overdue` says it passed with no member ever
created, which fails the task in Aurora ("Creating Announcer Serverset timed out.").

`AnnouncerView` (what the adapter shows) and `AnnouncementChanged` (what it posts to the
task's owner) live here, beside the states they carry, so that the owner can know them
without importing the adapter and its ZooKeeper client.

Pure: no I/O, threads, clocks or logging; `now` is the caller's monotonic time.
"""
from __future__ import annotations

import enum

import attrs

RETRY_INITIAL_SECS = 0.5
RETRY_MAX_SECS = 30.0


class MemberState(enum.Enum):
    IDLE = "IDLE"  # never asked to join
    JOINING = "JOINING"  # asked to join, no member yet: connecting, creating or waiting to retry
    JOINED = "JOINED"  # the member node exists
    LEAVING = "LEAVING"  # asked to leave, the member still exists (deleting, or not connected)
    LEFT = "LEFT"  # asked to leave, no member
    CLOSED = "CLOSED"  # the adapter is shut down; its session is closed


class Connection(enum.Enum):
    """kazoo's connection states."""

    LOST = "LOST"  # no session (not connected yet, or it expired): no member can exist
    SUSPENDED = "SUSPENDED"  # connection dropped; the session and the member may live on
    CONNECTED = "CONNECTED"


class Action(enum.Enum):
    CREATE = "CREATE"
    DELETE = "DELETE"


@attrs.frozen(slots=True)
class Change:
    """One state change, for one log line: `subject` is "member" or "connection"."""

    subject: str
    old: str
    new: str
    reason: str


@attrs.frozen(slots=True)
class AnnouncerView:
    """What `stoker status` shows about a task's announcement (the adapter's `view()`)."""

    path: str  # the ServerSet
    member: str | None  # e.g. member_0000000003 while joined
    state: MemberState
    reason: str
    since: float  # wall-clock time (epoch seconds) of the last change
    connection: Connection
    first_joined: bool  # a member was created at least once


@attrs.frozen(slots=True)
class AnnouncementChanged:
    """Posted to the task's owner after every change of the announcement."""

    task: str
    view: AnnouncerView
    changes: tuple[Change, ...]


class Membership:
    """See the module docstring."""

    def __init__(self, *, retry_initial_secs: float = RETRY_INITIAL_SECS,
                 retry_max_secs: float = RETRY_MAX_SECS) -> None:
        self._retry_initial_secs = retry_initial_secs
        self._retry_max_secs = retry_max_secs
        self.state = MemberState.IDLE
        self.reason = "not asked to join yet"
        self.connection = Connection.LOST
        self.member: str | None = None
        self.want = False
        self.closed = False
        self.check_orphans = False
        self.refused: str | None = None  # why ZooKeeper refused the credentials: no session again
        self.failures = 0  # consecutive failed creates/deletes
        self.retry_at: float | None = None
        self.first_joined_at: float | None = None

    # ---- facts ----

    def join(self) -> list[Change]:
        if self.closed or self.want:
            return []
        self.want = True
        self._clear_retry()
        return self._settle("asked to join")

    def leave(self) -> list[Change]:
        if self.closed or not self.want:
            return []
        self.want = False
        self._clear_retry()
        return self._settle("asked to leave")

    def close(self) -> list[Change]:
        if self.closed:
            return []
        self.closed, self.want, self.member = True, False, None
        return self._set(MemberState.CLOSED, "closed: the ZooKeeper session is ended")

    def connection_changed(self, connection: Connection) -> list[Change]:
        if connection is self.connection or self.closed or self.refused:
            return []
        changes = [Change("connection", self.connection.value, connection.value,
                          _CONNECTION_REASONS[connection])]
        self.connection = connection
        if connection is Connection.CONNECTED:
            self._clear_retry()  # a step that failed for want of a connection is due now
            return changes
        if connection is Connection.LOST:
            owned = self.member is not None or self.check_orphans
            self.check_orphans = False  # a new session owns nothing
            if owned:
                self.member = None
                return changes + self._settle("the ZooKeeper session expired and its member went with it")
        return changes

    def credentials_refused(self, why: str, session_timeout_secs: float | None = None) -> list[Change]:
        """ZooKeeper refused the session's credentials (AuthFailed): the session is LOST, and
        ZooKeeper's client does not reconnect: nothing is tried again. A member it had (the
        refusal came as the session was resumed), or one a create whose answer was lost may have
        made, stays until ZooKeeper expires the session, `session_timeout_secs` later (it closes
        the connection, not the session), and says so (was: "no ZooKeeper session" alone, while
        readers still listed it)."""
        if self.closed or self.refused:
            return []
        self.refused = f"{why}; ZooKeeper's client does not reconnect after that"
        changes = [Change("connection", self.connection.value, Connection.LOST.value, self.refused)]
        said = "no ZooKeeper session"
        if self.member is not None or self.check_orphans:  # (the lost create's: made in this session, if at all)
            member = f"its member {self.member}" if self.member else "a member the create whose answer was lost may have made"
            within = f" ({session_timeout_secs:g} s)" if session_timeout_secs is not None else ""
            said += f"; {member} stays in ZooKeeper until the session's timeout{within} ends it"
        self.connection, self.member, self.check_orphans = Connection.LOST, None, False
        self._clear_retry()
        return changes + self._settle(said)

    def created(self, member: str, now: float) -> list[Change]:
        self.member, self.check_orphans = member, False
        if self.first_joined_at is None:
            self.first_joined_at = now
        self._clear_retry()
        return self._settle(f"created {member}")

    def deleted(self, orphan: str | None = None) -> list[Change]:
        """The member is deleted; with none known, the lost create's `orphan` (None: that
        create made none)."""
        gone = self.member or orphan
        self.member, self.check_orphans = None, False
        self._clear_retry()
        return self._settle(f"deleted {gone}" if gone else "the create whose answer was lost made no member")

    def vanished(self, member: str) -> list[Change]:
        """The member node was deleted, not by a delete that answered: an operator, a session
        we lost, or, leaving, our own delete that failed (ConnectionLoss after ZooKeeper applied
        it: its watch said DELETED first; was: "deleted by someone else" for our own)."""
        if member != self.member:
            return []
        maybe_ours = not self.want and self.failures > 0  # a leave's delete failed (leave() cleared the count)
        self.member = None
        if maybe_ours:
            return self._settle(f"{member} was deleted: by the delete whose answer was lost, or by someone else")
        return self._settle(f"{member} was deleted by someone else")

    def failed(self, action: Action, reason: str, now: float, *, ambiguous: bool = False) -> list[Change]:
        """A create or delete failed; it is retried after a back-off (or once connected)."""
        self.failures += 1
        self.retry_at = now + self.retry_delay_secs()
        if action is Action.CREATE and ambiguous:
            self.check_orphans = True
        verb = "create" if action is Action.CREATE else "delete"
        return self._set(self.state, f"could not {verb} the member: {reason}; retrying")

    # ---- decisions ----

    def next_action(self, now: float) -> Action | None:
        if self.closed or self.connection is not Connection.CONNECTED:
            return None
        if self.retry_at is not None and now < self.retry_at:
            return None
        if self.want and self.member is None:
            return Action.CREATE
        if not self.want and (self.member is not None or self.check_orphans):
            return Action.DELETE
        return None

    @property
    def next_deadline_at(self) -> float | None:
        """When a failed step is due again (None: nothing is waiting for time)."""
        if self.closed or self.connection is not Connection.CONNECTED:
            return None
        return self.retry_at

    def retry_delay_secs(self) -> float:
        doubled: float = self._retry_initial_secs * 2.0 ** max(self.failures - 1, 0)
        return min(doubled, self._retry_max_secs)

    # ---- internals ----

    def _clear_retry(self) -> None:
        self.failures, self.retry_at = 0, None

    def _settle(self, why: str) -> list[Change]:
        if self.closed:
            return []
        if self.want:
            new = MemberState.JOINED if self.member is not None else MemberState.JOINING
        elif self.member is not None or self.check_orphans:  # the lost create's member, if any
            new = MemberState.LEAVING
        else:  # after a join: a member comes from a create, and only a join asks for one
            new = MemberState.LEFT
        if self.refused and new is not MemberState.LEFT:
            why += f": {self.refused}"
        elif new is MemberState.JOINING and self.connection is not Connection.CONNECTED:
            why += "; waiting for ZooKeeper"
        elif new is MemberState.LEAVING and self.connection is not Connection.CONNECTED:
            why += "; deleting it once ZooKeeper is reachable (it expires with the session anyway)"
        return self._set(new, why)

    def _set(self, new: MemberState, reason: str) -> list[Change]:
        if new is self.state and reason == self.reason:
            return []
        change = Change("member", self.state.value, new.value, reason)
        self.state, self.reason = new, reason
        return [change]


_CONNECTION_REASONS = {
    Connection.CONNECTED: "connected to ZooKeeper",
    Connection.SUSPENDED: "connection to ZooKeeper dropped; reconnecting (the session may resume)",
    Connection.LOST: "no ZooKeeper session (expired, or none yet); reconnecting",
}


def first_join_overdue(deadline_at: float | None, first_joined: bool, joining: bool, now: float) -> bool:
    """The first announcement missed its bound: asked to join (`deadline_at` = when join was
    first asked + the bound), still joining, and no member was ever created by `now`."""
    return deadline_at is not None and joining and not first_joined and now >= deadline_at
