"""A filesystem-image task's sandbox, prepared as Thermos' `FileSystemImageSandbox` does.

The agent mounts the task's image (Aurora's `Mesos(image = ...)`) as a volume at
`$MESOS_DIRECTORY/taskfs`; the executor itself runs outside it. Before any process starts,
`ImageSandbox.prepare`:

0. checks that the image has a `/bin/bash` that can run (every process and shell check is
   `/bin/bash -c` inside it): the task fails saying so, not each process in the containerizer;
1. creates the task's user and its primary group inside the image, with the host's ids,
   unless `--no-create-user`; a user or group the image already has must match the host's,
   with Thermos' words when it does not (`imageusers.py`: the executor writes the image's
   `/etc` files itself, where Thermos runs `useradd -R`, `groupadd -R` and `chroot taskfs
   id`, which run the image's programs and libraries as root);
2. bind-mounts the image onto itself nosuid and nodev (`_seal`: Thermos does not; a
   setuid-root program in the image would make its processes root), then (recursively, as
   `mount --rbind`) every volume of the executor's container but `taskfs` at the same path
   inside the image, then the sandbox at `--sandbox-mount-point`;
3. copies the host's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname` into the image's
   `/etc` (when the host has them).

The image is the job submitter's, the executor root: unlike Thermos, no path inside the
image is followed through a symlink (an image whose `/mnt` or `/etc/hosts` is a link to
`/etc` on the host would otherwise have the sandbox mounted over, or the host's file
overwritten, outside the image), no FIFO or device in it is opened (a FIFO would block the
executor for ever), a mount point is mounted on through its descriptor, and `release()`
detaches what was mounted once the task is over through the descriptor of each mount
point's directory, held since the mount (the task may have replaced a parent by a symlink
meanwhile), or, for the image's own, of its root. Neither `taskfs` nor a volume's source
in the sandbox (the task owner's) is followed through a symlink either; once sealed, the
image is reached through its root's descriptor only, and a `taskfs` that is no longer it
at the end is refused (the containerizer is given the path). Thermos leaves the mounts to
the end of the container's mount namespace; an executor that shares the host's would leave
the sandbox mounted inside itself.

Only as root; every failure is `ImageError` whose message says what failed. Loaded only
for a filesystem-image task.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

from config.words import quoted
from executor.mesos import imageusers, mounttree
from executor.mesos.containerizer import TASKFS

MS_BIND, MS_REC, MNT_DETACH, UMOUNT_NOFOLLOW = 0x1000, 0x4000, 2, 8
COPIED = ("resolv.conf", "hosts", "hostname")  # from the host's /etc (Mesos' network/cni isolator's files)
BASH = "/bin/bash"  # what every process and shell check runs inside the image


class ImageError(Exception):
    """The image's sandbox could not be prepared; the message says what failed."""


