"""`stoker run`'s sandbox and the directories above it (executor/local/planfiles.py,
`open_above`): no level above the sandbox another user could change, wherever the path the
user gave leads, and a refusal that says what would make the directory fit; the sandbox it
makes never open to other users' writes, one given that is, or is another user's, refused."""
from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from executor.cli import launch
from executor.host.replacefile import untrusted_level
from executor.local import planfiles, runstart
from executor.local import run as local_run
from tests.support.users import grant_write, needs_root, throwaway_user


def test_a_sandbox_named_through_the_user_s_own_symlink_is_checked_where_it_leads(tmp_path: Path) -> None:
    """`stoker run --sandbox ~/sb`, ~/sb the user's own link to a directory of theirs in a
    directory every user may write (a group's project directory, not sticky): the levels
    above the link were checked, not those above the directory it leads to, and the run
    used that directory (by its resolved path, for every attempt), which another user could
    rename away and replace with one of theirs. Refused now, as the directory named itself
    is; the early start leaves it to the run."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    (shared / "mine").mkdir(mode=0o755)
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "sb").symlink_to(shared / "mine")
    with pytest.raises(runstart.SandboxError) as refused:
        runstart.make_sandbox(str(home / "sb"), "job")
    assert str(refused.value).startswith(
        f"sandbox '{home / 'sb'}' is in a directory another user could change ({shared} may be "
        f"written by others (mode 777)")
    (home / "new").symlink_to(shared / "new")  # a link to a sandbox not made yet
    with pytest.raises(PermissionError) as early:
        launch._make_sandbox(str(home / "new"), "job")
    assert early.value.args == (str(home / "new"),) and sorted(os.listdir(shared)) == ["mine"]
    os.chmod(shared, 0o1777)
    assert runstart.make_sandbox(str(home / "sb"), "job") == shared / "mine"


def test_the_early_start_s_sandbox_with_none_given_is_named_as_stoker_run_names_it_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    made = Path(launch._make_sandbox(None, "web"))
    assert made.parent == tmp_path.resolve() and made.is_dir() and planfiles.is_sandbox_name(made.name, "web")


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another user or group needs root to make")
def test_a_refusal_names_the_group_or_user_and_what_would_do(tmp_path: Path) -> None:
    """A project directory a group may write (setgid 2775, as shared hosts have them): the
    refusal said `may be written by others` (it is the group, not all), and `use a directory
    of your own`, which a directory of one's own inside it is not (its level above is still
    the group's). It names the group, or the user who owns the level, and says that every
    level must be only the user's or root's to change, a sticky one (chmod +t) being fine."""
    project = tmp_path / "project"
    project.mkdir()
    os.chown(project, 0, 65534)
    os.chmod(project, 0o2775)
    (project / "mine").mkdir(mode=0o755)
    with pytest.raises(runstart.SandboxError) as refused:
        runstart.make_sandbox(str(project / "mine" / "sb"), "job")
    group = grp.getgrgid(65534).gr_name
    assert str(refused.value) == (
        f"sandbox '{project / 'mine' / 'sb'}' is in a directory another user could change "
        f"({project} may be written by the group {group} (gid 65534), mode 2775): the task "
        f"would run what another user puts in it (bash sources its .thermos_profile before "
        f"every process); use a directory no one but you and root may change, at every level "
        f"(one others may write must be sticky, chmod +t, as /tmp is)")
    os.chmod(project, 0o3775)
    assert runstart.make_sandbox(str(project / "mine" / "sb"), "job") == project / "mine" / "sb"
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o1777)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(runstart.SandboxError, match=rf"^sandbox '{theirs}/sb' is in a directory "
                       rf"another user could change \({theirs} belongs to "
                       rf"{pwd.getpwuid(65534).pw_name} \(uid 65534\)\): "):
        runstart.make_sandbox(str(theirs / "sb"), "job")


def test_a_directory_an_acl_lets_another_user_write_is_another_user_s_to_change(tmp_path: Path) -> None:
    """`setfacl -m u:bob:rwx ~/share` (drwxrwxr-x+, the group bits the ACL's mask): the mode
    read as group-writable by the user's own group, so `--sandbox ~/share/sb` was accepted,
    and bob renamed the sandbox away (by hand, with two users). A directory whose ACL lets a
    named user, or a group not the user's own, write is open to others now: above the
    sandbox, and the sandbox itself."""
    share = tmp_path / "share"
    share.mkdir(mode=0o755)
    grant_write(share, 65534)
    with pytest.raises(runstart.SandboxError, match=rf"^sandbox '{share}/sb' is in a directory another user "
                       rf"could change \({share} may be written by others \(mode 775, an ACL\)\)"):
        runstart.make_sandbox(str(share / "sb"), "job")
    with pytest.raises(runstart.SandboxError, match=rf"^sandbox '{share}' may be written by other users"):
        runstart.make_sandbox(str(share), "job")
    own = tmp_path / "own"
    own.mkdir(mode=0o755)
    os.chmod(own, 0o775)  # the user's own group, no ACL: as before
    assert runstart.make_sandbox(str(own / "sb"), "job") == own / "sb"


@needs_root
def test_the_user_s_own_group_is_not_theirs_alone_when_it_lists_another_member(tmp_path: Path) -> None:
    """`usermod -aG alice bob` (bob let into alice's files), alice's umask 002: a directory
    of group alice, 0775, read as written by alice's own group only, so it was trusted (a
    sandbox's level above, the registry's root, the plan cache), though bob may rename what
    is in it. A group that lists another member is not the user's own."""
    with throwaway_user() as (member, group):
        shared = tmp_path / "shared"
        shared.mkdir()
        os.chown(shared, 0, group.gr_gid)
        os.chmod(shared, 0o775)
        assert untrusted_level(str(shared / "sb"), euid=0, egid=group.gr_gid) == (
            f"{shared} may be written by the group {group.gr_name} (gid {group.gr_gid}), mode 775")
        assert member.pw_name in group.gr_mem  # the member it lists, not the caller
        alone = tmp_path / "alone"
        alone.mkdir()
        os.chmod(alone, 0o775)  # root's group, which lists no one
        assert untrusted_level(str(alone / "sb"), euid=0, egid=0) == ""


def test_a_sandbox_it_makes_is_never_open_to_other_users_writes(tmp_path):
    """Under a umask of 0 (a daemon's, a careless profile's) `stoker run` made its sandbox,
    and every missing level above it, 0777: any user of the host could plant a
    `.thermos_profile` there, which bash sources as the task's user before every process,
    or rename the sandbox away. Each level it makes (and the early start's new sandbox) is
    now 0755 at most; the umask still narrows it."""
    old = os.umask(0)
    try:
        made = local_run.make_sandbox(str(tmp_path / "a" / "b" / "sandbox"), "job")
        early = launch._make_sandbox(str(tmp_path / "early"), "job")
        os.umask(0o077)
        private = local_run.make_sandbox(str(tmp_path / "c" / "sandbox"), "job")
    finally:
        os.umask(old)
    modes = {str(path.relative_to(tmp_path)): oct(path.stat().st_mode & 0o777)
             for path in (tmp_path / "a", tmp_path / "a" / "b", made, Path(early), tmp_path / "c", private)}
    assert modes == {"a": "0o755", "a/b": "0o755", "a/b/sandbox": "0o755", "early": "0o755",
                     "c": "0o700", "c/sandbox": "0o700"}


def test_a_sandbox_another_user_could_plant_files_in_is_refused(tmp_path):
    """`sudo stoker run job.aurora --sandbox ~alice/sb` (or any user's run in a directory of
    another's, or in one all may write: `--sandbox /tmp`) ran the task there: bash sources
    the `.thermos_profile` that user put there before every process, as the task's user
    (root). Now it is one error naming the owner or the mode."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(runstart.SandboxError) as refused:
        local_run.make_sandbox(str(shared), "job")
    assert str(refused.value) == (
        f"sandbox '{shared}' may be written by other users (mode 1777): the task would run what "
        f"another user puts in it (bash sources its .thermos_profile before every process); use "
        f"a directory of your own")
    os.chmod(shared, 0o755)
    assert local_run.make_sandbox(str(shared), "job") == shared
    if os.geteuid() == 0:
        os.chown(shared, 65534, 65534)
        with pytest.raises(runstart.SandboxError, match=rf"^sandbox '{shared}' belongs to nobody "
                           r"\(uid 65534\), not root \(uid 0\): the task would run what another user"):
            local_run.make_sandbox(str(shared), "job")


def test_a_sandbox_in_a_directory_another_user_could_change_is_refused(tmp_path):
    """`stoker run --sandbox DIR/sb`, DIR another user's (or one all may write, not sticky):
    that user renamed sb away while the service ran, put a directory of theirs (0777) with a
    `.thermos_profile` in its place, and the next attempt ran their code as the task's user
    (alice's code ran as bob, by hand). Refused now, before anything is made; a sticky one
    (/tmp) is fine: no one else may rename what is ours in it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(runstart.SandboxError) as refused:
        local_run.make_sandbox(str(shared / "sb"), "job")
    assert str(refused.value).startswith(
        f"sandbox '{shared / 'sb'}' is in a directory another user could change ({shared} may be "
        f"written by others (mode 777)): the task would run what another user puts in it")
    with pytest.raises(PermissionError):  # nor by the early start, which leaves it to the run
        launch._make_sandbox(str(shared / "early"), "job")
    assert os.listdir(shared) == []
    os.chmod(shared, 0o1777)
    assert local_run.make_sandbox(str(shared / "sb"), "job") == shared / "sb"


@pytest.mark.skipif(os.geteuid() != 0, reason="another user's symlink needs root to make")
def test_a_sandbox_reached_through_another_user_s_symlink_is_refused(tmp_path):
    """`sudo stoker run job.aurora --sandbox /tmp/sb`, where another user had made /tmp/sb a
    symlink to a directory of root's: the task ran there as root, writing its files into it
    (where fs.protected_symlinks is 0, as in many containers). Refused now, naming the link."""
    target = tmp_path / "roots"
    target.mkdir(mode=0o755)
    link = tmp_path / "sb"
    link.symlink_to(target)
    os.lchown(link, 65534, 65534)
    with pytest.raises(runstart.SandboxError) as refused:
        local_run.make_sandbox(str(link / "inner"), "job")
    assert str(refused.value).startswith(f"sandbox '{link / 'inner'}' is reached through {link}, a symlink "
                                         f"of nobody (uid 65534): the task would run what another user")
    with pytest.raises(PermissionError):  # nor by the early start, which leaves it to the run
        launch._make_sandbox(str(link / "early"), "job")
    assert os.listdir(target) == []  # nothing made there
    os.lchown(link, 0, 0)  # root's own symlink: followed
    assert local_run.make_sandbox(str(link), "job") == target
