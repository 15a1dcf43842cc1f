"""Throwaway Unix users for the tests that run a task as its role (root only).

`throwaway_user()` makes a user `stkr-XXXXXXXX` (no home, no login shell) with one
supplementary group of its own, and removes both afterwards, also on failure.
`as_nobody(ask)` runs `ask` in a forked child as the user and group nobody (65534) and
returns the text it returned (`as_user(uid, gid, ask)`: as another user; `STRANGER`, a uid
and gid no password or group entry names, as a container's arbitrary uid). `stoker_as(uid,
gid)` is the command line that runs this checkout's `stoker` as that user (`setpriv`),
with a Python it may run (the tests' own may live under root's 0700 home), or None.
Where that user may not read the checkout or the venv (CI's clone under root's 0700
`mktemp -d`), it runs `readable_copy()`, a copy of the code it imports that every user may
read, and `reachable(path, command)` names a script of the checkout in that copy.
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
import importlib.metadata
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
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


@contextlib.contextmanager
def effective_user(uid: int) -> Iterator[None]:
    """This process's effective user `uid` for the block (its real one stays root, so the
    block's end takes root back): every thread of it is that user meanwhile."""
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


def stoker_as(uid: int, gid: int) -> list[str] | None:
    """`python -m executor` as `uid` and `gid` (no other group: setpriv), run by a Python of
    this version that user may run, importing this checkout and the tests' packages; None
    when there is no such Python (or no setpriv). Where that user cannot read the checkout
    or the venv (CI's clone under root's 0700 `mktemp -d`), it imports `readable_copy()`."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    packages = (p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p))  # not a stdlib
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    pythons = dict.fromkeys([sys.executable, os.path.realpath(sys.executable),
                             f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"])
    for path in (lambda: os.pathsep.join(dict.fromkeys([unsplit(REPO), *packages])), readable_copy):
        for python in pythons:
            argv = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
                    "/usr/bin/env", f"PYTHONPATH={path()}", python]
            probe = subprocess.run([*argv, "-c", "import executor, attrs"], capture_output=True, cwd="/", timeout=30)
            if probe.returncode == 0:
                return [*argv, "-m", "executor"]
    return None


def readable_copy() -> str:
    """A directory every user may read and root alone may write (in the temp directory, named
    with this process's pid: removed as it exits, or by the next process that makes one
    when it was killed before, `remove_copies_left`), made once per process (a pytest-xdist worker), holding what a child Python run as another
    user imports: a copy of this checkout's packages as they are (executor, config,
    healthcheck, with their `__pycache__`: the code cache files), of `tests/support` (`tests`
    is a namespace package), and of the installed distributions the product requires
    (`install_requires` and theirs: attrs, pystachio, kazoo, waitress), their files and
    metadata as installed. About 0.2 s and 20 MB. Was: where that user may not read the
    checkout or the venv (a clone under a 0700 directory, as CI's), every test that runs
    `stoker` as that user skipped."""
    if _COPY:
        return _COPY[0]
    remove_copies_left(tempfile.gettempdir())
    top = Path(tempfile.mkdtemp(prefix=f"{COPY_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, top, ignore_errors=True)
    for name in PRODUCT_PACKAGES:
        copy_as_it_is(REPO / name, top / name)
    copy_as_it_is(REPO / "tests" / "support", top / "tests" / "support")
    for distribution in required_distributions("stoker"):
        for file in distribution.files or ():
            source = Path(str(distribution.locate_file(file)))
            if not file.parts or file.parts[0] == ".." or not source.is_file():
                continue  # a script in the venv's bin, or a file RECORD names but none wrote
            (top / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, top / file)
    open_to_readers(top)
    _COPY.append(str(top))
    return _COPY[0]


def copy_as_it_is(source: Path, target: Path) -> None:
    """`source`'s tree at `target`: its files with their modes and times (a `.pyc` still
    matches its source's), its symlinks as links; what vanishes while it is copied is left
    out. Was: `shutil.copytree`, which raised `shutil.Error` when a file it had listed was
    gone: another worker's test writing the checkout's `__pycache__` (the warm step,
    `python -m executor.codecache`, a `.pyc`) renames its temporary files into place, and
    copytree failed so in 11 of 50 copies of a directory another process wrote in."""
    for directory, subdirectories, files in os.walk(source):  # a directory gone is not walked
        into = target / os.path.relpath(directory, source)
        into.mkdir(parents=True, exist_ok=True)
        for name in (*subdirectories, *files):
            path = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                if os.path.islink(path):  # walk does not follow one to a directory
                    os.symlink(os.readlink(path), into / name)
                elif name in files:
                    shutil.copy2(path, into / name)


def open_to_readers(top: Path) -> None:
    """Every file and directory under `top` readable by all (and each executable one, and
    each directory, enterable and runnable by all), as the checkout's modes may not be, and
    writable by its owner alone. Was: group and others' write bits were kept from the
    checkout (a clone made under a umask of 0), so another user could change the code the
    tests ran as that user."""
    for directory, _, files in os.walk(top):
        for path in (directory, *(os.path.join(directory, name) for name in files)):
            mode = os.lstat(path).st_mode
            if not os.path.islink(path):  # a link's own mode is never looked at
                os.chmod(path, (mode | 0o444 | (0o111 if mode & 0o100 else 0)) & ~0o022)


def remove_copies_left(directory: str) -> list[str]:
    """Removes the copies `readable_copy()` made in `directory` whose process is gone, and
    names them. Was: a process that ends without its `atexit` handlers (a pytest-xdist
    worker killed: a crash, the OOM killer, `kill -9`) left its copy, 20 MB, in /tmp for
    good, at every such run. A copy of a live process, or another user's, is kept."""
    removed = []
    for entry in os.scandir(directory):
        pid = entry.name.removeprefix(COPY_PREFIX).partition("-")[0]
        if not entry.name.startswith(COPY_PREFIX) or not pid.isdigit() or not entry.is_dir(follow_symlinks=False):
            continue
        if entry.stat(follow_symlinks=False).st_uid != os.geteuid() or alive(int(pid)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.name)
    return removed


def alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def required_distributions(name: str) -> list[importlib.metadata.Distribution]:
    """The installed distributions `name` requires (no extra's), and theirs, once each."""
    found: dict[str, importlib.metadata.Distribution] = {}
    wanted = [name]
    while wanted:
        requirements = importlib.metadata.distribution(wanted.pop()).requires or []
        for requirement in map(Requirement, requirements):
            key = canonicalize_name(requirement.name)
            if key in found or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
                continue
            found[key] = importlib.metadata.distribution(requirement.name)
            wanted.append(requirement.name)
    return list(found.values())


def reachable(path: Path | str, stoker: list[str]) -> str:
    """`path`, a file of this checkout (a script of tests/support), as the user a `stoker_as`
    command runs as may open it: its copy in `readable_copy()` when that command imports
    the copy, else itself."""
    if _COPY and any(word.startswith(f"PYTHONPATH={_COPY[0]}") for word in stoker):
        return os.path.join(_COPY[0], os.path.relpath(os.path.realpath(path), os.path.realpath(REPO)))
    return str(path)


PRODUCT_PACKAGES = ("executor", "config", "healthcheck")
COPY_PREFIX = "stoker-readable-"  # then the pid of the process that made it, a dash, mkdtemp's letters
_COPY: list[str] = []  # the copy's directory, once made


def unsplit(path: Path) -> str:
    """`path` as a PYTHONPATH entry: itself, or, when it holds the separator (a checkout at
    `/a:b/c`, which PYTHONPATH splits in two), a symlink to it, one per path, in a directory
    this process made in the temp directory (others may traverse it; removed as the process
    exits), never a name found there. Was: the other user's Python, which has not the venv's
    editable install, could not import the checkout, and the test skipped."""
    if os.pathsep not in str(path):
        return str(path)
    if str(path) not in _UNSPLIT:
        if not _UNSPLIT:
            _UNSPLIT[""] = tempfile.mkdtemp(prefix="stoker-checkouts-")
            os.chmod(_UNSPLIT[""], 0o755)  # the other user's Python reads through it
            atexit.register(shutil.rmtree, _UNSPLIT[""], ignore_errors=True)
        link = os.path.join(_UNSPLIT[""], str(len(_UNSPLIT)))
        os.symlink(path, link)
        _UNSPLIT[str(path)] = link
    return _UNSPLIT[str(path)]


_UNSPLIT: dict[str, str] = {}  # path → its link; "" → their directory


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
