"""A real stand-in for `mesos-containerizer launch`, the subset Thermos (and Stoker) use.

Mesos' `src/slave/containerizer/mesos/launch.cpp`, for a command given as
`--launch_info=JSON` (Mesos >= 1.2) with `--unshare_namespace_mnt`, or, with
`--legacy` before `launch`, as Mesos 1.1's separate `--command=JSON`, `--rootfs`,
`--user`, `--working_directory` flags: it parses the flags as stout does (`--name=value`,
`--name` / `--no-name` for a switch; an unknown flag is refused, exit 1), unshares the mount
namespace, makes every mount a slave (nothing it does reaches the host), looks the user up
in the HOST's password database (as Mesos does, before entering the root filesystem),
chroots into the rootfs (Mesos pivots; the tests' rootfs is no mount point), makes and
enters the working directory, switches to the user (gid, the user's groups, uid) when it is
not the current one, and execs the command: the pid stays the command's, so signals sent to
it reach the command itself. What launch.cpp does not do for these fields (mounts, rlimits,
capabilities, a status fd) is refused rather than ignored. Its JSON parser is Python's, made
as strict as Mesos' picojson about a lone low surrogate's escape (`\\udcff`), which Mesos refuses. Errors go to stderr in Mesos'
words, exit 1; `launch` with no flag says `Flag --launch_info is not specified` (Thermos'
`is_launch_info_supported` looks for `launch_info` there; the legacy form never says it).

Standard library only; run as `python -I -S mesos_containerizer.py [--legacy] launch ...`
(the tests write a `mesos-containerizer` script that does that).
"""
from __future__ import annotations

import ctypes
import json
import os
import pwd
import re
import sys

CLONE_NEWNS = 0x00020000
MS_REC, MS_SLAVE = 0x4000, 0x80000
MODERN = {"launch_info": "json", "unshare_namespace_mnt": "bool"}
LEGACY = {"command": "json", "rootfs": "str", "user": "str", "working_directory": "str",
          "unshare_namespace_mnt": "bool"}
INFO_FIELDS = {"rootfs", "user", "working_directory", "command"}
COMMAND_FIELDS = {"shell", "value", "arguments"}
ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)")  # a JSON escape (an escaped backslash is one)


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def parse_flags(args: list[str], known: dict[str, str]) -> dict[str, object]:
    flags: dict[str, object] = {}
    for arg in args:
        if not arg.startswith("--"):
            fail(f"Failed to load flags: unexpected argument '{arg}'")
        name, has_value, value = arg[2:].partition("=")
        negated = not has_value and name.startswith("no-") and known.get(name[3:]) == "bool"
        key = name[3:] if negated else name
        kind = known.get(key)
        if kind is None:
            fail(f"Failed to load flags: Failed to load unknown flag '{key}'")
        if kind == "bool":
            if has_value and value not in ("true", "false"):
                fail(f"Failed to load flags: Failed to load flag '{key}': expected true or false, got '{value}'")
            flags[key] = (value == "true") if has_value else not negated
        elif not has_value:
            fail(f"Failed to load flags: Failed to load flag '{key}': missing value")
        elif kind == "json":
            try:
                lone_low_surrogate(value)
                flags[key] = json.loads(value)
            except ValueError as exc:
                fail(f"Failed to load flags: Failed to load flag '{key}': {exc}")
        else:
            flags[key] = value
    return flags


def lone_low_surrogate(text: str) -> None:
    """ValueError for a `\\uDC00`-`\\uDFFF` escape that no high surrogate's escape comes
    right before: picojson (stout's JSON parser) refuses it, where Python's accepts it."""
    high, high_end = False, -1
    for escape in ESCAPE.finditer(text):
        code = int(escape.group(1), 16) if escape.group(1) else None
        if code is not None and 0xDC00 <= code <= 0xDFFF and not (high and escape.start() == high_end):
            raise ValueError(f"syntax error at line 1 near: {text[escape.start():escape.start() + 16]}")
        high, high_end = code is not None and 0xD800 <= code <= 0xDBFF, escape.end()


