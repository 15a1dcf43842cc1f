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

from executor.host.replacefile import trusted_path
from tests.support.stoker_proc import REPO
from tests.support.users import STRANGER, grant_write, needs_root, open_sandbox

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
