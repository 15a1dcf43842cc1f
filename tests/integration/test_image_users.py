"""The task's user and group written into an image's /etc (executor/mesos/imageusers.py), on
real files: Thermos' checks of a user or group the image already has under another name or
id (their entries read as the image's own glibc reads them: its `id` is the oracle), an image
with no /etc/group or gshadow, a last line without its newline, and a symlink
where a database should be (never followed: the file it names, outside the image, stays as
it was). The whole launch of an image task is tests/integration/test_image_hostile.py's."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.mesos.imageusers import UserDbError, ensure_group, ensure_user
from tests.support.rootfs import copy_rootfs, session_rootfs


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return session_rootfs(tmp_path_factory)


@pytest.fixture
def etc(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An image's /etc (empty) and a descriptor of it, as imagefs.py opens it."""
    path = tmp_path / "taskfs" / "etc"
    path.mkdir(parents=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        yield path, fd
    finally:
        os.close(fd)


def test_a_group_name_the_image_has_with_another_id_is_refused_in_thermos_words(etc):
    path, fd = etc
    (path / "group").write_text("root:x:0:\nstaff:x:50:\n")
    with pytest.raises(UserDbError) as refused:
        ensure_group(fd, "staff", 1000)
    assert str(refused.value) == "Group id result staff:x:50: from image does not match name staff and id 1000"
    assert (path / "group").read_text() == "root:x:0:\nstaff:x:50:\n"


def test_a_refusal_shows_the_image_s_bytes_escaped(etc):
    # (was: a byte not UTF-8 went into the TASK_FAILED message as a lone surrogate escape,
    # which Mesos' JSON parser refuses; a tab as itself)
    path, fd = etc
    (path / "group").write_bytes(b"staff:x:50:a\xff\tb\n")
    with pytest.raises(UserDbError) as refused:
        ensure_group(fd, "staff", 1000)
    assert str(refused.value) == ("Group id result staff:x:50:a\\xff\\tb from image does not match name staff "
                                  "and id 1000")


def test_a_group_id_the_image_gives_another_name_is_refused_naming_both(etc):
    path, fd = etc
    (path / "group").write_text("wheel:x:1000:\n")
    with pytest.raises(UserDbError, match=r"^Error when getting group id for name staff in task image: its "
                                          r"/etc/group has gid 1000 under another name and no group staff$"):
        ensure_group(fd, "staff", 1000)


def test_a_user_id_the_image_gives_another_name_is_refused_naming_both(etc):
    path, fd = etc
    (path / "passwd").write_text("other:x:1000:1000::/home/other:/bin/sh\n")
    with pytest.raises(UserDbError, match=r"^Error when getting user id for name me in task image: its "
                                          r"/etc/passwd has uid 1000 under another name and no user me$"):
        ensure_user(fd, "me", 1000, 1000, "me")


def test_an_id_the_image_spells_with_a_zero_before_it_is_taken_all_the_same(etc):
    path, fd = etc
    (path / "passwd").write_text("other:x:01000:50::/home/other:/bin/sh\n")
    (path / "group").write_text("staff:x:001000:\n")
    with pytest.raises(UserDbError, match=r"^Error when getting group id for name me in task image: its "
                                          r"/etc/group has gid 1000 under another name and no group me$"):
        ensure_group(fd, "me", 1000)
    with pytest.raises(UserDbError, match=r"^Error when getting user id for name me in task image: its "
                                          r"/etc/passwd has uid 1000 under another name and no user me$"):
        ensure_user(fd, "me", 1000, 1000, "me")


@pytest.mark.parametrize("uid", ["-1", "4294967296", "1" * 5000])
def test_a_user_id_glibc_builds_read_differently_is_refused_never_a_crash(etc, uid):
    # upstream glibc reads these as 4294967295, Debian's refuses the line (and takes the next
    # `me`): the check refuses the user, as one of them would. (was: 5000 digits raised
    # ValueError, int()'s limit, and the executor failed the task as its own internal error)
    path, fd = etc
    (path / "passwd").write_text(f"me:x:{uid}:1000::/:/bin/sh\nme:x:1000:1000::/:/bin/sh\n")
    (path / "group").write_text("me:x:1000:\n")
    with pytest.raises(UserDbError) as refused:
        ensure_user(fd, "me", 1000, 1000, "me")
    assert str(refused.value) == (f"User group result uid={uid}(me) gid=1000 from task image does not start with "
                                  "expected prefix uid=1000(me) gid=1000(me) groups=")


def test_a_user_the_image_has_in_another_group_is_refused_with_what_id_would_say(etc):
    path, fd = etc
    (path / "passwd").write_text("me:x:1000:50::/home/me:/bin/sh\n")
    (path / "group").write_text("staff:x:50:\nme:x:1000:\n")
    with pytest.raises(UserDbError) as refused:
        ensure_user(fd, "me", 1000, 1000, "me")
    assert str(refused.value) == ("User group result uid=1000(me) gid=50(staff) from task image does not start "
                                  "with expected prefix uid=1000(me) gid=1000(me) groups=")


def test_an_image_without_group_or_shadow_files_gets_a_group_file_and_no_shadow_ones(etc):
    path, fd = etc
    old = os.umask(0o022)
    try:
        said = ensure_group(fd, "me", 1000)
    finally:
        os.umask(old)
    assert said == "created the group me(1000) in the task's filesystem's /etc/group"
    assert (path / "group").read_text() == "me:x:1000:\n"
    assert (path / "group").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in path.iterdir()) == ["group"]  # no gshadow made


