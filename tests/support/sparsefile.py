"""A sparse file written part by part, and whether the file system keeps its holes (the
observer's log range tests: a task's log extended with `truncate -s 20G`)."""
from __future__ import annotations

import os
from pathlib import Path

GIB = 1 << 30


def write_parts(path: Path, parts: tuple[bytes | int, ...]) -> int:
    """`path` made of `parts` in turn (bytes written; an int: the file extended to that size,
    a hole); its size."""
    with open(path, "wb") as out:
        for part in parts:
            if isinstance(part, int):
                out.truncate(part)
                out.seek(part)
            else:
                out.write(part)
        return out.tell()


def holes_here(directory: Path) -> bool:
    """Whether a file in `directory` extended by a GiB holds a hole, not a GiB of zeros."""
    probe = directory / "probe"
    with open(probe, "wb") as out:
        out.truncate(GIB)
    try:
        with open(probe, "rb") as f:
            return os.lseek(f.fileno(), 0, os.SEEK_DATA) < 0
    except OSError:
        return True  # ENXIO: all of it a hole
    finally:
        probe.unlink()
