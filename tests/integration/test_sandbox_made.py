"""`runstart.make_sandbox` and `runstart.hold_sandbox` in this process: the sandbox `stoker run`
makes, or the one line that says why it cannot (an empty --sandbox, a file in its place, a
symbolic link to nothing or round a loop, a directory that user may not write), one whose own
group may write it taken, and the sandbox held for the run (its registry entry a `run`'s, an
early start's lock taken over) or refused (busy, `.stoker` not a directory). The commands' own
words for each are tests/e2e/test_cli_conventions.py's and test_quoted_paths.py's."""
from __future__ import annotations

import fcntl
import grp
import os
import pwd
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from config.words import quoted
from executor.host.registry import Registry
from executor.host.sandbox import LOCK_FILE
from executor.local.runstart import SandboxError, hold_sandbox, make_sandbox
from tests.support.limits import closed
from tests.support.users import as_nobody, needs_root, open_sandbox

pytestmark = pytest.mark.timeout(30)


def refusal(requested: str) -> str:
    with pytest.raises(SandboxError) as raised:
        make_sandbox(requested, "job")
    return str(raised.value)


def test_an_empty_sandbox_argument_is_no_directory():
    assert refusal("") == "cannot create sandbox '': No such file or directory"


def test_a_file_in_the_sandbox_s_place_or_above_it_is_named(tmp_path):
    (tmp_path / "f").write_text("")
    assert refusal(str(tmp_path / "f")) == f"sandbox '{tmp_path}/f' exists and is not a directory"
    assert refusal(str(tmp_path / "f" / "sb")) == (
        f"cannot create sandbox '{tmp_path}/f/sb': {tmp_path}/f is a regular file, not a directory")


def test_a_symbolic_link_that_leads_nowhere_says_where_it_leads(tmp_path):
    (tmp_path / "to-nothing").symlink_to("gone")
    (tmp_path / "round").symlink_to("about")
    (tmp_path / "about").symlink_to("round")
    (tmp_path / "to-a-link").symlink_to("to-nothing")
    said = {name: refusal(str(tmp_path / name)).split(": ", 1) for name in ("to-nothing", "round", "to-a-link")}
    assert said == {
        "to-nothing": [f"cannot create sandbox '{tmp_path}/to-nothing'",
                       "it is a symbolic link to 'gone', which does not exist"],
        "round": [f"cannot create sandbox '{tmp_path}/round'",
                  "it is a symbolic link to 'about', which leads round in a loop"],
        "to-a-link": [f"cannot create sandbox '{tmp_path}/to-a-link'",
                      f"it is a symbolic link to 'to-nothing', which leads to '{tmp_path}/gone', which does not exist"]}


def test_a_sandbox_made_is_the_resolved_path_and_one_its_own_group_may_write_is_taken(tmp_path):
    """Group-writable by the user's own group, which lists no other member: no one else's."""
    own = grp.getgrgid(os.getegid())
    if set(own.gr_mem) - {pwd.getpwuid(os.geteuid()).pw_name}:
        pytest.skip(f"this user's group {own.gr_name} lists other members")
    made = make_sandbox(str(tmp_path / "a" / ".." / "sb"), "job")
    assert made == tmp_path / "sb" and made.is_dir()
    (tmp_path / "shared").mkdir()
    os.chmod(tmp_path / "shared", 0o775)
    assert make_sandbox(str(tmp_path / "shared"), "job") == tmp_path / "shared"


@needs_root
def test_a_sandbox_the_user_may_not_write_is_named():
    """(Root may write it, and is refused it as another user's.)"""
    with open_sandbox() as top:
        os.chmod(top, 0o755)  # theirs to reach, not to change
        theirs = top / "theirs"
        theirs.mkdir(mode=0o555)
        os.chown(theirs, 65534, 65534)
        os.chmod(theirs, 0o555)
        said = as_nobody(lambda: refusal(str(theirs)))
        as_root = refusal(str(theirs))
        assert as_root.startswith(f"sandbox {quoted(str(theirs))} belongs to nobody (uid 65534), not root (uid 0): ")
    assert said == f"sandbox {quoted(str(theirs))} is not writable"


@pytest.fixture
def registry(tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600.0)


def flocked(sandbox: Path) -> int:
    """The sandbox's lock file, made and locked as an early start does."""
    (sandbox / ".stoker").mkdir(mode=0o700)
    fd = os.open(sandbox / ".stoker" / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_sandbox_held_is_a_run_s_and_takes_over_an_early_start_s_lock(tmp_path, registry):
    sandbox = tmp_path / "sb"
    sandbox.mkdir()
    held = flocked(sandbox)
    session = hold_sandbox(sandbox, registry, held, None)
    try:
        (entry,) = [listed.entry for listed in Registry(registry).entries()]
        assert (entry.sandbox, entry.front_end.value) == (str(sandbox), "run")
    finally:
        session.close()
    assert closed(held)


def test_a_sandbox_another_holds_or_with_no_stoker_directory_is_refused_in_one_line(tmp_path, registry):
    busy, plain = tmp_path / "busy", tmp_path / "plain"
    busy.mkdir()
    plain.mkdir()
    (plain / ".stoker").write_text("")
    held = flocked(busy)
    try:
        with pytest.raises(SandboxError) as raised:
            hold_sandbox(busy, registry, None, None)
    finally:
        os.close(held)
    assert str(raised.value).startswith(f"sandbox '{busy}' is held by another Stoker supervisor: ")
    with pytest.raises(SandboxError) as raised:
        hold_sandbox(plain, registry, None, None)
    assert str(raised.value) == f"cannot use sandbox '{plain}': .stoker: it is a regular file, not a directory"
