"""The port claims files of this host's earlier boots are removed as this boot's is made
(`executor/host/lock.py`, `claims_made`), and never another host's. Was: one file a boot,
each kept in the registry root for good."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.host.entry import claims_name
from executor.host.identity import boot_id, boot_to_wall, host_identity
from executor.host.lock import host_line, recorded_host
from executor.host.registry import Registry

LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 40000)
print("held", flush=True)
sys.stdin.read()
"""


def _boot_file(root: Path, host: tuple[str, str] | None, *, made_before_boot: bool = True) -> Path:
    """A claims file of another boot (a random boot id), recording `host` (None: no record,
    an older Stoker's), made before this host booted or since."""
    path = root / claims_name(str(uuid.uuid4()), ("", ""))
    path.write_bytes(host_line(host) if host is not None else b"")
    path.chmod(0o600)
    booted = boot_to_wall(0.0)
    assert booted is not None
    if made_before_boot:
        os.utime(path, (booted - 3600, booted - 3600))
    return path


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    path.mkdir(mode=0o700)
    return path


def test_making_this_boot_s_file_removes_this_host_s_earlier_boots_and_no_other_host_s(root):
    here = host_identity()
    earlier = [_boot_file(root, here) for _ in range(3)]
    others = [_boot_file(root, ("0ther0machine0id", "other-host")),  # another host's, sharing the root
              _boot_file(root, (here[0], "another-name")),  # this machine id under another name: not judged
              _boot_file(root, None),  # an older Stoker's: no host recorded
              _boot_file(root, here, made_before_boot=False)]  # made since this boot: a clone's, its runs' now
    by_host = root / claims_name("", ("0ther0machine0id", "other-host"))  # a host whose boot id cannot be read
    by_host.write_bytes(host_line(here))
    legacy = root / "ports.claims"  # every host's, before the file a host
    legacy.touch()
    claimed = _boot_file(root, here)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(claimed)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "held\n"
        fd = Registry(RegistrySettings(registry_root=str(root))).open_claims()
        os.close(fd)
    finally:
        locker.kill()
        locker.wait()
        for stream in (locker.stdin, locker.stdout):
            if stream is not None:
                stream.close()
    assert [p.exists() for p in earlier] == [False] * 3
    assert [p.exists() for p in [*others, by_host, legacy]] == [True] * 6
    assert claimed.exists(), "a file a live process claims a port in was removed"
    mine = os.open(root / claims_name(boot_id(), here), os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert recorded_host(mine) == here
    finally:
        os.close(mine)


def test_a_file_opened_again_in_the_same_boot_removes_nothing(root):
    registry = Registry(RegistrySettings(registry_root=str(root)))
    os.close(registry.open_claims())
    earlier = _boot_file(root, host_identity())
    os.close(registry.open_claims())  # this boot's file is there: not made, nothing judged
    assert earlier.exists()

