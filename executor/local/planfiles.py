"""The plan cache's files, with the standard library only: where they are, what an entry is
called, reading and writing them safely, and the stamp of the code a plan depends on.

`executor/local/plancache.py` keeps and serves plans with these; the early start
(`executor/cli/launch.py`) reads its launch record with them before anything else of
Stoker's is loaded, so nothing here may import attrs, pathlib or the config package.

- `cache_dir`: `$STOKER_PLAN_CACHE` (absolute; `off` turns the cache off), else
  `$XDG_CACHE_HOME/stoker/plans`, else `~/.cache/stoker/plans` (`own_home`), and only on a
  path no other user can redirect (`trusted_path`; `plancache.unkept_reason`: why there is none).
- `entry_path`: one entry per config path, job key and instance (FNV-1a of the three: zlib's
  crc32 would load libz for one number); its files share the name and differ in suffix:
  `.bin` the plan, `.lock` the lease, `.start` the launch record.
- `read_private` reads a file only when it is a regular file this user owns that no one
  else may write, in such a directory; `write_private` writes one whole and renames it
  into place. `read_text` reads a config file as the loader does, never blocking on a FIFO.
- `code_roots` and `code_stamp`: the name, size and mtime of every module (`.py`, or `.pyc`
  without sources) of `config/`, of pystachio and of Stoker's own planning (PLAN_CODE): a
  plan made by other code is not served;
  `loaded_from`: whether the roots a launch record names are this process's own (an upgrade
  elsewhere leaves them behind).
- `sandbox_name`: how a new default sandbox is named (the early start makes one too);
  `SANDBOX_MODE`: a sandbox's and the levels' above it (`replacefile.make_dirs`);
  `foreign_link`: another user's symlink on a sandbox's path, which `stoker run` refuses,
  as it does a sandbox in a directory another user could change (`open_above`).
- `lock`: an entry's lease (an `flock` that no run waits for); `login_name` and
  `ports_free`: the user a plan is bound for, and whether the ports a plan chose are still
  free (on 127.0.0.1 and ::1, `loopback_sockets`, as `planning.allocate_ports` chooses new ones).
"""
from __future__ import annotations

import fcntl
import os
import pwd
import stat
import sys
import time

from executor.host.replacefile import replace_file, trusted_path, untrusted_level, user_name

TYPE_CHECKING = False  # not `typing`'s: the early start's modules load neither typing nor collections
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping

PLAN_FORMAT = 2  # the first item of a plan's key (`plancache.plan_key`); 2: the plan as marshal data in the entry
LAUNCH_FORMAT = 1  # of the launch record (`plancache.keep_launch`, `executor/cli/launch.py`)
PLAN_SUFFIX = ".bin"
LOCK_SUFFIX = ".lock"
START_SUFFIX = ".start"

Stamp = tuple[tuple[str, int, int], ...]


def cache_dir(environ: Mapping[str, str], euid: int | None = None) -> str | None:
    """Where plans are kept, or None (cache off, no absolute place for it, or a place
    another user could redirect: `trusted_path`). The default's home is $HOME or the
    password database's, whichever is a directory this user owns: `sudo` that keeps the
    caller's HOME must not make root keep its plans in the caller's ~/.cache."""
    euid = os.geteuid() if euid is None else euid
    value = environ.get("STOKER_PLAN_CACHE", "")
    if value:
        directory = value if value != "off" and os.path.isabs(value) else None
    else:
        base = environ.get("XDG_CACHE_HOME", "")
        if not os.path.isabs(base):
            home = own_home(environ, euid)
            base = os.path.join(home, ".cache") if home else ""
        directory = os.path.join(base, "stoker", "plans") if base else None
    return directory if directory is not None and trusted_path(directory, euid) else None


def own_home(environ: Mapping[str, str], euid: int) -> str | None:
    """$HOME, else the password database's home of `euid`: the first that is an absolute
    path to a directory `euid` owns; None when neither is."""
    try:
        listed = pwd.getpwuid(euid).pw_dir
    except KeyError:  # a uid with no entry (a container's arbitrary uid)
        listed = ""
    for home in (environ.get("HOME", ""), listed):
        try:
            if os.path.isabs(home) and _owned_dir(os.stat(home), euid):
                return home
        except OSError:
            continue
    return None


def _owned_dir(info: os.stat_result, euid: int) -> bool:
    return stat.S_ISDIR(info.st_mode) and info.st_uid == euid


