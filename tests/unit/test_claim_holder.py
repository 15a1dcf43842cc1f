"""Which process /proc/locks names as the holder of a port's claim (a byte of the claims
file): `executor.host.lock.lock_holder_listed`, read from lines as the kernel writes them."""
from __future__ import annotations

import os

from executor.host.lock import lock_holder_listed

DEVICE = os.makedev(0xFE, 0x01)
INODE = 260072


def _stat(device: int = DEVICE, inode: int = INODE) -> os.stat_result:
    return os.stat_result((0o100600, inode, device, 1, 0, 0, 0, 0, 0, 0))


def test_a_lock_on_another_file_system_s_file_of_the_same_inode_is_not_the_holder():
    """Matched by inode alone, a whole-file lock (0 EOF: sqlite's, a lockfile's) on a file of
    another file system that has the claims file's inode number was named as the claim's holder,
    a process that never opened the claims file, when the kernel listed it first."""
    lines = [b"1: POSIX  ADVISORY  WRITE 111 00:1a:260072 0 EOF",
             b"2: POSIX  ADVISORY  WRITE 222 fe:01:260072 40001 40001"]
    assert lock_holder_listed(lines, _stat(), 40001) == 222


def test_the_holder_is_found_by_inode_where_the_device_differs_from_st_dev():
    """On btrfs (a subvolume's anonymous device) or overlayfs, /proc/locks' device is not
    `st_dev`: a lock there is found by its inode and byte."""
    lines = [b"1: POSIX  ADVISORY  WRITE 333 00:2f:260072 40001 40001"]
    assert lock_holder_listed(lines, _stat(), 40001) == 333


def test_a_lock_not_covering_the_byte_a_waiter_an_ofd_lock_and_a_flock_name_no_holder():
    lines = [b"1: POSIX  ADVISORY  WRITE 444 fe:01:260072 40002 40010",
             b"1: -> POSIX  ADVISORY  WRITE 555 fe:01:260072 40001 40001",
             b"2: FLOCK  ADVISORY  WRITE 666 fe:01:260072 0 EOF",
             b"3: OFDLCK ADVISORY  WRITE -1 fe:01:260072 40001 40001"]
    assert lock_holder_listed(lines, _stat(), 40001) == -1
    assert lock_holder_listed(lines[:3], _stat(), 40001) == 0
