"""The membership machine: facts in, changes and the next ZooKeeper step out, as scripts.

Each script is a list of (fact, the changes it makes as "subject:NEW", the next action at
that moment). Time only moves where a step says so.
"""
from __future__ import annotations

import pytest

from executor.task.membership import (
    Action,
    Connection,
    Membership,
    MemberState,
    first_join_overdue,
)

CREATE, DELETE = Action.CREATE, Action.DELETE
CONNECTED, SUSPENDED, LOST = Connection.CONNECTED, Connection.SUSPENDED, Connection.LOST


def apply(m: Membership, fact: str, now: float) -> list:
    name, _, arg = fact.partition(" ")
    match name:
        case "join":
            return m.join()
        case "leave":
            return m.leave()
        case "close":
            return m.close()
        case "conn":
            return m.connection_changed(Connection(arg))
        case "created":
            return m.created(arg, now)
        case "deleted":
            return m.deleted()
        case "vanished":
            return m.vanished(arg)
        case "create_failed":
            return m.failed(CREATE, arg, now)
        case "create_lost":
            return m.failed(CREATE, arg, now, ambiguous=True)
        case "delete_failed":
            return m.failed(DELETE, arg, now)
    raise AssertionError(fact)


def run(script: list[tuple[str, list[str], Action | None]], now: float = 0.0) -> Membership:
    m = Membership()
    for step, (fact, changes, action) in enumerate(script):
        got = apply(m, fact, now)
        assert [f"{c.subject}:{c.new}" for c in got] == changes, f"step {step}: {fact}"
        assert m.next_action(now) is action, f"step {step}: {fact}"
    return m


# The steps most scripts start from: connected, asked to join, the member created.
JOINING = [
    ("conn CONNECTED", ["connection:CONNECTED"], None),  # nothing wanted yet
    ("join", ["member:JOINING"], CREATE),
]
JOINED = [*JOINING, ("created member_0000000001", ["member:JOINED"], None)]
CREATE_LOST = [*JOINING, ("create_lost ConnectionLoss", ["member:JOINING"], None)]

