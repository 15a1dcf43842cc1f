"""A filesystem-image task's sandbox, prepared as Thermos' `FileSystemImageSandbox` does.

The agent mounts the task's image (Aurora's `Mesos(image = ...)`) as a volume at
`$MESOS_DIRECTORY/taskfs`; the executor itself runs outside it. Before any process starts,
`ImageSandbox.prepare`:

1. creates the task's user and its primary group inside the image (`groupadd -R taskfs -g
   GID GROUP`, `useradd -R taskfs -u UID -g GID USER`, with the host's ids), unless
   `--no-create-user`; a user or group the image already has (exit 4 or 9) must match the
   host's (`chroot taskfs getent group`, `chroot taskfs id`), as in Thermos;
2. bind-mounts (recursively, as `mount --rbind`) every volume of the executor's container but
   `taskfs` at the same path inside the image, then the sandbox at `--sandbox-mount-point`;
3. copies the host's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` into the image's
   `/etc` (when the host has them).

Unlike Thermos, no path inside the image is followed through a symlink (an image whose
`/mnt` or `/etc/hosts` is a link to `/etc` on the host would otherwise have the sandbox
mounted over, or the host's file overwritten, outside the image), and `release()` detaches
what was mounted once the task is over (Thermos leaves it to the end of the container's
mount namespace; an executor that shares the host's would leave the sandbox mounted inside
itself).

`launch_info_supported(path)` asks the containerizer which command line it takes, as
Thermos does (`mesos-containerizer launch` with no flag names `launch_info` in its error
when it knows it). Only as root; every failure is `ImageError` whose message says what
failed. Loaded only for a filesystem-image task.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import grp
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from executor.mesos.containerizer import TASKFS

EXISTS = (4, 9)  # groupadd/useradd: the id, or the name, is already used
MS_BIND, MS_REC, MNT_DETACH = 0x1000, 0x4000, 2
COPIED = ("resolv.conf", "hosts", "hostname")  # from the host's /etc (Mesos' network/cni isolator's files)
TOOL_SECS = 60.0


class ImageError(Exception):
    """The image's sandbox could not be prepared; the message says what failed."""


def launch_info_supported(path: str) -> bool:
    """Whether the containerizer takes `--launch_info` (Mesos >= 1.2): Thermos' question,
    `PATH launch` with no flag, whose error then names it. Raises ImageError."""
    try:
        done = subprocess.run([path, "launch"], stdin=subprocess.DEVNULL, capture_output=True, timeout=TOOL_SECS,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"cannot ask {path} which flags it takes ({path} launch): {exc}") from None
    return b"launch_info" in done.stderr


