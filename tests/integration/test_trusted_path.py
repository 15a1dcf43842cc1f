"""`executor.host.replacefile.trusted_path`: a path walked as the kernel walks it, each
symlink on the way and where it leads (the registry's, the plan cache's and
STOKER_CODE_CACHE's check). test_registry.py has the levels' modes and owners."""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys

import pytest

from executor.host.replacefile import trusted_path, untrusted_level
from tests.support.stoker_proc import REPO
from tests.support.users import STRANGER, grant_write, needs_root, open_sandbox, throwaway_user

pytestmark = pytest.mark.timeout(20)


def test_an_absolute_path_is_judged_from_a_working_directory_that_is_gone(tmp_path):
    """`stoker status` run from a directory removed under it: the path is absolute, the
    working directory is not read (os.getcwd() raises FileNotFoundError there)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.rmdir(sys.argv[1]); from executor.host.replacefile import untrusted_level; "
            "print(repr(untrusted_level(sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", code, str(gone), str(tmp_path / "root")], cwd=gone,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "''\n", "")


@needs_root
def test_a_symlink_another_user_owns_midway_through_a_chain_is_not_trusted(tmp_path):
    """A link of the user's that leads through a link another user owns (in a directory of
    theirs) to a directory of the user's: that user may point the middle link anywhere.
    Was: trusted, as only the path as written and its end (realpath) were checked, and so
    was STOKER_CODE_CACHE there (`nodocs.cache_dir`), for root's code."""
    from executor import nodocs

    with open_sandbox() as top:
        (top / "mine").mkdir()
        (top / "theirs").mkdir()
        (top / "cache").mkdir()
        (top / "theirs" / "hop").symlink_to(top / "cache")
        (top / "mine" / "link").symlink_to(top / "theirs" / "hop")
        os.lchown(top / "theirs" / "hop", STRANGER, STRANGER)
        os.chown(top / "theirs", STRANGER, STRANGER)
        link = str(top / "mine" / "link")
        assert not trusted_path(link)
        assert not trusted_path(link + "/below")
        assert nodocs.cache_dir({"STOKER_CODE_CACHE": link}) is None
        assert trusted_path(str(top / "cache"))  # where it leads now: the user's
        (top / "theirs" / "sub").mkdir()
        (top / "mine" / "up").symlink_to(top / "theirs" / "sub")
        assert not trusted_path(str(top / "mine" / "up" / ".." / "hop"))  # `..` after the link: theirs
        (top / "mine" / "ok").symlink_to(top / "cache")
        assert trusted_path(str(top / "mine" / "." / "ok" / ".." / "cache"))  # the user's link, then up from it


def test_the_code_cache_setting_unset_a_group_of_the_user_s_own_and_an_acl_in_a_sticky_directory(tmp_path):
    """`nodocs.cache_dir`: unset, the package's `__pycache__`; a directory its user's own
    group may write (0775, a group that lists no one else: a umask of 002) is the user's;
    a sticky one whose ACL lets another user write is not (its walk lets a sticky level
    pass: others may not rename what is ours there, but they may add a name of their own)."""
    from executor import nodocs

    assert nodocs.cache_dir({}) == nodocs.CACHE_DIR
    if any(name != pwd.getpwuid(os.geteuid()).pw_name for name in grp.getgrgid(os.getegid()).gr_mem):
        pytest.skip("this user's group lists another member")
    own = tmp_path / "own"
    own.mkdir()
    os.chown(own, -1, os.getegid())
    own.chmod(0o775)
    assert nodocs.cache_dir({"STOKER_CODE_CACHE": str(own)}) == str(own)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, -1, os.getegid())
    shared.chmod(0o1775)
    assert nodocs.cache_dir({"STOKER_CODE_CACHE": str(shared)}) == str(shared)
    grant_write(shared, STRANGER)
    assert trusted_path(str(shared)) and nodocs.cache_dir({"STOKER_CODE_CACHE": str(shared)}) is None


@needs_root
def test_a_path_is_judged_for_the_user_given_and_a_relative_one_from_the_working_directory(tmp_path, monkeypatch):
    """`.` stays and `..` goes up (the level a refusal names is the directory itself)."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (tmp_path / "sub").mkdir()
    os.chown(theirs, STRANGER, STRANGER)
    said = f"{theirs} belongs to uid {STRANGER}"
    assert untrusted_level(str(theirs / "x")) == said
    assert trusted_path(str(theirs / "x"), euid=STRANGER, egid=STRANGER)  # theirs, for them
    assert untrusted_level(f"{tmp_path}/./sub/../theirs/x") == said
    monkeypatch.chdir(tmp_path)
    assert untrusted_level("theirs/x") == said
    assert untrusted_level("sub/x") == ""


@needs_root
def test_a_link_whose_target_goes_through_another_user_s_directory_is_theirs_to_change(tmp_path):
    theirs = tmp_path / "theirs"
    (theirs / "mine").mkdir(parents=True)
    os.chown(theirs, STRANGER, STRANGER)
    (tmp_path / "link").symlink_to("theirs/mine")  # relative, two levels
    assert untrusted_level(str(tmp_path / "link" / "x")) == f"{theirs} belongs to uid {STRANGER}"


def test_forty_links_in_a_row_are_followed_and_one_more_or_a_loop_is_too_many(tmp_path):
    """The kernel's ELOOP limit for one lookup (a loop would else be walked for ever)."""
    for n in range(41):
        (tmp_path / f"l{n}").symlink_to(f"l{n + 1}")
    (tmp_path / "l41").mkdir()
    assert untrusted_level(str(tmp_path / "l1" / "x")) == ""  # l1 .. l40: 40 links
    assert untrusted_level(str(tmp_path / "l0" / "x")) == f"{tmp_path}/l40: too many levels of symbolic links"
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert untrusted_level(str(tmp_path / "a")).endswith(": too many levels of symbolic links")


@needs_root
def test_a_directory_of_a_group_that_lists_the_user_alone_is_the_user_s(tmp_path):
    """The user given, not this process's: its own group (the one it is the only member of)."""
    with throwaway_user() as (user, group):
        shared = tmp_path / "shared"
        shared.mkdir()
        os.chown(shared, user.pw_uid, group.gr_gid)
        shared.chmod(0o775)
        assert untrusted_level(str(shared / "x"), euid=user.pw_uid, egid=group.gr_gid) == ""
        assert untrusted_level(str(shared / "x"), euid=0, egid=group.gr_gid) == (
            f"{shared} belongs to {user.pw_name} (uid {user.pw_uid})")
