"""A tiny root filesystem standing in for a task's image (Aurora's `Mesos(image = ...)`).

`build_rootfs(dest)` copies a few of this host's programs (bash, sh, coreutils, getent, setsid: what
the tests' commands and Thermos' user checks run) and the libraries `ldd` names for them into
DEST, laid out as a merged-/usr Debian (`/bin`, `/lib`, `/lib64` links into `/usr`), with
its own `/etc/passwd`, `/etc/group`, `/etc/shadow`, `/etc/gshadow` (root only) and an
`/etc/os-release` naming it (`ROOTFS_ID`), so a process can prove it runs inside it. About
5 MB, built in well under a second. `copy_rootfs(template, dest)` gives a test its own copy
(programs and libraries hard-linked, `/etc` copied: the executor edits it).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.support.shellwords import python_sh

ROOTFS_ID = "stoker-test-image"
PROGRAMS = ("bash", "sh", "cat", "echo", "id", "getent", "sleep", "pwd", "env", "ls", "touch", "true", "setsid")
_LIBRARY = re.compile(r"(/\S+) \(0x")


def build_rootfs(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for top in ("usr/bin", "usr/lib", "usr/lib64", "usr/sbin", "etc", "tmp", "root", "mnt"):
        (dest / top).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        (dest / link).symlink_to(f"usr/{link}")
    libraries: set[str] = set()
    for name in PROGRAMS:
        found = shutil.which(name, path="/usr/bin:/bin")
        assert found is not None, f"{name} is not on this host"
        shutil.copy2(os.path.realpath(found), dest / "usr/bin" / name)
        libraries.update(_libraries(found))
    for library in libraries:
        inside = dest / library.lstrip("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        if not inside.exists():
            shutil.copy2(os.path.realpath(library), inside)
    etc = dest / "etc"
    etc.joinpath("passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    etc.joinpath("group").write_text("root:x:0:\n")
    etc.joinpath("shadow").write_text("root:*:19000:0:99999:7:::\n")
    etc.joinpath("gshadow").write_text("root:*::\n")
    etc.joinpath("os-release").write_text(f'ID={ROOTFS_ID}\nPRETTY_NAME="Stoker test image"\n')
    (dest / "tmp").chmod(0o1777)
    return dest


def _libraries(program: str) -> list[str]:
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True, timeout=30).stdout
    return [m.group(1) for m in _LIBRARY.finditer(out)]


def copy_rootfs(template: Path, dest: Path) -> Path:
    """DEST, a copy of TEMPLATE: files hard-linked but for `/etc`, which is copied."""
    shutil.copytree(template, dest, symlinks=True, copy_function=os.link,
                    ignore=lambda d, names: ["etc"] if Path(d) == template else [])
    shutil.copytree(template / "etc", dest / "etc", symlinks=True)
    return dest


STAND_IN = Path(__file__).with_name("mesos_containerizer.py")


def containerizer_script(path: Path, legacy: bool = False) -> Path:
    """An executable `mesos-containerizer` at PATH that runs the stand-in
    (`mesos_containerizer.py`) with this Python; `legacy`: as Mesos 1.1's, without
    `--launch_info`."""
    form = " --legacy" if legacy else ""
    path.write_text(f'#!/bin/sh\nexec {python_sh("-I", "-S", STAND_IN)}{form} "$@"\n')
    path.chmod(0o755)
    return path


def can_unshare_mounts() -> str | None:
    """None when this process may make a mount namespace (root, and the kernel or container
    allows it), else why not, for a skip."""
    if os.geteuid() != 0:
        return "a filesystem-image task needs root (mounts, chroot, switching users)"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                          text=True, timeout=30, check=False)
    return None if done.returncode == 0 else f"unshare --mount is not permitted here: {done.stderr.strip()}"


_BUILT: dict[str, Path] = {}


def session_rootfs(tmp_path_factory) -> Path:
    """One rootfs for the whole test session (under pytest's temporary directory, removed
    with it), built by the first test that asks; a test that changes it takes a
    `copy_rootfs`. Skips the asking test where no mount namespace can be made."""
    why = can_unshare_mounts()
    if why is not None:
        import pytest

        pytest.skip(why)
    if "rootfs" not in _BUILT:
        _BUILT["rootfs"] = build_rootfs(tmp_path_factory.mktemp("image") / "rootfs")
    return _BUILT["rootfs"]