def launch_info(flags: dict[str, object], legacy: bool) -> dict:
    if legacy:
        info = {k: flags[k] for k in ("rootfs", "user", "working_directory") if k in flags}
        if "command" not in flags:
            fail("Flag --command is not specified")
        info["command"] = flags["command"]
        return info
    if "launch_info" not in flags:
        fail("Flag --launch_info is not specified")
    info = flags["launch_info"]
    if not isinstance(info, dict):
        fail("Failed to parse launch info: not a JSON object")
    unknown = sorted(set(info) - INFO_FIELDS)
    if unknown:
        fail(f"this stand-in does not implement ContainerLaunchInfo fields {unknown}")
    return info


def checked_command(info: dict) -> tuple[str, list[str]]:
    command = info.get("command")
    if not isinstance(command, dict):
        fail("Launch command is not specified")
    unknown = sorted(set(command) - COMMAND_FIELDS)
    if unknown:
        fail(f"this stand-in does not implement CommandInfo fields {unknown}")
    if not isinstance(command.get("value"), str):
        fail("Shell command is not specified" if command.get("shell", True) else "Executable path is not specified")
    if command.get("shell", True):
        return "/bin/sh", ["sh", "-c", command["value"]]
    return command["value"], [str(a) for a in command.get("arguments", [])]


def enter(info: dict, unshare: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    if unshare:
        if libc.unshare(CLONE_NEWNS) != 0:
            fail(f"Failed to unshare mount namespace: {os.strerror(ctypes.get_errno())}")
        if libc.mount(None, b"/", None, MS_SLAVE | MS_REC, None) != 0:
            fail(f"Failed to mark '/' as recursively slave: {os.strerror(ctypes.get_errno())}")
    user = None
    if "user" in info:
        try:
            user = pwd.getpwnam(info["user"])
        except KeyError:
            fail(f"Failed to get the uid of user '{info['user']}': not found")
    if "rootfs" in info:
        rootfs = info["rootfs"]
        print(f"Preparing rootfs at '{rootfs}'", file=sys.stderr)
        if not os.path.exists(rootfs):
            fail(f"Rootfs path '{rootfs}' does not exist")
        if os.path.realpath(rootfs) != rootfs:
            fail(f"Rootfs path '{rootfs}' is not an absolute path")
        print(f"Changing root to {rootfs}", file=sys.stderr, flush=True)
        os.chroot(rootfs)
        os.chdir("/")
    if "working_directory" in info:
        workdir = info["working_directory"]
        try:
            os.makedirs(workdir, exist_ok=True)
        except OSError as exc:
            print(f"Failed to create working directory '{workdir}': {exc.strerror}", file=sys.stderr)
        try:
            os.chdir(workdir)
        except OSError as exc:
            fail(f"Failed to chdir into current working directory '{workdir}': {exc.strerror}")
    if user is not None and user.pw_uid != os.geteuid():
        become(user)


def become(user: pwd.struct_passwd) -> None:
    os.setgid(user.pw_gid)
    os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
    os.setuid(user.pw_uid)


def main(argv: list[str]) -> None:
    legacy = bool(argv) and argv[0] == "--legacy"
    args = argv[1:] if legacy else argv
    if not args or args[0] != "launch":
        fail(f"Usage: {os.path.basename(sys.argv[0])} launch [...] (this stand-in knows only 'launch')")
    flags = parse_flags(args[1:], LEGACY if legacy else MODERN)
    info = launch_info(flags, legacy)
    executable, arguments = checked_command(info)
    enter(info, bool(flags.get("unshare_namespace_mnt", False)))
    sys.stderr.flush()
    try:
        os.execvp(executable, arguments)
    except OSError as exc:
        fail(f"Failed to execute '{executable}': {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