def entry_path(directory: str, config: str, jobkey: str | None, instance: int, suffix: str) -> str:
    """The file `suffix` of the entry for this absolute config path, job key and instance."""
    name = 0xCBF29CE484222325
    for byte in repr((config, jobkey, instance)).encode():
        name = ((name ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(directory, f"plan-{name:016x}{suffix}")


def private(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read_private(path: str) -> bytes | None:
    """The file at `path` if it is a regular file this user owns and only this user can write,
    in a directory of the same kind; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not private(info):
            return None
        if not private(os.stat(os.path.dirname(path))):
            return None
        chunks = []
        while chunk := os.read(fd, max(info.st_size, 4096)):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_private(path: str, data: bytes) -> None:
    """`data` as the file `path` (0600), written whole and renamed into place. Raises OSError."""
    replace_file(path, data)


def lock(path: str) -> int | None:
    """The file `path` (made 0600 if missing) opened and `flock`ed exclusively, never
    waiting: a lease; None when another open file holds it, or it cannot be opened. Held only
    while `path` still names the file locked: a run's pruning (`plancache._unlink_unheld`)
    that removed it between the open and the lock left a lease on no file, which a run making
    it anew held too (the path is opened again then)."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        if _locked_as_named(fd, path):
            return fd
        os.close(fd)
    return None


def _locked_as_named(fd: int, path: str) -> bool:
    """Whether the open file `fd` is now `flock`ed by this process and `path` still names it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked, named = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:  # held by another run, or removed since
        return False
    return (locked.st_dev, locked.st_ino) == (named.st_dev, named.st_ino)


def read_text(path: str) -> str | None:
    """A config file's text as the loader reads it (UTF-8, universal newlines), or None;
    never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, encoding="utf-8", closefd=False) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


# Stoker's code a kept plan and its launch record come from (`executor/`'s): the run's planning
# (ports chosen, the plan's form, the launch record) and the planner (the first wave). Unstamped,
# an upgrade in place of these alone (a fix of the ports chosen) served the old code's plans.
PLAN_CODE = ("local", os.path.join("task", "planner.py"), os.path.join("task", "plans.py"),
             os.path.join("task", "process_rules.py"))
_EXECUTOR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_roots() -> tuple[str, ...]:
    """The directories of `config/` and of pystachio (as found on sys.path), and Stoker's
    PLAN_CODE."""
    import config

    return (*config.__path__, *[os.path.join(_EXECUTOR, part) for part in PLAN_CODE], *_pystachio_root())


def _pystachio_root() -> list[str]:
    for entry in sys.path:
        candidate = os.path.join(entry or ".", "pystachio")
        if os.path.isdir(candidate):
            return [candidate]
    return []


def loaded_from(roots: tuple[str, ...]) -> bool:
    """Whether `roots` (the `code_roots` an earlier run recorded) are the directories this
    process loads its code from, without importing `config`: the `config/` beside this
    `executor/`, and the pystachio sys.path finds. An upgrade into another place (a venv per
    build, a zipapp's next build in a directory of its own) leaves the old ones unchanged
    behind: their stamp alone would still match."""
    here = [os.path.join(os.path.dirname(_EXECUTOR), "config"), *[os.path.join(_EXECUTOR, part) for part in PLAN_CODE],
            *_pystachio_root()]
    # the same name is the same directory (a realpath is a syscall a level: 12 of them took
    # 0.2 ms of the early start once PLAN_CODE's four roots came)
    return len(roots) == len(here) and all(a == b or os.path.realpath(a) == os.path.realpath(b)
                                           for a, b in zip(roots, here))


def code_stamp(roots: tuple[str, ...]) -> Stamp:
    """Name, size and mtime of every module under `roots` (directories, or modules' files)."""
    stamp: list[tuple[str, int, int]] = []
    for root in roots:
        _stamp_tree(root, stamp)
    return tuple(stamp)


def _stamp_tree(directory: str, into: list[tuple[str, int, int]]) -> None:
    if directory.endswith(".py"):  # a module's file (PLAN_CODE), or its `.pyc` in its place
        for path in (directory, directory + "c"):
            try:
                info = os.stat(path)
            except OSError:  # gone: a stamp without it differs from one with it
                continue
            into.append((path, info.st_size, info.st_mtime_ns))
        return
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        # a module's source, or its `.pyc` in its place: by `.py` alone an installation without
        # sources stamped nothing, and an upgrade of it in place served the old code's plans
        if entry.name.endswith((".py", ".pyc")) and entry.is_file():
            info = entry.stat()
            into.append((entry.path, info.st_size, info.st_mtime_ns))
        elif entry.is_dir() and entry.name != "__pycache__":
            _stamp_tree(entry.path, into)


def sandbox_name(job: str) -> str:
    """A new default sandbox's name: `sandbox-JOB-DATE-TIME-RANDOM` (`stoker run` and its
    early start name it alike; `is_sandbox_name` recognizes one)."""
    return f"sandbox-{_short(job)}-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"


def _short(job: str) -> str:
    """The job's name cut to 200 bytes, a whole character last: a file name holds 255 bytes,
    and a job named with 300 letters (or 100 Chinese ones) failed `stoker run` with a
    traceback ('File name too long')."""
    data = job.encode("utf-8", "surrogateescape")
    return job if len(data) <= 200 else data[:200].decode("utf-8", "ignore")


SANDBOX_MODE = 0o755  # a sandbox and the levels above it (`make_dirs`): a umask of 0 must not open them to all


def is_sandbox_name(name: str, job: str) -> bool:
    return name.startswith(f"sandbox-{_short(job)}-")


def foreign_link(path: str) -> str:
    """The symlink of another user's (not root's) that `path` goes through, said so; ''
    when none: one planted in /tmp would lead root's task, and what it writes, into /etc
    (where fs.protected_symlinks is 0). Looked at before anything is made there."""
    level = "/"
    for part in os.path.abspath(path).split("/")[1:]:
        level = os.path.join(level, part)
        try:
            info = os.lstat(level)
        except OSError:  # missing (made by this user from here on), or not a directory:
            return ""  # making it says so
        if stat.S_ISLNK(info.st_mode) and info.st_uid not in (os.geteuid(), 0):
            return f"is reached through {level}, a symlink of {user_name(info.st_uid)}"
    return ""


def open_above(path: str) -> str:
    """The directory above the sandbox `path` that another user could change, said so; ''
    when none (`untrusted_level`: one of theirs, or one they may write that is not sticky):
    they could rename the sandbox away and put one of theirs in its place, whose
    `.thermos_profile` the next run (or the next attempt) would source as this user. Both
    the directory the path names and the one its symlink, if it is one, leads to: the run
    uses the latter."""
    for above in dict.fromkeys(os.path.dirname(name) for name in (os.path.abspath(path), os.path.realpath(path))):
        level = untrusted_level(above)
        if level:
            return f"is in a directory another user could change ({level})"
    return ""


def root_name() -> str:
    """uid 0's name in the password database (`root` where it has none)."""
    try:
        return pwd.getpwuid(0).pw_name
    except KeyError:
        return "root"


def role_not_taken(role: str, euid: int) -> str | None:
    """Run as root, the task runs as root whatever its role (README "Users"), where Aurora
    would run it as the role's user: a line says so, since root is what it then gets."""
    if euid != 0 or role == root_name():
        return None
    return (f"running as root: the task's processes run as root, not as the job's role {role!r} "
            "(as Aurora's executor, and `stoker executor`, would run them)")


def login_name(environ: Mapping[str, str]) -> str:
    """The user's login name as `getpass.getuser()` finds it (LOGNAME, USER, LNAME or
    USERNAME, else the password database's name for the real uid), without loading getpass
    and termios; `uid N` where getpass would raise."""
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if name := environ.get(variable):
            return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def ports_free(numbers: list[int]) -> bool:
    """Whether a server could listen on every one of `numbers` on 127.0.0.1 and ::1 now
    (`loopback_sockets`; all held until the last is checked): a kept plan's ports, before a
    new run reuses them. Bound with SO_REUSEADDR, as servers bind (Python's http.server
    among them): connections of the last run still in TIME_WAIT leave the port free, a
    socket bound or listening there does not."""
    if not numbers:
        return True
    held: list[socket.socket] = []
    soft = _widened(2 * len(numbers))
    try:
        for number in numbers:
            loopback_sockets(number, held)
        return True
    except OSError:
        return False
    finally:
        for sock in held:
            sock.close()
        _narrowed(soft)


FEW_SOCKETS = 64  # held at once without a look at the descriptor limit (nor `resource` loaded)


def _widened(count: int) -> int | None:
    """The soft RLIMIT_NOFILE raised by `count` (within the hard limit) for the sockets a port
    check holds together; the limit it was, for `_narrowed`, or None when left as it was. A job
    of 500 ports had none chosen under the usual soft limit of 1,024 (EMFILE)."""
    if count <= FEW_SOCKETS:
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft + count if hard == resource.RLIM_INFINITY else min(soft + count, hard)
    if soft == resource.RLIM_INFINITY or new <= soft:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError):
        return None  # not raised: the check may fail with EMFILE, as before
    return soft


def _narrowed(soft: int | None) -> None:
    """Puts back the soft limit `_widened` raised: an early start's runs get the run's own."""
    if soft is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def loopback_sockets(number: int, held: list[socket.socket], *, ipv4: bool = True, reuse: bool = True) -> None:
    """Bind `number` on 127.0.0.1 (unless not `ipv4`) and on ::1 (IPv6 only; with
    SO_REUSEADDR where `reuse`, as servers bind: a port chosen before), the sockets
    added to `held` (the caller closes them); raises OSError (EADDRINUSE: another socket
    holds it on one of them). ::1 is skipped where the host has no IPv6 on loopback, or
    denies this process IPv6 sockets (a seccomp or AppArmor profile: EPERM, EACCES; its
    checks cannot reach ::1 then either): the health checks, TCP checks and lifecycle POSTs
    try ::1 when 127.0.0.1 refuses (healthcheck/loopback.py), so a port another service
    holds there only is not free."""
    import errno
    import socket

    no_ipv6 = (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EPERM, errno.EACCES)
    places = ((socket.AF_INET, "127.0.0.1"),) if ipv4 else ()
    for family, address in (*places, (socket.AF_INET6, "::1")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in no_ipv6:
                return  # no IPv6 at all, or none for this process
            raise
        held.append(sock)
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((address, number))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno in (errno.EADDRNOTAVAIL, *no_ipv6):
                return  # no ::1 on loopback, or binding there denied to this process
            raise
