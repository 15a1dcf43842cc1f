"""The task's user and its primary group written into a filesystem image's `/etc`, as
`groupadd -R taskfs -g GID GROUP` and `useradd -R taskfs -u UID -g GID USER` write them for
Thermos, with Thermos' checks of a user or group the image already has.

Why the executor writes the files itself instead of running those tools (or, for the
checks, `chroot taskfs getent group` and `chroot taskfs id`): the image is the job
submitter's. `chroot taskfs id` runs the image's own `id` as root, and `useradd -R` /
`groupadd -R` chroot into the image and then look names up through the image's
`nsswitch.conf`, which loads the image's `libnss_*.so` into a root process; either way
whoever built the image runs code as root in the executor's mount namespace, where a chroot
is no boundary. The entries can only be in the image's files (nothing else answers inside
it), so reading and appending them is what the tools do, and nothing from the image runs.

Each file is opened relative to the image's `/etc` (a descriptor the caller opened without
following a symlink), never through a symlink, never a FIFO or device (opened non-blocking,
then checked), and read only up to `MAX_BYTES`: a hostile image can make the task fail,
never make the executor hang, read or write outside the image. Entries: the group
`NAME:x:GID:` (and `NAME:!::` in `gshadow` when the image has one), the user
`NAME:x:UID:GID::/home/NAME:/bin/bash` (and `NAME:!:DAYS::::::` in `shadow` when the image has
one), as Debian's useradd writes them into an image without `/etc/default/useradd` or
`/etc/login.defs`; no home directory is made, as without `useradd -m`. Every refusal is `UserDbError` whose message says what;
the mismatch messages are Thermos' words.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import time

from config.words import printable

MAX_BYTES = 4 << 20  # an image's passwd or group file larger than this is refused
ID_FIELDS = {"passwd": (2, 3), "group": (2,)}  # the fields of an entry that are ids
BLANKS = " \t\n\v\f\r"  # C's isspace: skipped before a line's text and before an id
READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
APPEND = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # read: a newline at the end?


class UserDbError(Exception):
    """The image's user database cannot take the task's user; the message says why."""


def ensure_group(etc: int, name: str, gid: int) -> str:
    """GROUP in the image's `/etc/group` with GID, added unless its name or id is taken;
    a taken one must be NAME with GID (Thermos' check). What was done, in words."""
    if (found := _taken(_entries(etc, "group"), "group", name, gid)) is not None:
        if _id_in(found, 2) != gid:
            raise UserDbError(f"Group id result {printable(':'.join(found))} from image does not match name {name} "
                              f"and id {gid}")
        return f"group {name}({gid}) already exists in the task's filesystem"
    _append(etc, "group", f"{name}:x:{gid}:\n", create=True)
    _append(etc, "gshadow", f"{name}:!::\n", create=False)
    return f"created the group {name}({gid}) in the task's filesystem's /etc/group"


def ensure_user(etc: int, name: str, uid: int, gid: int, group: str) -> str:
    """USER in the image's `/etc/passwd` with UID and primary GID, added unless its name or
    id is taken; a taken one must be USER with UID and GID GROUP, the prefix Thermos asks
    of `id USER` in the image. What was done, in words."""
    entries = _entries(etc, "passwd")
    if (found := _taken(entries, "user", name, uid)) is not None:
        shown = _id_says(found, entries, _entries(etc, "group"))
        expected = f"uid={uid}({name}) gid={gid}({group}) groups="
        if not f"{shown} groups=".startswith(expected):
            raise UserDbError(f"User group result {shown} from task image does not start with expected prefix "
                              f"{expected}")
        return f"user {name} ({uid}) already exists in the task's filesystem"
    _append(etc, "passwd", f"{name}:x:{uid}:{gid}::/home/{name}:/bin/bash\n", create=True)
    _append(etc, "shadow", f"{name}:!:{int(time.time() // 86400)}::::::\n", create=False)
    return f"created the user {name}({uid}) in the task's filesystem's /etc/passwd"


def _taken(entries: list[list[str]], kind: str, name: str, number: int) -> list[str] | None:
    """NAME's entry among ENTRIES, the image's users or groups (KIND: "user" or "group"), when
    NAME or the id NUMBER is taken (None: neither is). The id taken under another name, with
    no entry NAME, is refused in Thermos' words."""
    if not any(e[0] == name or _id_in(e, 2) == number for e in entries):
        return None
    found = next((e for e in entries if e[0] == name), None)
    if found is None:
        file, id_name = ("passwd", "uid") if kind == "user" else ("group", "gid")
        raise UserDbError(f"Error when getting {kind} id for name {name} in task image: its /etc/{file} has "
                          f"{id_name} {number} under another name and no {kind} {name}")
    return found


def _id_says(user: list[str], users: list[list[str]], groups: list[list[str]]) -> str:
    """How the image's `id NAME` begins for USER, NAME's entry: `uid=N(NAME) gid=N(GROUP)`,
    each id as glibc reads it and named by the first entry with that id (`id` asks
    getpwuid and getgrgid: an earlier entry with the same uid shows under its own name).
    An id whose value glibc's builds disagree on (`_id_in` gives None) is shown as written
    (`printable`), which no expected prefix matches."""
    uid, gid = _id_in(user, 2), _id_in(user, 3)
    if uid is None or gid is None:
        return printable(f"uid={user[2]}({user[0]}) gid={user[3]}")
    owner = next((e[0] for e in users if _id_in(e, 2) == uid), user[0])
    named = next((e[0] for e in groups if _id_in(e, 2) == gid), None)
    return f"uid={uid}({owner}) gid={gid}" + (f"({named})" if named is not None else "")


def _id_in(entry: list[str], index: int) -> int | None:
    """Field INDEX of ENTRY, a uid or gid spelled as glibc's parser takes it (`_spelled`),
    as it reads it; None for a value its builds read differently: `-N` (N > 0) and one
    past 32 bits, which upstream makes 4294967295 and Debian's refuses with the line (no
    task's id either way; a user entry with one is refused, never taken for another)."""
    text = entry[index].lstrip(BLANKS)
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 10 or text.startswith("-") and digits != "0":  # (int() refuses past 4300 digits)
        return None
    value = int(digits)
    return value if value <= 0xFFFFFFFF else None


def _spelled(field: str) -> bool:
    """Whether FIELD is an id as glibc's parser takes one (strtoul in base 10: blanks and
    a sign before the digits allowed, nothing after them); a line with an id spelled
    otherwise (none, `0x3e8`, `1000 `) is no entry for it."""
    digits = field.lstrip(BLANKS)
    digits = digits[1:] if digits[:1] in ("+", "-") else digits
    return digits.isascii() and digits.isdigit()


def _entries(etc: int, name: str) -> list[list[str]]:
    """The image's entries in `/etc/NAME`, passwd or group, as lists of fields (none when
    it has no such file), as glibc's `files` database takes them for `getpwnam`,
    `getpwuid`, `getgrnam` and `getgrgid` (what `id`, `getent` and `useradd -R` ask): its
    lines as `_lines` reads them, but for those whose ids are missing or not `_spelled`
    (the parser refuses them) and NIS `+`/`-` lines (every look-up skips them)."""
    try:
        _regular(os.stat(name, dir_fd=etc, follow_symlinks=False), name)
        fd = os.open(name, READ, dir_fd=etc)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserDbError(_cannot("read", name, exc)) from None
    with os.fdopen(fd, "rb") as file:
        _regular(os.fstat(file.fileno()), name)
        data = file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UserDbError(f"the image's /etc/{name} is larger than {MAX_BYTES >> 20} MiB")
    entries = [line.decode("utf-8", errors="surrogateescape").split(":") for line in _lines(data)]
    return [e for e in entries if not e[0].startswith(("+", "-"))
            and all(len(e) > i and _spelled(e[i]) for i in ID_FIELDS[name])]


def _lines(data: bytes) -> list[bytes]:
    """The entries of a passwd or group file as glibc reads them for `getpwnam`, `getgrgid`
    and `id` (`__nss_readline`): lines end at a newline only, each one's text at its first
    NUL; leading blanks (C's isspace) are skipped; empty lines and `#` comments are none.
    Read otherwise (Python's `splitlines` also ends a line at a CR or a \\x1c-\\x1e; a name
    after blanks is not the name), an image could show this check its user with the host's
    ids while the image's `id` and programs see another entry first, with uid 0."""
    lines = []
    for raw in data.split(b"\n"):
        line = raw.partition(b"\0")[0].lstrip(BLANKS.encode())
        if line and not line.startswith(b"#"):
            lines.append(line)
    return lines


def _append(etc: int, name: str, line: str, *, create: bool) -> None:
    """LINE at the end of the image's `/etc/NAME` (on a line of its own), the file made
    (0644) when `create` and missing, left alone when not `create` and missing."""
    try:
        with contextlib.suppress(FileNotFoundError):
            _regular(os.stat(name, dir_fd=etc, follow_symlinks=False), name)
        fd = os.open(name, APPEND | (os.O_CREAT if create else 0), 0o644, dir_fd=etc)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not create:
            return
        raise UserDbError(_cannot("write", name, exc)) from None
    with os.fdopen(fd, "ab") as file:
        size = _regular(os.fstat(file.fileno()), name)
        if size and os.pread(file.fileno(), 1, size - 1) != b"\n":
            line = "\n" + line
        file.write(line.encode("utf-8", errors="surrogateescape"))


def _regular(st: os.stat_result, name: str) -> int:
    """The size of `/etc/NAME`, which must be a regular file (looked at before it is opened:
    opening a FIFO may block, a device's open may act on the host); UserDbError otherwise."""
    if stat.S_ISLNK(st.st_mode):
        raise UserDbError(f"the image's /etc/{name} is a symlink (never followed inside an image)")
    if not stat.S_ISREG(st.st_mode):
        raise UserDbError(f"the image's /etc/{name} is not a regular file")
    return st.st_size


def _cannot(doing: str, name: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"cannot {doing} the image's /etc/{name}: it is a symlink (never followed inside an image)"
    if exc.errno == errno.ENXIO:
        return f"cannot {doing} the image's /etc/{name}: it is not a regular file"
    return f"cannot {doing} the image's /etc/{name}: {exc.strerror or exc}"
