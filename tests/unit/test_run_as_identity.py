"""Who a task's processes run as (`executor/procs/identity.py`): a user by name with its
groups, or its words when there is none; this process's own user, named `uid N` when the
password database has no name for it; a sandbox given to a user; a umask that keeps only its
write bits."""
from __future__ import annotations

import os
import pwd
import stat

import pytest

from executor.procs import identity
from executor.procs.identity import RunAs, UnknownUser, current_user, user_named
from tests.support.users import STRANGER, effective_user, needs_root


def test_a_user_by_name_with_its_groups():
    root = pwd.getpwuid(0)
    found = user_named(root.pw_name)
    assert (found.name, found.uid, found.gid) == (root.pw_name, 0, root.pw_gid)
    assert found.groups == tuple(os.getgrouplist(root.pw_name, root.pw_gid)) and root.pw_gid in found.groups


def test_a_user_whose_groups_cannot_be_listed_has_its_own_group(monkeypatch):
    def refused(user: str, group: int) -> list[int]:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "getgrouplist", refused)
    assert user_named(pwd.getpwuid(0).pw_name).groups == (pwd.getpwuid(0).pw_gid,)


@pytest.mark.parametrize("name", ["no-such-user-stkr", "a\0b"])
def test_no_such_user_is_said_by_its_name(name):
    with pytest.raises(UnknownUser) as raised:
        user_named(name)
    assert str(raised.value) == f"there is no user {name!r} on this machine"


def test_this_process_s_user_is_its_name_its_ids_and_groups():
    me = current_user()
    assert me == RunAs(name=pwd.getpwuid(os.geteuid()).pw_name, uid=os.geteuid(), gid=os.getegid(),
                       groups=tuple(os.getgroups()))
    assert me.is_self


@needs_root
def test_a_user_the_password_database_does_not_know_is_named_by_its_uid():
    with effective_user(STRANGER):
        me = current_user()
    assert (me.name, me.uid) == (f"uid {STRANGER}", STRANGER)


@needs_root
def test_a_sandbox_given_to_a_user_is_its_own_and_only_its(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir(mode=0o755)
    identity.give_sandbox(sandbox, RunAs(name="x", uid=STRANGER, gid=STRANGER))
    st = sandbox.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (STRANGER, STRANGER, 0o700)


@pytest.mark.parametrize(("umask", "kept"), [(0o077, 0o022), (0o027, 0o022), (0o002, 0o002), (0o000, 0o000),
                                             (0o777, 0o022)])
def test_the_logs_umask_keeps_only_the_write_bits_and_gives_the_old_one_back(umask, kept):
    before = os.umask(umask)
    try:
        assert identity.keep_logs_readable() == umask
        assert os.umask(before) == kept
    finally:
        os.umask(before)

