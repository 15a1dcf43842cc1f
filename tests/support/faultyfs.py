"""A small real ext4 that the test turns read-only or makes fail every I/O, on purpose.

`ext4(directory)` mounts a fresh 8 MiB ext4 (a sparse image beside `directory`, through a
loop device the kernel detaches at unmount) with `errors=remount-ro`, and yields an `Ext4`
whose `fail_read_only()` makes the kernel record a file-system error, as a disk fault
does: ext4 turns itself read-only under everything open on it (every write, sync, create
then fails with EROFS; a plain `mount -o remount,ro` refuses while a file is open for
writing), and whose `shut_down()` is ext4's shutdown ioctl (what xfstests' `godown`
does): every read, write and sync fails with EIO from then on, as on a disk that died.
Unmounted (lazily) and the image removed afterwards, failed test or not. Needs root and
the loop driver: a skip otherwise. Standard library only.

`flaky(directory)` is a file system whose writes fail for a while and then work again,
as on a disk (or a network file system) that has a bad moment: an ext2 mounted `sync` (so
that a write reaches the device before it returns) through a loop device whose sparse
image lies on a small tmpfs of its own. `fail()` fills that tmpfs: every write that needs
a new block of the image fails with EIO; `recover()` frees it: the first write after that
still fails (the kernel reports the error it kept once), the next ones work.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
SHUTDOWN_NOLOGFLUSH = 2  # what a dead disk does: nothing more reaches it


class Ext4:
    def __init__(self, mount_point: Path, device: str, image: Path) -> None:
        self.path = mount_point
        self.device = device
        self.image = image

    def repaired(self) -> None:
        """What an operator does after the fault: unmount, `e2fsck -fy`, mount again (every
        file on it must be closed first)."""
        subprocess.run(["umount", str(self.path)], check=True, capture_output=True)
        checked = subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, text=True)
        assert checked.returncode in (0, 1), checked.stdout + checked.stderr  # 1: errors corrected
        subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path)],
                       check=True, capture_output=True)
        self.device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(self.path)],
                                     capture_output=True, text=True, check=True).stdout.strip()

    def fail_read_only(self) -> None:
        """A file-system error, as ext4 records one on a disk fault: with `errors=remount-ro`
        the file system turns read-only at once, files open for writing or not."""
        trigger = Path(f"/sys/fs/ext4/{os.path.basename(self.device)}/trigger_fs_error")
        if not trigger.exists():  # a kernel older than 4.4
            pytest.skip(f"this kernel cannot record a file-system error on purpose (no {trigger})")
        trigger.write_text("stoker test: a disk fault\n")

    def shut_down(self) -> None:
        """Every later read, write and sync on the file system fails with EIO."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
        finally:
            os.close(fd)


def _skip_unless(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        pytest.skip(f"cannot {what} here ({(done.stderr or '').strip() or done.returncode}); "
                    "this test needs a small ext4 of its own (root and the loop driver)")


@contextmanager
def ext4(directory: Path, size_mib: int = 8, whole_seconds: bool = False) -> Iterator[Ext4]:
    """`directory` (made), with a fresh ext4 mounted on it (see the module's docstring);
    `whole_seconds`: its inodes of 128 bytes, which keep no fraction of a second in a file's
    times (as ext3, and ext4 made so, do), so that a change in the second of the one before
    leaves them as they were."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("this test needs root and mkfs.ext4 to make a small ext4 of its own")
    directory.mkdir(parents=True, exist_ok=True)
    image = directory.with_name(directory.name + ".img")
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    try:
        small = ["-I", "128"] if whole_seconds else []
        _skip_unless(subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", *small, str(image)],
                                    capture_output=True, text=True), "make an ext4")
        _skip_unless(subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(directory)],
                                    capture_output=True, text=True), "mount a loop device")
        try:
            device = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(directory)],
                                    capture_output=True, text=True, check=True).stdout.strip()
            yield Ext4(directory, device, image)
        finally:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)
    finally:
        image.unlink(missing_ok=True)


class Flaky:
    def __init__(self, mount_point: Path, backing: Path, options: str) -> None:
        self.path = mount_point
        self._filler = backing / "filler"
        self._image, self._options = backing / "image", options

    def remounted(self) -> None:
        """Unmount and mount again (every file on it closed first): what is read afterwards
        comes from the device, not from pages the kernel kept."""
        subprocess.run(["umount", str(self.path)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", self._options, str(self._image), str(self.path)],
                       check=True, capture_output=True)

    def fail(self) -> None:
        with open(self._filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:  # until the tmpfs is full: ENOSPC
                f.write(bytes(65536))

    def recover(self) -> None:
        self._filler.unlink(missing_ok=True)


@contextmanager
def flaky(directory: Path, sync: bool = True) -> Iterator[Flaky]:
    """`directory` (made), with a file system that `fail()`s and `recover()`s (see above);
    not `sync`: a write lands in the page cache, and only a sync reports the error."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext2") is None:
        pytest.skip("this test needs root and mkfs.ext2 to make a small file system of its own")
    backing = directory.with_name(directory.name + ".backing")
    for made in (directory, backing):
        made.mkdir(parents=True, exist_ok=True)
    _skip_unless(subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(backing)],
                                capture_output=True, text=True), "mount a tmpfs")
    try:
        image = backing / "image"
        with open(image, "wb") as f:
            f.truncate(32 << 20)
        _skip_unless(subprocess.run(["mkfs.ext2", "-q", "-F", "-b", "1024", str(image)], capture_output=True, text=True),
                     "make an ext2")
        options = "loop,errors=continue" + (",sync" if sync else "")
        _skip_unless(subprocess.run(["mount", "-o", options, str(image), str(directory)],
                                    capture_output=True, text=True), "mount a loop device")
        try:
            yield Flaky(directory, backing, options)
        finally:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)
    finally:
        subprocess.run(["umount", "-l", str(backing)], capture_output=True)
