"""The announcer (`executor/task/announcer.py`) against a real ZooKeeper whose ACL on the
job's path refuses it (an operator's change, a path another tool made): a create or a
delete ZooKeeper answers with NoAuth says why, with where the credentials came from, and
is tried again after its back-off until the ACL allows it. A plain kazoo client with the
path's ADMIN right plays the operator."""
from __future__ import annotations

import logging

import pytest
from kazoo.security import ACL, Permissions, make_acl

from executor.task.membership import MemberState
from tests.integration.test_announcer import announcement, announcers, joined, members, reader, unique_root  # noqa: F401 (fixtures too)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

NO_SOURCE = "none: no --announcer-zookeeper-auth-config"
OPEN = [make_acl("world", "anyone", all=True)]


def _without(*refused: int) -> list[ACL]:
    """World's rights on a node but `refused`."""
    return [ACL(Permissions.ALL & ~sum(refused), OPEN[0].id)]


def test_a_leave_the_path_s_acl_refuses_says_why_and_leaves_once_it_is_allowed(zk, reader, announcers, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="executor.task.announcer")
    announcer, _, path, [member] = joined(zk, reader, announcers)
    reader.set_acls(path, _without(Permissions.DELETE))  # a child's delete is the parent's right
    assert announcer.leave(timeout_secs=0.5) is False
    refused = (f"could not delete the member: ZooKeeper refused it: not authorized (NoAuth) under {path}; "
               f"credentials from {NO_SOURCE}; retrying")
    view = wait_for(lambda: announcer.view() if announcer.view().reason == refused else None, timeout_secs=5,
                    message=f"the refusal said: {announcer.view()}")
    assert (view.state, view.member) == (MemberState.LEAVING, member)
    (warned, *_) = [r for r in caplog.records if getattr(r, "stoker_event", "") == "announcer_member"
                    and r.stoker_fields["reason"] == refused]
    assert (warned.levelno, warned.stoker_fields["from"], warned.stoker_fields["to"]) == (
        logging.WARNING, "LEAVING", "LEAVING")
    assert members(reader, path) == [member]
    reader.set_acls(path, OPEN)
    wait_for(lambda: announcer.view().state is MemberState.LEFT, timeout_secs=10, message="left once allowed")
    assert members(reader, path) == []


def test_a_join_the_path_s_acl_refuses_says_why_and_joins_once_it_is_allowed(zk, reader, announcers):  # noqa: F811
    root = unique_root()
    path = f"{root}/www-data/prod/hello"
    reader.ensure_path(path.rsplit("/", 1)[0])
    reader.create(path, acl=_without(Permissions.CREATE))
    announcer, _ = announcers(announcement(zk.ensemble, root))
    announcer.join()
    refused = (f"could not create the member: ZooKeeper refused it: not authorized (NoAuth) under {path}; "
               f"credentials from {NO_SOURCE}; retrying")
    view = wait_for(lambda: announcer.view() if announcer.view().reason == refused else None, timeout_secs=10,
                    message=f"the refusal said: {announcer.view()}")
    assert (view.state, view.member, members(reader, path)) == (MemberState.JOINING, None, [])
    reader.set_acls(path, OPEN)
    listed = wait_for(lambda: members(reader, path), timeout_secs=10, message="joined once allowed")
    wait_for(lambda: announcer.view().member == listed[0], timeout_secs=5)
    assert announcer.view().state is MemberState.JOINED