def test_an_entry_goes_on_a_line_of_its_own_after_a_last_line_without_its_newline(etc):
    path, fd = etc
    (path / "passwd").write_text("root:x:0:0::/root:/bin/sh")
    (path / "shadow").write_text("root:*:19000::::::")
    ensure_user(fd, "me", 1000, 1000, "me")
    assert (path / "passwd").read_text() == "root:x:0:0::/root:/bin/sh\nme:x:1000:1000::/home/me:/bin/bash\n"
    assert (path / "shadow").read_text().splitlines()[1].startswith("me:!:")


@pytest.mark.parametrize("name", ["passwd", "shadow"])
def test_a_symlinked_user_database_is_refused_and_what_it_names_is_untouched(etc, tmp_path, name):
    path, fd = etc
    host = tmp_path / "host-file"
    host.write_text("root:x:0:0::/root:/bin/sh\n")
    if name == "shadow":
        (path / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (path / name).symlink_to(host)
    with pytest.raises(UserDbError, match=rf"^the image's /etc/{name} is a symlink \(never followed inside an image\)$"):
        ensure_user(fd, "me", 1000, 1000, "me")
    assert host.read_text() == "root:x:0:0::/root:/bin/sh\n"


# The image's passwd and group files, each one's entries read by the image's own glibc (`id`,
# getpwnam) as the check must read them; and whether `id me` there starts as Thermos asks
USER_FILES = {
    # a CR (or \x1c-\x1e) ends no line for glibc: the first `me` is the next line's, root
    "carriage-return": ("x:x:1:1:\rme:x:1000:1000::/:/bin/bash\nme:x:0:0::/root:/bin/bash\n", "", False),
    "record-separator": ("x:x:1:1:\x1eme:x:1000:1000::/:/bin/bash\nme:x:0:0::/root:/bin/bash\n", "", False),
    # blanks before a name are skipped: `me` is root, before the entry the check would see
    "leading-blanks": ("\t me:x:0:0::/root:/bin/bash\nme:x:1000:1000::/:/bin/bash\n", "", False),
    # a NUL ends the line's text: the gid is 1000
    "nul": ("me:x:1000:1000\0garbage\n", "", True),
    # the first group with the gid names it: `id me` says gid=1000(evil)
    "group-named-twice": ("me:x:1000:1000::/:/bin/bash\n", "evil:x:1000:\n", False),
    # likewise the first user with the uid: `id me` says uid=1000(alias)
    "uid-named-twice": ("alias:x:1000:1000::/:/bin/sh\nme:x:1000:1000::/:/bin/bash\n", "", False),
    # an id is a number: `id me` says uid=1000(me) gid=1000(me)
    "zero-padded-ids": ("me:x:01000:+1000::/:/bin/bash\n", "", True),
    # a line whose id is no number (none, a letter, a blank after it) is no entry: the next `me` is
    "unreadable-uid-first": ("me:x:abc:0::/:/bin/bash\nme:x:1000:1000::/:/bin/bash\n", "", True),
    "empty-uid-first": ("me:x::0::/:/bin/bash\nme:x:1000:1000::/:/bin/bash\n", "", True),
    "blank-after-gid-first": ("me:x:1000:0 ::/:/bin/bash\nme:x:1000:1000::/:/bin/bash\n", "", True),
    "no-gid-first": ("me:x:1000\nme:x:1000:1000::/:/bin/bash\n", "", True),
    "unreadable-group-first": ("me:x:1000:1000::/:/bin/bash\n", "me:x:0x3e8:\n", True),
    # nor does one with an unreadable gid name the uid
    "alias-with-unreadable-gid": ("alias:x:1000:zz::/:/bin/sh\nme:x:1000:1000::/:/bin/bash\n", "", True),
    # nor does a NIS `+`/`-` line name an id (getpwuid, getgrgid skip them)
    "nis-user-alias": ("+:x:1000:1000::/:/bin/sh\n-x:x:1000:1000::/:/bin/sh\nme:x:1000:1000::/:/bin/bash\n", "",
                       True),
    "nis-group-alias": ("me:x:1000:1000::/:/bin/bash\n", "+:x:1000:\n-x:x:1000:\n", True),
    # `-0` is 0: me is root
    "minus-zero": ("me:x:-0:1000::/:/bin/bash\n", "", False),
}


@pytest.mark.parametrize("passwd, group, starts_as_asked", USER_FILES.values(), ids=USER_FILES.keys())
def test_an_existing_user_is_checked_as_the_image_s_own_glibc_reads_its_files(rootfs, tmp_path, passwd, group,
                                                                                starts_as_asked):
    # (was: lines split by Python's splitlines, names taken with their blanks and the last group
    # of a gid: an image's `me` with uid 0 for its programs passed as me(1000); then ids compared
    # as strings, and the uid shown under the name asked, not its first entry's)
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    (taskfs / "etc/passwd").write_text(f"root:x:0:0::/root:/bin/bash\n{passwd}")
    (taskfs / "etc/group").write_text(f"root:x:0:\n{group}me:x:1000:\n")
    ran = subprocess.run(["chroot", str(taskfs), "id", "me"], capture_output=True, text=True, timeout=30, check=False)
    assert ran.stdout.startswith("uid=1000(me) gid=1000(me) groups=") is starts_as_asked, ran  # what Thermos asks
    fd = os.open(taskfs / "etc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        ensure_group(fd, "me", 1000)
        said = ensure_user(fd, "me", 1000, 1000, "me")
    except UserDbError as exc:
        said = str(exc)
    finally:
        os.close(fd)
    assert (said == "user me (1000) already exists in the task's filesystem") is starts_as_asked, said


# Lines the image's glibc takes for no entry (an id no number, a NIS `+`/`-` line) take no
# name or id: the task's user and group are added, and the image's `id` then shows them
NO_ENTRIES = {
    "unreadable-ids": ("other:x:1000:zz::/:/bin/sh\nme:x:zz:1000::/:/bin/sh\n", "staff:x:1000 :\nme:x:\n"),
    "nis-lines": ("+:x:1000:1000::/:/bin/sh\n-me:x:1000:1000::/:/bin/sh\n", "+:x:1000:\n-me:x:1000:\n"),
}


@pytest.mark.parametrize("passwd, group", NO_ENTRIES.values(), ids=NO_ENTRIES.keys())
def test_lines_the_image_s_glibc_skips_take_no_name_or_id(rootfs, tmp_path, passwd, group):
    # (was: refused, "its /etc/passwd has uid 1000 under another name", where useradd -R, which
    # reads the image's files through its glibc, adds the user)
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    (taskfs / "etc/passwd").write_text(f"root:x:0:0::/root:/bin/bash\n{passwd}")
    (taskfs / "etc/group").write_text(f"root:x:0:\n{group}")
    fd = os.open(taskfs / "etc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        said = [ensure_group(fd, "me", 1000), ensure_user(fd, "me", 1000, 1000, "me")]
    finally:
        os.close(fd)
    assert said == ["created the group me(1000) in the task's filesystem's /etc/group",
                    "created the user me(1000) in the task's filesystem's /etc/passwd"]
    ran = subprocess.run(["chroot", str(taskfs), "id", "me"], capture_output=True, text=True, timeout=30, check=False)
    assert ran.stdout.startswith("uid=1000(me) gid=1000(me) groups="), ran