class ImageSandbox:
    def __init__(self, taskfs: Path, sandbox: Path, mount_point: str, volumes: list[str]) -> None:
        self.taskfs = taskfs
        self._sandbox = sandbox
        self._mount_point = mount_point
        self._volumes = [v for v in volumes if v != TASKFS]
        self.mounted: list[str] = []  # what prepare() mounted, in order
        self.notes: list[str] = []  # what was done, one line each, for the log

    def prepare(self, user: str | None) -> None:
        """Steps 1-3 above; `user`: the one to create (None: none). Raises ImageError."""
        if not self.taskfs.is_dir() or self.taskfs.is_symlink():
            raise ImageError(f"the task's filesystem image is not at {self.taskfs}: the agent mounts it there (a "
                             f"volume with the image at container path {TASKFS!r}, as Aurora's scheduler asks)")
        if user is not None:
            self._create_user(user)
        for volume in self._volumes:
            source = volume if os.path.isabs(volume) else str(self._sandbox / volume)
            self._mount(source, volume)
        self._mount(str(self._sandbox), self._mount_point)
        for name in COPIED:
            self._copy(Path("/etc") / name)

    def release(self) -> list[str]:
        """Detaches what prepare() mounted (the last first); the problems, in words."""
        libc = _libc()
        problems = []
        while self.mounted:
            target = self.mounted.pop()
            if libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
                problems.append(f"umount {target}: {os.strerror(ctypes.get_errno())}")
        return problems

    # ---- 1. the user ----

    def _create_user(self, name: str) -> None:
        try:
            pwent = pwd.getpwnam(name)
            grent = grp.getgrgid(pwent.pw_gid)
        except KeyError:
            raise ImageError(f"Could not create sandbox because user does not exist: {name}") from None
        root = str(self.taskfs)
        if self._tool(["groupadd", "-R", root, "-g", str(grent.gr_gid), grent.gr_name], "group") in EXISTS:
            found = self._chrooted(["getent", "group", grent.gr_name], "group id for name", grent.gr_name)
            fields = found.split(":")
            if len(fields) < 3 or fields[0] != grent.gr_name or fields[2] != str(grent.gr_gid):
                raise ImageError(f"Group id result {found.strip()} from image does not match name {grent.gr_name} "
                                 f"and id {grent.gr_gid}")
            self.notes.append(f"group {grent.gr_name}({grent.gr_gid}) already exists in the task's filesystem")
        if self._tool(["useradd", "-R", root, "-u", str(pwent.pw_uid), "-g", str(pwent.pw_gid), name], "user") in EXISTS:
            found = self._chrooted(["id", name], "user id for name", name)
            expected = f"uid={pwent.pw_uid}({name}) gid={pwent.pw_gid}({grent.gr_name}) groups="
            if not found.startswith(expected):
                raise ImageError(f"User group result {found.strip()} from task image does not start with expected "
                                 f"prefix {expected}")
            self.notes.append(f"user {name} ({pwent.pw_uid}) already exists in the task's filesystem")

    def _tool(self, argv: list[str], what: str) -> int:
        """Runs groupadd/useradd: 0, or an EXISTS code; ImageError otherwise."""
        done = self._run(argv, f"Failed to create {what} in sandbox for task image")
        if done.returncode not in (0, *EXISTS):
            raise ImageError(f"Failed to create {what} in sandbox for task image: {_failed(argv, done)}")
        if done.returncode == 0:
            self.notes.append(f"created the {what} in the task's filesystem: {' '.join(argv)}")
        return done.returncode

    def _chrooted(self, argv: list[str], what: str, name: str) -> str:
        full = ["chroot", str(self.taskfs), *argv]
        done = self._run(full, f"Error when getting {what} {name} in task image")
        if done.returncode != 0:
            raise ImageError(f"Error when getting {what} {name} in task image: {_failed(full, done)}")
        return done.stdout.decode(errors="replace")

    @staticmethod
    def _run(argv: list[str], doing: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=TOOL_SECS, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ImageError(f"{doing}: {' '.join(argv)}: {exc}") from None

    # ---- 2. the mounts ----

    def _mount(self, source: str, inside: str) -> None:
        """`mount --rbind SOURCE TASKFS/INSIDE`, the mount point made first (an empty file
        for a file), no symlink followed on the way."""
        target = self.taskfs / inside.lstrip("/")
        is_file = os.path.isfile(source)
        try:
            with _walk(self.taskfs, inside, create_last_as_file=is_file):
                pass
        except OSError as exc:
            raise ImageError(f"cannot make the mount point {target} for {source}: {_why(exc)}") from None
        libc = _libc()
        if libc.mount(os.fsencode(source), os.fsencode(str(target)), None, MS_BIND | MS_REC, None) != 0:
            raise ImageError(f"Failed to mount {source} into task filesystem at {target}: "
                             f"{os.strerror(ctypes.get_errno())}")
        self.mounted.append(str(target))
        self.notes.append(f"mounted {source} into task filesystem at {target}")

    # ---- 3. the copies ----

    def _copy(self, source: Path) -> None:
        try:
            data, mode = source.read_bytes(), source.stat().st_mode & 0o7777
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ImageError(f"cannot read {source} to copy it into the task filesystem: {_why(exc)}") from None
        target = self.taskfs / "etc" / source.name
        try:
            with _walk(self.taskfs, "etc") as etc:
                fd = _create(source.name, mode, etc)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    os.fchmod(out.fileno(), mode)
        except OSError as exc:
            raise ImageError(f"cannot copy {source} into the task filesystem at {target}: {_why(exc)}") from None
        self.notes.append(f"copied {source} into task filesystem at {target}")


def _libc() -> ctypes.CDLL:
    """libc with mount(2) and umount2(2) typed (the flags are an unsigned long)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


@contextlib.contextmanager
def _walk(root: Path, inside: str, create_last_as_file: bool = False) -> Iterator[int]:
    """An fd of ROOT/INSIDE's directory (or, for a file, of its parent), each level made
    if missing and opened without following a symlink; OSError (ELOOP: a symlink)."""
    parts = [p for p in inside.strip("/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EINVAL, f"{inside!r} has a '..' in it")
    last = parts.pop() if create_last_as_file and parts else None
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            inner = _open_dir(part, fd)
            os.close(fd)
            fd = inner
        if last is not None:
            os.close(os.open(last, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd))
        yield fd
    finally:
        os.close(fd)


def _open_dir(name: str, dir_fd: int) -> int:
    """NAME in DIR_FD, a directory and no symlink (ELOOP for one: O_NOFOLLOW says ENOTDIR)."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except NotADirectoryError:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
        raise


def _create(name: str, mode: int, dir_fd: int) -> int:
    """NAME in DIR_FD opened for writing, truncated; a symlink there is replaced by the file,
    never written through (it may lead out of the image)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    os.unlink(name, dir_fd=dir_fd)
    return os.open(name, flags | os.O_EXCL, mode, dir_fd=dir_fd)


def _failed(argv: list[str], done: subprocess.CompletedProcess[bytes]) -> str:
    said = (done.stderr or done.stdout).decode(errors="replace").strip()
    return f"{' '.join(argv)} exited {done.returncode}" + (f": {said[-400:]}" if said else "")


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink is on the way (a path inside the image is never followed through one)"
    return exc.strerror or str(exc)
