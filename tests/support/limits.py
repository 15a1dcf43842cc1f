"""Running out of something, for a test, without harming the machine.

Owns: `tmpfs(directory, size, inodes)`, a small tmpfs mounted on a directory of the test's
own, unmounted afterwards even when the test fails (the test is skipped, naming the reason,
where it may not mount), and `fill(directory)`, which writes a file until that file system
is full and returns it (`fill_inodes`: until no file can be made). Removing the file gives
the space back. `pids_cgroup()`, a pids cgroup of the test's own whose `pids.max` it sets,
every member killed and the cgroup removed afterwards. `no_descriptor_left()`: this
process's descriptor limit lowered and filled with /dev/null, given back afterwards.
`descriptors()` and `opened_since(before)`: what a call under test left open, whatever the
collector closes meanwhile; `closed(fd)`: whether a descriptor handed to the code under test
was closed by it.
`DATA_LIMIT_SET`: a data-size limit far above use, for a MemoryError a test raises to be the
host's (`executor.logs.memory_refused`), and `data_limit_set()`, this process under it.
`python_child(script, *args)`: a script run by this Python, so that what it patches or
refuses stays in that child.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import os
import resource
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import cgroups

# For a child script run by a test: every log line the child writes, kept in `lines` (INFO
# and above). Insert it into the script's text after `import logging`.
KEEP_LOG_LINES = """
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.INFO)
"""
# The same, each line as [level, message, whether it carries a traceback]
KEEP_LOG_RECORDS = KEEP_LOG_LINES.replace("lines.append(record.getMessage())",
                                          "lines.append([record.levelname, record.getMessage(), record.exc_info is not None])")


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


def _pids_parent() -> Path | None:
    """Where this host lets a test make a pids cgroup: the v1 pids hierarchy, or a v2 root
    that hands the pids controller down."""
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists():
        return v1
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        try:
            if "pids" in (root / "cgroup.subtree_control").read_text().split():
                return root
        except OSError:
            continue
    return None


@contextlib.contextmanager
def pids_cgroup() -> Iterator[Path]:
    """A new pids cgroup (`stoker-limits-*`) whose `pids.max` a test sets; every process
    in it is SIGKILLed and the cgroup removed afterwards, even when the test fails. Skips
    the test, naming the reason, where none can be made."""
    parent = _pids_parent()
    if parent is None:
        pytest.skip("no pids cgroup controller this test may use (neither cgroup v1's pids "
                    "hierarchy nor a v2 root that delegates pids)")
    directory = parent / f"stoker-limits-{uuid.uuid4().hex[:8]}"
    try:
        directory.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a pids cgroup in {parent}: {exc.strerror}")
    try:
        yield directory
    finally:
        cgroups.remove(str(directory))


@contextlib.contextmanager
def no_descriptor_left(free: int = 0) -> Iterator[None]:
    """This process with every descriptor its (lowered) limit allows taken (but `free`: a
    pipe's two, say): the next open, socket or pidfd_open fails with EMFILE; the descriptors
    closed and the limit given back afterwards, even when the test fails. The collector is run first and held off meanwhile:
    a finalizer of garbage an earlier test left (a file, a pipe) closing its descriptor would
    free one for the call under test (seen once on 3.12: the pidfd opened, no EMFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
        with contextlib.suppress(OSError):  # until every descriptor the limit allows is taken
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        for _ in range(free):
            os.close(held.pop())
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        if collecting:
            gc.enable()


# Put in a child's sitecustomize (or run by it): a data-size limit (ulimit -d) of 1 TiB, far
# above anything it maps, that a MemoryError the test raises there is blamed on; without a
# limit (nor strict overcommit) a MemoryError is taken for a bug's (`memory_refused`).
DATA_LIMIT_SET = """
import resource as _resource
_hard = _resource.getrlimit(_resource.RLIMIT_DATA)[1]
_resource.setrlimit(_resource.RLIMIT_DATA, (min(1 << 40, _hard) if _hard != _resource.RLIM_INFINITY else 1 << 40, _hard))
"""


def descriptors() -> frozenset[int]:
    """This process's open descriptors, after a collection. A test counting them compared
    numbers, and garbage an earlier test of the same worker left (a file, a socket) closes its
    descriptor when the collector takes it, which can be in the middle of the call under
    test: a CI run read 21 after 28 and failed. Compare sets with `opened_since`."""
    gc.collect()
    return frozenset(int(name) for name in os.listdir("/proc/self/fd"))


def closed(fd: int) -> bool:
    """Whether `fd` is closed now (read at once: no other thread of the test opens meanwhile)."""
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def opened_since(before: frozenset[int]) -> dict[int, str]:
    """The descriptors open now that were not in `before`, each with what it is open to (the
    assertion's message names the leak); {} when the call under test left none open. One
    closed meanwhile is no leak: it is left out."""
    left = {}
    for fd in sorted({int(name) for name in os.listdir("/proc/self/fd")} - before):
        with contextlib.suppress(OSError):
            left[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return left


@contextlib.contextmanager
def data_limit_set() -> Iterator[None]:
    """This process under DATA_LIMIT_SET's limit; the one it had given back afterwards."""
    limits = resource.getrlimit(resource.RLIMIT_DATA)
    exec(DATA_LIMIT_SET, {})
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, limits)


def python_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`script` run by this Python with `args`, ended with exit 0 (else its stderr's end)."""
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=40)
    assert done.returncode == 0, done.stderr[-3000:]
    return done
