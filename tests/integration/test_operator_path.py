"""`executor/host/operatorpath.py`: the sandbox an operator's path names. Whose symlinks may
lead where (the caller's own, root's, the directory's owner's; another user's only to a
directory of that user's), a foreign link met in the middle of the path or of another
link's target, the words that name it, the kernel's limit of 40 links, and a relative path
walked from the working directory. The callers other than root are this process with its
effective uid switched for the one call (`effective_user`)."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host.operatorpath import MAX_LINKS, ForeignLink, open_sandbox
from tests.support.users import STRANGER, effective_user, needs_root

pytestmark = needs_root
ALICE, BOB = STRANGER, STRANGER + 1  # no password entry: named "uid N"


@pytest.fixture
def top() -> Iterator[Path]:
    """A directory every user may traverse (tmp_path's parents are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="stoker-operatorpath-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dir(path: Path, uid: int) -> Path:
    path.mkdir(parents=True, mode=0o755)
    os.chown(path, uid, uid)
    return path


def _link(path: Path, target: str | Path, uid: int) -> Path:
    path.symlink_to(target)
    os.lchown(path, uid, uid)
    return path


def _reaches(path: str | Path, expected: Path) -> bool:
    fd = open_sandbox(path)
    try:
        return os.path.samestat(os.fstat(fd), os.stat(expected))
    finally:
        os.close(fd)


def test_a_caller_s_own_link_and_root_s_lead_anywhere(top):
    bobs = _dir(top / "bob", BOB)
    mine, roots = _link(top / "alice-link", bobs, ALICE), _link(top / "root-link", bobs, 0)
    with effective_user(ALICE):
        assert _reaches(mine, bobs)
        assert _reaches(roots, bobs)
    with pytest.raises(ForeignLink):
        open_sandbox(mine)  # root is not alice: her link to bob's directory is refused


def test_another_user_s_link_leads_only_to_that_user_s_directory(top):
    bobs = _dir(top / "bob", BOB)
    alices = _dir(top / "alice", ALICE)
    to_bob, to_own = _link(top / "alice-to-bob", bobs, ALICE), _link(top / "alice-to-alice", alices, ALICE)
    assert _reaches(to_own, alices)
    with pytest.raises(ForeignLink) as refused:
        open_sandbox(to_bob)
    assert refused.value.errno == errno.EPERM
    assert str(refused.value) == (
        f"[Errno 1] {to_bob} is a symlink of uid {ALICE} to a directory of uid {BOB}: name the sandbox "
        "itself, by a path of its owner's or root's")


def test_a_foreign_link_in_the_middle_of_the_path_is_named_as_the_level_it_is_reached_through(top):
    _dir(top / "bob" / "sandbox", BOB)
    _link(top / "via", top / "bob", ALICE)
    path = top / "via" / "sandbox"
    with pytest.raises(ForeignLink) as refused:
        open_sandbox(path)
    assert str(refused.value) == (
        f"[Errno 1] {path} is reached through {top}/via, a symlink of uid {ALICE} to a directory of "
        f"uid {BOB}: name the sandbox itself, by a path of its owner's or root's")


def test_a_foreign_link_met_inside_another_link_s_target_is_refused(top):
    _dir(top / "bob" / "sandbox", BOB)
    _link(top / "via", "bob", ALICE)
    root_link = _link(top / "root-link", "via/sandbox", 0)  # root's own link, through alice's
    with pytest.raises(ForeignLink) as through_root_s:
        open_sandbox(root_link)
    assert f"is reached through {top}/via, a symlink of uid {ALICE}" in str(through_root_s.value)
    after_absolute = _link(top / "abs", f"{top}/via/sandbox", 0)
    with pytest.raises(ForeignLink) as after_an_absolute:
        open_sandbox(after_absolute)
    assert str(after_an_absolute.value).startswith(f"[Errno 1] {after_absolute} is reached through {top}/via, ")


def test_a_relative_path_is_walked_from_the_working_directory_and_named_from_it(top, monkeypatch):
    _dir(top / "a" / "bob" / "sandbox", BOB)
    _link(top / "a" / "via", "bob", ALICE)
    (top / "a" / "own").mkdir()
    monkeypatch.chdir(top / "a")
    assert _reaches("own", top / "a" / "own")
    assert _reaches("./bob/./sandbox", top / "a" / "bob" / "sandbox")
    with pytest.raises(ForeignLink) as refused:
        open_sandbox("./via/sandbox")
    assert str(refused.value).startswith(f"[Errno 1] ./via/sandbox is reached through {top}/a/via, ")


def test_forty_links_are_followed_and_the_forty_first_is_a_loop(top):
    real = _dir(top / "real", 0)
    previous = real
    for number in range(MAX_LINKS):
        previous = _link(top / f"l{number}", previous.name, 0)
    assert MAX_LINKS == 40 and _reaches(previous, real)
    one_more = _link(top / "one-more", previous.name, 0)
    with pytest.raises(OSError) as loop:
        open_sandbox(one_more)
    assert str(loop.value) == f"[Errno 40] Too many levels of symbolic links: '{one_more}'"
