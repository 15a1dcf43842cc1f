"""Throwaway Unix users for the tests that run a task as its role (root only).

`throwaway_user()` makes a user `stkr-XXXXXXXX` (no home, no login shell) with one
supplementary group of its own, and removes both afterwards, also on failure.
`as_nobody(ask)` runs `ask` in a forked child as the user and group nobody (65534) and
returns the text it returned (`as_user(uid, gid, ask)`: as another user; `STRANGER`, a uid
and gid no password or group entry names, as a container's arbitrary uid). `stoker_as(uid,
gid)` is the command line that runs this checkout's `stoker` as that user (`setpriv`),
with a Python it may run (the tests' own may live under root's 0700 home), or None.
`grant_write(directory, uid)` gives a user write access by an ACL (`setfacl -m`).
`open_sandbox()` is a directory such a user can reach (`open_agent_sim()`: an agent
simulator with such a sandbox): pytest's tmp_path lives under
root's 0700 /tmp/pytest-of-root, so a task that runs as another user needs a sandbox whose
parents it may traverse.
"""
from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.agent_sim import AgentSimulator

REPO = Path(__file__).resolve().parents[2]

STRANGER = 4242420  # no password or group entry: a container's arbitrary uid (and gid)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")


@contextlib.contextmanager
def throwaway_user() -> Iterator[tuple[pwd.struct_passwd, grp.struct_group]]:
    tag = uuid.uuid4().hex[:8]
    user, group = f"stkr-{tag}", f"stkr-g-{tag}"
    subprocess.run(["groupadd", group], check=True, capture_output=True, timeout=30)
    try:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--groups", group, user],
                       check=True, capture_output=True, timeout=30)
        try:
            yield pwd.getpwnam(user), grp.getgrnam(group)
        finally:
            subprocess.run(["userdel", user], capture_output=True, timeout=30)
    finally:
        subprocess.run(["groupdel", group], capture_output=True, timeout=30)


@contextlib.contextmanager
def open_sandbox() -> Iterator[Path]:
    """A fresh directory under /tmp (whose parents every user may traverse), removed after."""
    path = Path(tempfile.mkdtemp(prefix="stoker-role-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def open_agent_sim() -> Iterator[AgentSimulator]:
    """An agent simulator whose sandbox (`open_sandbox`) a task's role may reach; on the way
    out it is closed, what its task left is killed, and its executor log must hold no
    traceback."""
    from tests.support.agent_sim import AgentSimulator
    from tests.support.stoker_proc import kill_leftovers, task_pids

    with open_sandbox() as sandbox:
        sim = AgentSimulator(sandbox=sandbox)
        try:
            yield sim
        finally:  # a failed test too: no executor or task process may outlive it (nor its user)
            sim.close()
            kill_leftovers(task_pids(sandbox))
        assert "Traceback" not in sim.executor_log(), sim.executor_log()[-3000:]


def as_nobody(ask: Callable[[], str]) -> str:
    """What `ask()` returns when run as nobody (uid and gid 65534), in a forked child."""
    return as_user(65534, 65534, ask)


def as_user(uid: int, gid: int, ask: Callable[[], str]) -> str:
    """What `ask()` returns when run as `uid` and `gid` (no other group), in a forked child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: that user, asking once
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.write(w, ask().encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


def stoker_as(uid: int, gid: int) -> list[str] | None:
    """`python -m executor` as `uid` and `gid` (no other group: setpriv), run by a Python of
    this version that user may run, importing this checkout and the tests' packages; None
    when there is no such Python (or no setpriv)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    packages = (p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p))  # not a stdlib
    path = os.pathsep.join(dict.fromkeys([unsplit(REPO), *packages]))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in dict.fromkeys([sys.executable, os.path.realpath(sys.executable),
                                 f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]):
        argv = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
                "/usr/bin/env", f"PYTHONPATH={path}", python]
        probe = subprocess.run([*argv, "-c", "import executor, attrs"], capture_output=True, cwd="/", timeout=30)
        if probe.returncode == 0:
            return [*argv, "-m", "executor"]
    return None


def unsplit(path: Path) -> str:
    """`path` as a PYTHONPATH entry: itself, or, when it holds the separator (a checkout at
    `/a:b/c`, which PYTHONPATH splits in two), a symlink to it in the temp directory without
    one (this process's, removed as it exits). Was: the other user's Python, which has not
    the venv's editable install, could not import the checkout, and the test skipped."""
    if os.pathsep not in str(path):
        return str(path)
    link = Path(tempfile.gettempdir()) / f"stoker-checkout-{os.getpid()}"
    if not link.is_symlink():
        link.symlink_to(path)
        atexit.register(link.unlink, missing_ok=True)
    return str(link)


def grant_write(directory: Path, uid: int) -> None:
    """`setfacl -m u:UID:rwx DIRECTORY` (its access ACL, as the kernel keeps it: version 2,
    then (tag, permissions, id) entries in order); skips where the file system has none."""
    entries = [(0x01, 7, -1), (0x02, 7, uid), (0x04, 5, -1), (0x10, 7, -1), (0x20, 5, -1)]
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident & 0xFFFFFFFF)
                                           for tag, perm, ident in entries)
    try:
        os.setxattr(directory, "system.posix_acl_access", blob)
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs here: {exc.strerror}")