SCRIPTS = {
    "join before the connection, then create": [
        ("join", ["member:JOINING"], None),
        ("conn CONNECTED", ["connection:CONNECTED"], CREATE),
        ("created member_0000000001", ["member:JOINED"], None),
        ("join", [], None),  # idempotent
    ],
    "join when connected": JOINED,
    "the session expires while joined: a new member once connected": [
        *JOINED,
        ("conn SUSPENDED", ["connection:SUSPENDED"], None),  # the member may live on
        ("conn LOST", ["connection:LOST", "member:JOINING"], None),  # it went with the session
        ("conn CONNECTED", ["connection:CONNECTED"], CREATE),
        ("created member_0000000002", ["member:JOINED"], None),
    ],
    "a dropped connection that resumes keeps the member": [
        *JOINED,
        ("conn SUSPENDED", ["connection:SUSPENDED"], None),
        ("conn CONNECTED", ["connection:CONNECTED"], None),
        ("conn CONNECTED", [], None),
    ],
    "leave and join again": [
        *JOINED,
        ("leave", ["member:LEAVING"], DELETE),
        ("deleted", ["member:LEFT"], None),
        ("leave", [], None),  # idempotent
        ("join", ["member:JOINING"], CREATE),
        ("created member_0000000002", ["member:JOINED"], None),
    ],
    "leave while disconnected: deleted once connected": [
        *JOINED,
        ("conn SUSPENDED", ["connection:SUSPENDED"], None),
        ("leave", ["member:LEAVING"], None),
        ("conn CONNECTED", ["connection:CONNECTED"], DELETE),
        ("deleted", ["member:LEFT"], None),
    ],
    "leave while disconnected: the expiry does it": [
        *JOINED,
        ("conn SUSPENDED", ["connection:SUSPENDED"], None),
        ("leave", ["member:LEAVING"], None),
        ("conn LOST", ["connection:LOST", "member:LEFT"], None),
        ("conn CONNECTED", ["connection:CONNECTED"], None),
    ],
    "leave before the member was created": [
        ("join", ["member:JOINING"], None),
        ("leave", ["member:LEFT"], None),
        ("conn CONNECTED", ["connection:CONNECTED"], None),
    ],
    "a leave before any join changes nothing": [
        ("leave", [], None),
        ("conn CONNECTED", ["connection:CONNECTED"], None),
    ],
    "the member deleted by someone else is created again": [
        *JOINED,
        ("vanished member_0000000000", [], None),  # not ours (any more)
        ("vanished member_0000000001", ["member:JOINING"], CREATE),
        ("created member_0000000002", ["member:JOINED"], None),
    ],
    "close is final": [
        *JOINED,
        ("close", ["member:CLOSED"], None),
        ("close", [], None),
        ("join", [], None),
        ("conn LOST", [], None),
    ],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts(name):
    run(SCRIPTS[name])


def test_a_new_machine_has_not_been_asked_anything():
    m = Membership()
    assert (m.state, m.reason, m.connection, m.member) == (
        MemberState.IDLE, "not asked to join yet", LOST, None)
    assert (m.want, m.closed, m.check_orphans, m.failures, m.retry_at, m.first_joined_at) == (
        False, False, False, 0, None, None)
    assert m.retry_delay_secs() == 0.5 and m.next_deadline_at is None


# Each change's reason, as the log line and `stoker status` show it: (fact, [(old, new, reason)]).
JOINED_WHY = [
    ("conn CONNECTED", [("connection", "LOST", "CONNECTED", "connected to ZooKeeper")]),
    ("join", [("member", "IDLE", "JOINING", "asked to join")]),
    ("created member_0000000001", [("member", "JOINING", "JOINED", "created member_0000000001")]),
]
SUSPENDED_WHY = [*JOINED_WHY, ("conn SUSPENDED", [(
    "connection", "CONNECTED", "SUSPENDED", "connection to ZooKeeper dropped; reconnecting (the session may resume)")])]
LEAVING_SUSPENDED_WHY = [*SUSPENDED_WHY, ("leave", [(
    "member", "JOINED", "LEAVING",
    "asked to leave; deleting it once ZooKeeper is reachable (it expires with the session anyway)")])]
REASONS = {
    "join, create, leave, delete, join again, close": [
        ("join", [("member", "IDLE", "JOINING", "asked to join; waiting for ZooKeeper")]),
        ("conn CONNECTED", [("connection", "LOST", "CONNECTED", "connected to ZooKeeper")]),
        ("created member_0000000001", [("member", "JOINING", "JOINED", "created member_0000000001")]),
        ("leave", [("member", "JOINED", "LEAVING", "asked to leave")]),
        ("deleted", [("member", "LEAVING", "LEFT", "deleted member_0000000001")]),
        ("join", [("member", "LEFT", "JOINING", "asked to join")]),
        ("close", [("member", "JOINING", "CLOSED", "closed: the ZooKeeper session is ended")]),
    ],
    "leave while disconnected": [
        *LEAVING_SUSPENDED_WHY,
        ("conn CONNECTED", [("connection", "SUSPENDED", "CONNECTED", "connected to ZooKeeper")]),
        ("deleted", [("member", "LEAVING", "LEFT", "deleted member_0000000001")]),
    ],
    "a leave before the member was created, while disconnected": [
        ("join", [("member", "IDLE", "JOINING", "asked to join; waiting for ZooKeeper")]),
        ("leave", [("member", "JOINING", "LEFT", "asked to leave")]),
    ],
    "a member deleted by someone else, while disconnected": [
        *SUSPENDED_WHY,
        ("vanished member_0000000001", [("member", "JOINED", "JOINING", "member_0000000001 was deleted by "
                                                                        "someone else; waiting for ZooKeeper")]),
    ],
    "a leave's delete whose answer was lost, then the member's watch says it was deleted": [
        *JOINED_WHY,
        ("leave", [("member", "JOINED", "LEAVING", "asked to leave")]),
        ("delete_failed ConnectionLoss", [("member", "LEAVING", "LEAVING",
                                           "could not delete the member: ConnectionLoss; retrying")]),
        ("vanished member_0000000001", [("member", "LEAVING", "LEFT", "member_0000000001 was deleted: by "
                                         "the delete whose answer was lost, or by someone else")]),
    ],
    "a member deleted by someone else while leaving, before any delete": [
        *LEAVING_SUSPENDED_WHY,
        ("vanished member_0000000001", [("member", "LEAVING", "LEFT",
                                         "member_0000000001 was deleted by someone else")]),
    ],
    "a member deleted by someone else, connected": [
        *JOINED_WHY,
        ("vanished member_0000000001", [("member", "JOINED", "JOINING",
                                         "member_0000000001 was deleted by someone else")]),
    ],
}


@pytest.mark.parametrize("name", REASONS)
def test_each_change_says_why(name):
    m = Membership()
    for step, (fact, changes) in enumerate(REASONS[name]):
        got = apply(m, fact, 0.0)
        assert [(c.subject, c.old, c.new, c.reason) for c in got] == changes, f"step {step}: {fact}"
    assert m.reason == changes[-1][3]


def test_the_reasons_say_why():
    m = Membership()
    assert [c.reason for c in m.join()] == ["asked to join; waiting for ZooKeeper"]
    m.connection_changed(CONNECTED)
    assert [c.reason for c in m.created("member_0000000001", 0.0)] == ["created member_0000000001"]
    changes = m.connection_changed(LOST)
    assert [(c.subject, c.old, c.new, c.reason) for c in changes] == [
        ("connection", "CONNECTED", "LOST", "no ZooKeeper session (expired, or none yet); reconnecting"),
        ("member", "JOINED", "JOINING",
         "the ZooKeeper session expired and its member went with it; waiting for ZooKeeper"),
    ]


def test_a_failed_create_is_retried_with_back_off_and_logged_once():
    m = run(JOINING)
    changes = m.failed(CREATE, "NoAuth", 10.0)
    assert [(c.new, c.reason) for c in changes] == [("JOINING", "could not create the member: NoAuth; retrying")]
    delays = []
    now = 10.0
    for _ in range(9):
        assert m.next_action(now) is None
        now = m.next_deadline_at
        delays.append(m.retry_delay_secs())
        assert m.next_action(now) is CREATE
        assert m.failed(CREATE, "NoAuth", now) == []  # the same failure again: no new line
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert [c.new for c in m.created("member_0000000001", now)] == ["JOINED"]
    assert (m.failures, m.retry_at, m.next_deadline_at) == (0, None, None)


def test_a_retry_waits_for_the_connection_and_a_new_connection_retries_at_once():
    m = run(JOINING)
    m.failed(CREATE, "ConnectionLoss", 5.0)
    m.connection_changed(SUSPENDED)
    assert (m.next_action(100.0), m.next_deadline_at) == (None, None)
    m.connection_changed(CONNECTED)
    assert m.next_action(5.0) is CREATE  # no back-off left over


def test_a_failed_delete_is_retried():
    m = run([*JOINED, ("leave", ["member:LEAVING"], DELETE)])
    assert m.want is False
    assert [c.reason for c in m.failed(DELETE, "timeout", 1.0)] == ["could not delete the member: timeout; retrying"]
    assert m.next_action(1.2) is None and m.next_action(1.5) is DELETE


def test_an_ambiguous_create_checks_for_an_orphan_until_the_session_is_gone():
    m = run(JOINING)
    m.failed(CREATE, "ConnectionLoss", 1.0, ambiguous=True)
    assert m.check_orphans
    m.connection_changed(SUSPENDED)
    m.connection_changed(CONNECTED)
    assert m.check_orphans and m.next_action(1.0) is CREATE  # the same session: look for it first
    m.connection_changed(LOST)
    assert m.check_orphans is False  # a new session owns nothing
    m.failed(CREATE, "ConnectionLoss", 2.0, ambiguous=True)
    m.connection_changed(CONNECTED)
    m.created("member_0000000001", 2.0)
    assert m.check_orphans is False


def test_a_leave_after_a_lost_create_deletes_its_member_before_it_is_done():
    """Was: LEFT at once, member or not, and the lost create's member listed until the
    session's end (the task's close)."""
    m = run([*CREATE_LOST, ("conn SUSPENDED", ["connection:SUSPENDED"], None),
             ("leave", ["member:LEAVING"], None), ("conn CONNECTED", ["connection:CONNECTED"], DELETE)])
    assert [(c.new, c.reason) for c in m.deleted("member_0000000004")] == [("LEFT", "deleted member_0000000004")]
    assert (m.check_orphans, m.next_action(5.0)) == (False, None)
    m = run([*CREATE_LOST, ("leave", ["member:LEAVING"], DELETE)])
    assert [c.reason for c in m.deleted(None)] == ["the create whose answer was lost made no member"]
    m = run([*CREATE_LOST, ("leave", ["member:LEAVING"], DELETE),
             ("conn LOST", ["connection:LOST", "member:LEFT"], None)])  # the session took it
    assert m.check_orphans is False


@pytest.mark.parametrize("action, ambiguous, check_orphans", [
    (CREATE, True, True),  # the member may exist: look for it before creating another
    (CREATE, False, False),  # refused: there is no member
    (DELETE, True, False),  # a delete's lost answer leaves at most the member we know
    (DELETE, False, False),
])
def test_only_a_create_with_an_unknown_outcome_looks_for_an_orphan(action, ambiguous, check_orphans):
    m = run(JOINING)
    if action is DELETE:
        m.created("member_0000000001", 0.0)
        m.leave()
    m.failed(action, "ConnectionLoss", 1.0, ambiguous=ambiguous)
    assert m.check_orphans is check_orphans


def test_a_failure_is_not_ambiguous_unless_said():
    m = run(JOINING)
    m.failed(CREATE, "NoAuth", 1.0)
    assert m.check_orphans is False


def test_a_session_lost_while_joined_owns_nothing():
    m = run(JOINED)
    m.connection_changed(LOST)
    assert (m.member, m.check_orphans, m.state) == (None, False, MemberState.JOINING)


def test_credentials_refused_is_lost_for_good_and_says_so():
    """ZooKeeper refused the credentials (AuthFailed): kazoo never reconnects after that.
    Was: "reconnecting" and "retrying" in the status and the log, for good."""
    m = run(JOINED)
    changes = m.credentials_refused("ZooKeeper refused the session's credentials (AuthFailed)")
    assert [(c.subject, c.new) for c in changes] == [("connection", "LOST"), ("member", "JOINING")]
    for change in changes:
        assert "AuthFailed" in change.reason and "does not reconnect" in change.reason
        assert "retrying" not in change.reason and "reconnecting" not in change.reason
    assert (m.member, m.connection, m.next_action(9.0), m.next_deadline_at) == (None, LOST, None, None)
    assert m.connection_changed(LOST) == [] and m.connection_changed(CONNECTED) == []  # (none come)
    assert m.credentials_refused("again") == []
    assert [(c.new, c.reason) for c in m.leave()] == [("LEFT", "asked to leave")]
    assert m.next_action(9.0) is None


def test_credentials_refused_after_a_lost_create_say_its_member_may_stay_until_it_expires():
    """A create whose answer was lost may have made a member in the session; credentials
    refused as that session is resumed leave it listed until the session's timeout, as a
    member known (was: "no ZooKeeper session" alone, the member the lost create may have made
    unsaid)."""
    m = run([*CREATE_LOST, ("conn SUSPENDED", ["connection:SUSPENDED"], None)])
    changes = m.credentials_refused("ZooKeeper refused the session's credentials (AuthFailed)", 10.0)
    assert changes[-1].reason.startswith("no ZooKeeper session; a member the create whose answer was lost may "
                                         "have made stays in ZooKeeper until the session's timeout (10 s) ends it: ")
    assert (m.member, m.check_orphans) == (None, False)


def test_a_closed_machine_wants_nothing():
    m = run(JOINED)
    m.close()
    assert (m.state, m.want, m.member, m.closed) == (MemberState.CLOSED, False, None, True)


def test_first_join_is_recorded_once():
    m = run(JOINING)
    m.created("member_0000000001", 7.0)
    m.connection_changed(LOST)
    m.connection_changed(CONNECTED)
    m.created("member_0000000002", 9.0)
    assert (m.first_joined_at, m.state) == (7.0, MemberState.JOINED)


@pytest.mark.parametrize("deadline_at,first_joined,joining,now,overdue", [
    (None, False, False, 100.0, False),  # never asked to join
    (10.0, False, True, 9.9, False),
    (10.0, False, True, 10.0, True),  # the bound passed with no member
    (10.0, True, True, 50.0, False),  # it made it (a later expiry does not count)
    (10.0, False, False, 50.0, False),  # asked to leave meanwhile
])
def test_first_join_overdue(deadline_at, first_joined, joining, now, overdue):
    assert first_join_overdue(deadline_at, first_joined, joining, now) is overdue
