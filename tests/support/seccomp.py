"""A real seccomp filter for tests: system calls a host denies, denied to a whole process tree.

Owns a classic BPF program that checks `seccomp_data.arch` is this machine's and answers
`SECCOMP_RET_ERRNO | errno` for the system calls named (optionally only for one first
argument: `prctl` with PR_SET_CHILD_SUBREAPER), `SECCOMP_RET_ALLOW` for every other; its
installation (`prctl(PR_SET_NO_NEW_PRIVS)`, then `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`),
which every child and every exec inherits, as in a container whose runtime installed it; and
a launcher: `python tests/support/seccomp.py RULE... -- PROGRAM ARGS` installs the filter
and execs PROGRAM, so `stoker run` or `stoker executor` and everything it starts run under it.
A RULE is `NAME=ERRNO` or `NAME:ARG0=ERRNO` (`pidfd_open=EPERM`, `clone3=ENOSYS`,
`prctl:36=EINVAL`).

`PROFILES` names the realistic ones: older Docker and Podman (their default profiles
predate the pidfd calls, so the default action, EPERM, answers them; clone3 gets ENOSYS so
that glibc falls back to clone; unshare is EPERM without CAP_SYS_ADMIN), a kernel before 5.3 (ENOSYS for every pidfd call and for
clone3 and close_range, which came later), a runtime that denies prctl.

Standard library only, ctypes: it runs as a script before anything of Stoker's is loaded.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import subprocess
import sys

# Architectures, as `seccomp_data.arch` gives them (include/uapi/linux/audit.h:
# AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE; AUDIT_ARCH_AARCH64 likewise).
ARCHES = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# System call numbers: x86_64 from the kernel's arch/x86/entry/syscalls/syscall_64.tbl (the
# 64-bit ABI), aarch64 from include/uapi/asm-generic/unistd.h (the generic table it uses).
SYSCALLS = {
    "x86_64": {"socket": 41, "clone": 56, "vfork": 58, "kill": 62, "prctl": 157, "waitid": 247, "unshare": 272,
               "inotify_init1": 294, "setns": 308, "memfd_create": 319, "pidfd_send_signal": 424, "pidfd_open": 434,
               "clone3": 435, "close_range": 436, "openat2": 437, "pidfd_getfd": 438,
               "mount_setattr": 442},
    "aarch64": {"socket": 198, "clone": 220, "kill": 129, "prctl": 167, "waitid": 95, "unshare": 97,
                "inotify_init1": 26, "setns": 268, "memfd_create": 279, "pidfd_send_signal": 424, "pidfd_open": 434, "clone3": 435,
                "close_range": 436, "openat2": 437, "pidfd_getfd": 438, "mount_setattr": 442},
}

PR_SET_CHILD_SUBREAPER = 36
_PR_GET_SECCOMP = 21
_PR_SET_SECCOMP = 22
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
# Classic BPF opcodes (include/uapi/linux/filter.h, bpf_common.h).
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # ARG0_LOW: the low half of args[0], on a little-endian machine

Rule = tuple[str, int | None, int]  # (system call, its first argument or None for any, errno)

PROFILES: dict[str, list[Rule]] = {
    "old-docker": [("pidfd_open", None, errno.EPERM), ("pidfd_send_signal", None, errno.EPERM),
                   ("pidfd_getfd", None, errno.EPERM), ("clone3", None, errno.ENOSYS),
                   ("unshare", None, errno.EPERM)],  # Docker's, without CAP_SYS_ADMIN
    "no-pidfds": [("pidfd_open", None, errno.ENOSYS), ("pidfd_send_signal", None, errno.ENOSYS),
                  ("pidfd_getfd", None, errno.ENOSYS), ("clone3", None, errno.ENOSYS),
                  ("close_range", None, errno.ENOSYS)],
    "no-prctl": [("prctl", None, errno.EPERM)],
    "no-close-range": [("close_range", None, errno.ENOSYS)],
}


class Unsupported(Exception):
    """This machine or process cannot have the filter (its arch, or no seccomp)."""


def machine() -> str:
    """This machine's name in ARCHES; raises Unsupported for another (or a big-endian one)."""
    name = platform.machine()
    if name not in ARCHES or sys.byteorder != "little":
        raise Unsupported(f"no system call table for {name} ({sys.byteorder}-endian) in tests/support/seccomp.py")
    return name


