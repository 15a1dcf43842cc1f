"""`executor.host.replacefile.trusted_path`: a path walked as the kernel walks it, each
symlink on the way and where it leads (the registry's, the plan cache's and
STOKER_CODE_CACHE's check). test_registry.py has the levels' modes and owners."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from executor.host.replacefile import trusted_path
from tests.support.stoker_proc import REPO
from tests.support.users import STRANGER, needs_root, open_sandbox

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
