"""A descriptor made on fd 0, as a process whose stdin was closed gets one (the lowest free
number): code that takes `fd >= 0` for "a descriptor" must treat it as any other."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def made_on_fd_0(name: str, wanted: Callable[[object], bool] = lambda first: True) -> Iterator[None]:
    """For the `with`, the first descriptor `os.<name>` (`eventfd`, `open`) makes whose first
    argument `wanted` picks is moved to fd 0 (close-on-exec), and that number returned; this
    process's stdin is put back as the `with` ends."""
    made = getattr(os, name)
    moved = False

    def on_0(first: object, *args: object, **kwargs: object) -> int:
        nonlocal moved
        fd: int = made(first, *args, **kwargs)
        if moved or not wanted(first):
            return fd
        moved = True
        os.dup2(fd, 0, inheritable=False)
        os.close(fd)
        return 0
    stdin = os.dup(0)
    setattr(os, name, on_0)
    try:
        yield
    finally:
        setattr(os, name, made)
        os.dup2(stdin, 0)
        os.close(stdin)


def fd_0_names() -> str | None:
    """What fd 0 is (`/proc/self/fd/0`'s link); None when it is closed."""
    try:
        return os.readlink("/proc/self/fd/0")
    except FileNotFoundError:
        return None