class ImageSandbox:
    def __init__(self, taskfs: Path, sandbox: Path, mount_point: str, volumes: list[str]) -> None:
        self.taskfs = taskfs
        self._sandbox = sandbox
        self._mount_point = mount_point
        self._volumes = [v for v in volumes if v != TASKFS]
        self.mounted: list[str] = []  # what prepare() mounted, in order
        self._points: list[tuple[int, str]] = []  # each one's directory (a held fd) and name in it; or its root and ""
        self._root = -1  # the sealed image's root (O_PATH, one of `_points`): what is mounted and written in
        self.notes: list[str] = []  # what was done, one line each, for the log

    def prepare(self, user: str | None) -> None:
        """Steps 0-3 above; `user`: the one to create (None: none). Raises ImageError."""
        link = _link_target(self.taskfs)
        if link is not None:
            raise ImageError(f"the task's filesystem image is not at {self.taskfs}: a symlink is there, to "
                             f"{quoted(link)} (the agent mounts the image there; a symlink in the sandbox is never "
                             "followed)")
        if not self.taskfs.is_dir():
            raise ImageError(f"the task's filesystem image is not at {self.taskfs}: the agent mounts it there (a "
                             f"volume with the image at container path {TASKFS!r}, as Aurora's scheduler asks)")
        if not mounttree.proc_fds_shown(self.taskfs.parent):
            raise ImageError(f"cannot prepare the task filesystem {self.taskfs}: /proc/self/fd does not show this "
                             "process's descriptors (procfs is not mounted at /proc in the executor's mount "
                             "namespace), and the image's mounts are made and detached through them")
        if not _runs_in(self.taskfs, BASH):
            raise ImageError(f"the task's image has no {BASH} that can run (every process and shell health check "
                             f"runs inside it as {BASH} -c CMDLINE, as under Thermos)")
        if user is not None:
            self._create_user(user)
        self._seal()
        for volume in self._volumes:
            self._mount(*self._source(volume), volume)
        self._mount(*self._source(str(self._sandbox)), self._mount_point)
        for name in COPIED:
            self._copy(Path("/etc") / name)
        self._check_in_place()

    def release(self) -> list[str]:
        """Detaches what prepare() mounted (the last first); the problems, in words. Each
        mount point is named through the descriptor of its directory held since the mount
        (`/proc/self/fd/N/NAME`, its last name not followed): by the end the task may have
        swapped a parent of it for a symlink, and a path would then detach a host mount. The
        image's own mount (the seal), whose directory is the sandbox's, the task owner's, is
        named through the descriptor of its root (`/proc/self/fd/N`, that very mount): from
        another mount namespace `taskfs` can be renamed, the mount moving with it."""
        libc = _libc()
        problems = []
        while self.mounted:
            shown = self.mounted.pop()
            parent, name = self._points.pop()
            where, flags = (f"/proc/self/fd/{parent}/{name}", MNT_DETACH | UMOUNT_NOFOLLOW) if name else (
                f"/proc/self/fd/{parent}", MNT_DETACH)
            try:
                if libc.umount2(os.fsencode(where), flags) != 0:
                    problems.append(f"umount {shown}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(parent)
        self._root = -1
        return problems

    # ---- 1. the user ----

    def _create_user(self, name: str) -> None:
        """The user and its primary group in the image's /etc files (`imageusers.py`: no tool
        and nothing from the image runs as root)."""
        try:
            pwent = pwd.getpwnam(name)
            grent = grp.getgrgid(pwent.pw_gid)
        except KeyError:
            raise ImageError(f"Could not create sandbox because user does not exist: {name}") from None
        try:
            with _walk(self.taskfs, "etc") as etc:
                self.notes.append(imageusers.ensure_group(etc, grent.gr_name, grent.gr_gid))
                self.notes.append(imageusers.ensure_user(etc, name, pwent.pw_uid, pwent.pw_gid, grent.gr_name))
        except imageusers.UserDbError as exc:
            raise ImageError(str(exc)) from None
        except OSError as exc:
            raise ImageError(f"Failed to create user in sandbox for task image: {self.taskfs / 'etc'}: "
                             f"{_why(exc)}") from None

    # ---- 2. the mounts ----

    def _source(self, volume: str) -> tuple[str, int]:
        """VOLUME's path and an O_PATH descriptor of it: an absolute one (or the sandbox) is
        where the agent mounted it in the executor's container; a relative one is the
        sandbox's entry, the task owner's (a fetched archive's symlink there could name any
        host directory), so it is opened without following a symlink."""
        if os.path.isabs(volume):
            source, below = volume, None
        else:
            source, below = str(self._sandbox / volume), self._sandbox
        try:
            return source, os.open(source, os.O_PATH | os.O_CLOEXEC) if below is None else _open_below(below, volume)
        except (OSError, ValueError) as exc:  # ValueError: a name no file can have (a lone surrogate)
            raise ImageError(f"cannot open {source} to mount it into the task filesystem: {_why(exc)}") from None

    def _mount(self, source: str, held: int, inside: str) -> None:
        """`mount --rbind SOURCE TASKFS/INSIDE`, SOURCE mounted from HELD (its descriptor,
        closed here), the mount point made first (an empty file for a file), no symlink
        followed on the way, and mounted on through its descriptor (`/proc/self/fd/N`), so
        that no path is walked again."""
        target = self.taskfs / inside.lstrip("/")
        try:
            try:
                parent, name = _mount_point(self._root, inside, stat.S_ISREG(os.fstat(held).st_mode))
            except (OSError, ValueError) as exc:  # ValueError: a name no file can have (a lone surrogate)
                raise ImageError(f"cannot make the mount point {target} for {source}: {_why(exc)}") from None
            try:
                point = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    if _libc().mount(os.fsencode(f"/proc/self/fd/{held}"), os.fsencode(f"/proc/self/fd/{point}"),
                                     None, MS_BIND | MS_REC, None) != 0:
                        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
                finally:
                    os.close(point)
            except OSError as exc:
                os.close(parent)
                raise ImageError(f"Failed to mount {source} into task filesystem at {target}: {_why(exc)}") from None
        finally:
            os.close(held)
        self.mounted.append(str(target))
        self._points.append((parent, name))
        self.notes.append(f"mounted {source} into task filesystem at {target}")

    def _seal(self) -> None:
        """The image bind-mounted onto itself nosuid and nodev (its other flags kept), every
        mount inside it (the agent's volumes, a tmpfs, a layer) with it (`mounttree.seal`),
        in this mount namespace, which the containerizer copies for every process: a setuid-root
        program, or a device node open to all, that the image's author put in it would
        otherwise give the task's processes root on the agent (Thermos leaves them working).
        The copy is attached and held through descriptors (`mounttree`): the sandbox is the
        task owner's, whose `taskfs` may be renamed meanwhile."""
        parent, root = self._open_taskfs()
        try:
            top = mounttree.clone_onto(root)
            if top >= 0:
                self.mounted.append(str(self.taskfs))
                self._points.append((top, ""))  # released through its root: the directory may be renamed
            else:
                top = self._bind_by_path(parent, root)
        except OSError as exc:
            raise ImageError(f"Failed to bind-mount the task filesystem {self.taskfs} onto itself: {_why(exc)}") from None
        finally:
            os.close(root)
            os.close(parent)
        self._root = top
        try:
            way = mounttree.seal(top)
        except OSError as exc:
            raise ImageError(f"Failed to make the task filesystem {self.taskfs} and every mount in it nosuid,nodev "
                             f"(the task is not run with a setuid program working): {_why(exc)}") from None
        self.notes.append(f"bind-mounted the task filesystem {self.taskfs} onto itself nosuid,nodev, its "
                          f"submounts too ({way})")

    def _bind_by_path(self, parent: int, root: int) -> int:
        """`_seal`'s mount by mount(2), where the kernel has no open_tree (before 5.2): the
        new mount's root is found again by its name in PARENT, checked to be ROOT's
        directory; if `taskfs` was renamed in between, the mount stays on the renamed
        image, unreachable (ImageError says so)."""
        itself = os.fsencode(f"/proc/self/fd/{root}")
        if _libc().mount(itself, itself, None, MS_BIND | MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self.mounted.append(str(self.taskfs))
        self._points.append((os.dup(parent), self.taskfs.name))
        top = self._bound_root(parent, os.fstat(root))
        os.close(self._points[-1][0])
        self._points[-1] = (top, "")  # released through its root: the directory may be renamed
        return top

    def _bound_root(self, parent: int, bound: os.stat_result) -> int:
        """An O_PATH descriptor of the root of the mount just made on taskfs, opened in PARENT
        without following a symlink and checked to be the directory BOUND (the name could
        have been swapped since: a remount by name would change another mount)."""
        try:
            top = _open_dir(self.taskfs.name, parent, os.O_PATH)
        except OSError as exc:
            why = _why(exc)
        else:
            there = os.fstat(top)
            if (there.st_dev, there.st_ino) == (bound.st_dev, bound.st_ino):
                return top
            os.close(top)
            why = "it is no longer the directory bind-mounted (taskfs was replaced meanwhile)"
        raise ImageError(f"Failed to make the task filesystem {self.taskfs} nosuid,nodev: {why}")

    def _open_taskfs(self) -> tuple[int, int]:
        """Descriptors of taskfs's directory (O_PATH) and of taskfs, opened in it without
        following a symlink: the sandbox is the task owner's, whose `taskfs` may have become
        one since `prepare` looked (mount(2) follows a symlink it is given by name)."""
        try:
            parent = os.open(self.taskfs.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ImageError(f"cannot look at the task filesystem {self.taskfs}: {_why(exc)}") from None
        try:
            return parent, _open_dir(self.taskfs.name, parent, os.O_PATH)
        except OSError as exc:
            os.close(parent)
            raise ImageError(f"cannot look at the task filesystem {self.taskfs}: {_why(exc)}") from None

    def _check_in_place(self) -> None:
        """Refuses a `taskfs` that is no longer the sealed image (renamed from another mount
        namespace, a directory of the owner's put in its place): everything was mounted and
        written through the image's root, but the containerizer is given the path."""
        parent, there = self._open_taskfs()
        try:
            moved = not os.path.samestat(os.fstat(there), os.fstat(self._root))
        finally:
            os.close(there)
            os.close(parent)
        if moved:
            raise ImageError(f"the task filesystem {self.taskfs} was replaced while it was prepared (the "
                             "containerizer, given its path, would enter another directory)")

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
            with _walk(self._root, "etc") as etc:
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
def _walk(root: Path | int, inside: str) -> Iterator[int]:
    """An fd of the directory ROOT/INSIDE, each level made if missing and opened without
    following a symlink; OSError (ELOOP: a symlink). ROOT: a path, or a directory's fd (the
    sealed image's root: never found again by name, which the task owner may have moved)."""
    parts = [p for p in inside.strip("/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EINVAL, f"{quoted(inside)} has a '..' in it")
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root) if isinstance(root, int) else (
            os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC))
    except NotADirectoryError:  # (O_NOFOLLOW's word for a symlink: taskfs swapped since prepare looked)
        if not isinstance(root, int) and os.path.islink(root):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(root)) from None
        raise
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            inner = _open_dir(part, fd)
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _mount_point(root: int, inside: str, is_file: bool) -> tuple[int, str]:
    """(an fd of the directory holding ROOT/INSIDE, INSIDE's last name): the mount point
    made if missing, a directory (for a file, an empty regular file), none of it a symlink.
    An existing FIFO or device is never opened (opening one could block for ever)."""
    if ".." in inside.split("/"):
        raise OSError(errno.EINVAL, f"{quoted(inside)} has a '..' in it")
    parent, _, name = inside.strip("/").rpartition("/")
    if name in ("", "."):
        raise OSError(errno.EINVAL, f"{quoted(inside)} names no mount point below the image's root")
    with _walk(root, parent) as fd:
        with contextlib.suppress(FileExistsError):
            if is_file:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=fd))
            else:
                os.mkdir(name, 0o755, dir_fd=fd)
        mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
        if not (stat.S_ISREG(mode) if is_file else stat.S_ISDIR(mode)):
            raise OSError(errno.EINVAL, f"{name} is there, but not a {'regular file' if is_file else 'directory'}")
        return os.dup(fd), name


