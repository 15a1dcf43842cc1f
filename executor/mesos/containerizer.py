"""`mesos-containerizer launch`'s command line for a filesystem-image task, as Thermos builds it.

Owns `ContainerizerLaunch`: what every process and every shell health check of a task whose
Aurora container is `Mesos(image = ...)` is started through (Thermos'
`wrap_with_mesos_containerizer`, `apache/thermos/common/process_util.py`). The command stays
`/bin/bash -c CMDLINE`, given as a CommandInfo with `shell: false`, `value: /bin/bash`,
`arguments: [/bin/bash, -c, CMDLINE]`; the launcher gets `--unshare_namespace_mnt`, the
task's root filesystem (`$MESOS_DIRECTORY/taskfs`, where the agent mounted the image), the
working directory (the sandbox's mount point inside it, `--sandbox-mount-point`) and the
user the command runs as (by name: the containerizer looks it up and switches to it after
entering the root filesystem). Two forms, chosen once per task by asking the binary
(`executor/mesos/imagetask.py`, `launch_info_supported`): Mesos ≥ 1.2's one JSON
`--launch_info={"command", "working_directory", "user", "rootfs"}`, and the older separate
`--working_directory`, `--rootfs`, `--user`, `--command=JSON` flags; the JSON byte for byte as
Thermos' (its Python 2 dicts' key order, `to_json`).

`env(env)` is the process's environment seen from inside the image: `HOME` and
`MESOS_SANDBOX` the mount point (Thermos' HOME; Mesos' MESOS_SANDBOX for a container with an
image), `BASH_ENV` the mount point's `.thermos_profile`; everything else as it is (the
markers included: the containerizer passes its environment on, so the supervisor and the
watchdog find the task's processes as in any task).

Pure: no I/O, no logging.
"""
from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

TASKFS = "taskfs"  # Aurora's TASK_FILESYSTEM_MOUNT_POINT: the image's volume, in $MESOS_DIRECTORY
SANDBOX_PATHS = ("HOME", "MESOS_SANDBOX", "BASH_ENV")  # variables naming a path in the sandbox


class NamedUser(Protocol):
    """What `argv` needs of a user (a `RunAs`)."""

    @property
    def name(self) -> str: ...


@attrs.frozen(slots=True)
class ContainerizerLaunch:
    path: str  # the mesos-containerizer binary (--mesos-containerizer-path)
    rootfs: str  # $MESOS_DIRECTORY/taskfs, absolute
    working_directory: str  # the sandbox inside the image (--sandbox-mount-point)
    sandbox: str  # the sandbox on the host, absolute (what the mount point shows)
    launch_info: bool = True  # the binary takes --launch_info (Mesos >= 1.2)
    default_user: str = "root"  # the user a command given no user runs as (the executor's own)

    def command_info(self, cmdline: str) -> dict[str, Any]:
        """Thermos' CommandInfo, its keys in the order its Python 2 dict gives them."""
        return {"shell": False, "arguments": ["/bin/bash", "-c", cmdline], "value": "/bin/bash"}

    def argv(self, cmdline: str, user: NamedUser | None) -> list[str]:
        """The command line that runs `/bin/bash -c CMDLINE` inside the image as `user`
        (None: `default_user`)."""
        name = user.name if user is not None else self.default_user
        command = self.command_info(cmdline)
        if self.launch_info:
            info = {"command": command, "working_directory": self.working_directory, "user": name,
                    "rootfs": self.rootfs}
            return [self.path, "launch", "--unshare_namespace_mnt", f"--launch_info={to_json(info)}"]
        return [self.path, "launch", "--unshare_namespace_mnt", f"--working_directory={self.working_directory}",
                f"--rootfs={self.rootfs}", f"--user={name}", f"--command={to_json(command)}"]

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with the sandbox's paths as the task sees them inside the image."""
        seen = dict(env)
        for key in SANDBOX_PATHS:
            value = seen.get(key)
            if value is not None:
                seen[key] = self.inside(value)
        return seen

    def inside(self, path: str) -> str:
        """A host path in the sandbox as the task sees it (at the mount point); any other
        path as it is. The path is read with its `.`, `..` and repeated `/` resolved, as
        `sandbox` (absolute, normalised) is: a MESOS_SANDBOX of `/a/x/../sandbox` is the
        sandbox too (the image task refused one where a symbolic link makes `..` lead
        elsewhere)."""
        norm = posixpath.normpath(path) if path.startswith("/") else path
        if norm == self.sandbox:
            return self.working_directory
        within = posixpath.join(self.sandbox, "")  # the sandbox and one "/" ("/" itself stays "/")
        if norm.startswith(within):
            return posixpath.join(self.working_directory, norm[len(within):])
        return path


def to_json(value: object) -> str:
    """`json.dumps(value)` as Thermos writes it (each character beyond ASCII as a `\\uXXXX`
    escape), except the bytes of a command line that is not UTF-8: Python holds
    them as U+DC80-U+DCFF (surrogateescape), whose escapes Mesos' JSON parser refuses (a lone
    low surrogate), so they go out as themselves and the argv carries the very bytes; bash
    then gets the command line a task without an image would have run."""
    return _ESCAPED.sub(_escape, json.dumps(value, ensure_ascii=False))


_ESCAPED = re.compile("[^\x00-\x7f\udc80-\udcff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"
