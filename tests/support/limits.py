"""Running out of something, for a test, without harming the machine.

Owns: `tmpfs(directory, size, inodes)`, a small tmpfs mounted on a directory of the test's
own, unmounted afterwards even when the test fails (the test is skipped, naming the reason,
where it may not mount), and `fill(directory)`, which writes a file until that file system
is full and returns it. Removing the file gives the space back.
"""
from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(directory: Path, size: str = "64k", inodes: int | None = None) -> Iterator[Path]:
    """`directory` (made), with a tmpfs of `size` bytes (and at most `inodes` files)."""
    directory.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700" + (f",nr_inodes={inodes}" if inodes else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "this test needs a file system it can fill")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path, name: str = "filler") -> Path:
    """A file written in `directory` until its file system is full (ENOSPC)."""
    filler = directory / name
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def fill_inodes(directory: Path) -> list[Path]:
    """Empty files made in `directory` until no file can be created (ENOSPC)."""
    made: list[Path] = []
    try:
        while True:
            path = directory / f"inode-{len(made)}"
            path.touch()
            made.append(path)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    return made