def program(rules: list[Rule], arch: str) -> bytes:
    """The filter's BPF instructions (struct sock_filter, 8 bytes each)."""
    table = SYSCALLS[arch]
    body: list[tuple[int, int, int, int]] = [(_LD_W_ABS, 0, 0, _NR)]
    for name, arg0, err in rules:
        if arg0 is None:
            body += [(_JEQ_K, 0, 1, table[name]), (_RET_K, 0, 0, _RET_ERRNO | err)]
        else:  # the first argument loaded, compared, and the number loaded again for the next rule
            body += [(_JEQ_K, 0, 4, table[name]), (_LD_W_ABS, 0, 0, _ARG0_LOW),
                     (_JEQ_K, 0, 1, arg0), (_RET_K, 0, 0, _RET_ERRNO | err), (_LD_W_ABS, 0, 0, _NR)]
    if len(body) > 250:
        raise ValueError(f"{len(rules)} rules: more than one jump can skip")
    # another arch's call (an x32 or i386 one) is allowed: its numbers are not in the table
    head = [(_LD_W_ABS, 0, 0, _ARCH), (_JEQ_K, 0, len(body), ARCHES[arch])]
    return b"".join(struct.pack("=HBBI", *insn) for insn in head + body + [(_RET_K, 0, 0, _RET_ALLOW)])


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(rules: list[Rule]) -> None:
    """Deny `rules` to this process and everything it starts from now on. Raises Unsupported."""
    code = program(rules, machine())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(_PR_GET_SECCOMP, 0, None, 0, 0) < 0:
        err = ctypes.get_errno()
        why = "a kernel without seccomp" if err == errno.EINVAL else "a container that forbids prctl"
        raise Unsupported(f"prctl(PR_GET_SECCOMP): {os.strerror(err)} ({why})")
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise Unsupported(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _Fprog(len(code) // 8, ctypes.addressof(buffer))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise Unsupported(f"prctl(PR_SET_SECCOMP): {os.strerror(ctypes.get_errno())}")


def parse(words: list[str]) -> list[Rule]:
    """Rules from `NAME=ERRNO`, `NAME:ARG0=ERRNO` words, or a profile's name."""
    rules: list[Rule] = []
    for word in words:
        if word in PROFILES:
            rules += PROFILES[word]
            continue
        call, _, err = word.partition("=")
        name, _, arg0 = call.partition(":")
        rules.append((name, int(arg0) if arg0 else None, getattr(errno, err)))
    return rules


def launcher(rules: list[str]) -> list[str]:
    """The command prefix that runs the rest of a command line under `rules`."""
    return [sys.executable, os.path.abspath(__file__), *rules, "--"]


_unavailable: list[str] = []


def unavailable() -> str | None:
    """Why no filter can be installed here (None when one can): tried once, in a child."""
    if not _unavailable:
        try:
            machine()
            result = subprocess.run([*launcher(["pidfd_getfd=EPERM"]), sys.executable, "-c", ""],
                                    capture_output=True, text=True, timeout=30)
            _unavailable.append(result.stderr.strip() if result.returncode else "")
        except Unsupported as exc:
            _unavailable.append(str(exc))
    return _unavailable[0] or None


def require() -> None:
    """Skip the calling test, with the reason, where no filter can be installed."""
    why = unavailable()
    if why:
        import pytest  # here: the launcher runs with the standard library only

        pytest.skip(f"no seccomp filter can be installed here: {why}")


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(f"usage: {argv[0]} RULE... -- PROGRAM ARGS (RULE: NAME=ERRNO, NAME:ARG0=ERRNO, "
              f"or one of {', '.join(PROFILES)})", file=sys.stderr)
        return 2
    split = argv.index("--")
    try:
        install(parse(argv[1:split]))
    except Unsupported as exc:
        print(f"seccomp: {exc}", file=sys.stderr)
        return 3
    command = argv[split + 1:]
    os.execv(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