def _open_below(root: Path, inside: str) -> int:
    """An O_PATH descriptor of ROOT/INSIDE, no symlink followed on the way nor at its end
    (ELOOP), nothing made."""
    parts = [p for p in inside.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EINVAL, f"{quoted(inside)} has a '..' in it")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            inner = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = inner
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), part)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _runs_in(root: Path, path: str) -> bool:
    """Whether PATH, resolved as inside ROOT (its symlinks, absolute ones included, taken
    as the containerizer's chroot takes them, never out of ROOT), is an executable file.
    Only looks (lstat, readlink): nothing in the image is opened."""
    todo, done, hops = [p for p in path.split("/") if p not in ("", ".")], root, 0
    st = os.lstat(root)
    while todo:
        part = todo.pop(0)
        if part == "..":
            done = done.parent if done != root else root
            continue
        try:
            st = os.lstat(done / part)
        except OSError:
            return False
        if not stat.S_ISLNK(st.st_mode):
            done = done / part
            continue
        hops += 1
        link = os.readlink(done / part)
        if hops > 40:  # the kernel's limit: a loop
            return False
        todo[:0] = [p for p in link.split("/") if p not in ("", ".")]
        done = root if link.startswith("/") else done
    return stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 != 0


def _link_target(path: Path) -> str | None:
    """What PATH, a symlink, names (the task owner's bytes: a message quotes them); None
    when it is no symlink (or is gone)."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def _open_dir(name: str, dir_fd: int, mode: int = os.O_RDONLY) -> int:
    """NAME in DIR_FD, a directory and no symlink (ELOOP for one: O_NOFOLLOW says ENOTDIR),
    opened MODE (O_PATH: to name it, needing no read permission)."""
    try:
        return os.open(name, mode | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except NotADirectoryError:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
        raise


def _create(name: str, mode: int, dir_fd: int) -> int:
    """NAME in DIR_FD opened for writing, truncated; anything there but a regular file or a
    directory (a symlink, which may lead out of the image; a FIFO, whose open would block
    until a reader came; a device, whose open may act on the host) is replaced by the file,
    never opened; a directory is an error (EISDIR)."""
    try:
        there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        there = stat.S_IFREG
    if not (stat.S_ISREG(there) or stat.S_ISDIR(there)):
        os.unlink(name, dir_fd=dir_fd)
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode,
                   dir_fd=dir_fd)


def _why(exc: OSError | ValueError) -> str:
    if not isinstance(exc, OSError):
        return str(exc)
    if exc.errno == errno.ELOOP:
        return "a symlink is on the way (a path inside the image is never followed through one)"
    return exc.strerror or str(exc)
