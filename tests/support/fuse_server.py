"""A FUSE file system that does not answer, for the tests of what a hung mount does to Stoker.

A role's FUSE mount (`allow_other`) inside a sandbox whose server stops answering is what
the tests need, and nothing more: `mount_hung(point)` mounts one whose server never reads
its requests (a stat of its root waits for ever, killably), `serve_held(point, hold_secs)`
one whose server answers INIT, then reads the first request and holds it unanswered for
`hold_secs` before it lets the connection go: the process that made the request waits in
D state meanwhile, SIGKILL or not (the kernel waits for an answer it sent out). The mount
syscall needs root, and the caller a mount namespace of its own (`unshare --mount
--propagation private`), so nothing outlives it. Standard library only.
"""
from __future__ import annotations

import ctypes
import os
import struct
import time

FUSE_INIT = 26
_IN_HEADER = struct.Struct("<IIQ")  # len, opcode, unique (the rest of the 40 bytes unread)
_OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
_INIT_OUT = struct.Struct("<IIIIHHI")  # protocol 7.22's reply: major, minor, readahead, flags, ...


def mount_hung(point: str) -> int:
    """Mount a FUSE file system at `point` whose server never answers; its descriptor (held
    open: the mount hangs until it is closed)."""
    fd = os.open("/dev/fuse", os.O_RDWR)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"stoker-test", point.encode(), b"fuse", 0, options) != 0:
        os.close(fd)
        raise OSError(ctypes.get_errno(), f"mount fuse on {point}: {os.strerror(ctypes.get_errno())}")
    return fd


def serve_held(point: str, hold_secs: float, ready: str) -> None:
    """Mount at `point`, answer INIT, write `ready` once the first request is read; hold it
    `hold_secs`, then close the connection (every request waiting ends with ENOTCONN)."""
    fd = mount_hung(point)
    request = os.read(fd, 1 << 20)
    _, opcode, unique = _IN_HEADER.unpack_from(request)
    if opcode != FUSE_INIT:
        raise RuntimeError(f"the first FUSE request is {opcode}, not INIT")
    reply = _INIT_OUT.pack(7, 22, 0, 0, 0, 0, 4096)
    os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size + len(reply), 0, unique) + reply)
    os.read(fd, 1 << 20)  # the first request after INIT: never answered
    with open(ready, "w") as f:
        f.write("held\n")
    time.sleep(hold_secs)
    os.close(fd)
