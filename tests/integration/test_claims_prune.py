"""The port claims files of this host's earlier boots are removed as this boot's is made
(`executor/host/lock.py`, `claims_made`), and never another host's. Was: one file a boot,
each kept in the registry root for good."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.host.entry import claims_name
from executor.host.identity import TWIN_SLACK_SECS, boot_id, boot_to_wall, host_identity
from executor.host.lock import claims_made, host_line, recorded_host
from executor.host.registry import Registry

LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 40000)
print("held", flush=True)
sys.stdin.read()
"""


def _boot_file(root: Path, host: tuple[str, str] | None, *, made_before_boot: bool = True,
               after_boot_secs: float | None = None) -> Path:
    """A claims file of another boot (a random boot id), recording `host` (None: no record,
    an older Stoker's), made before this host booted or since (`after_boot_secs` past it)."""
    path = root / claims_name(str(uuid.uuid4()), ("", ""))
    path.write_bytes(host_line(host) if host is not None else b"")
    path.chmod(0o600)
    booted = boot_to_wall(0.0)
    assert booted is not None
    if after_boot_secs is not None:
        os.utime(path, (booted + after_boot_secs, booted + after_boot_secs))
    elif made_before_boot:
        os.utime(path, (booted - 3600, booted - 3600))
    return path


def _pruning_lines(caplog) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    return [(r.stoker_event, r.stoker_fields) for r in caplog.records
            if getattr(r, "stoker_event", "").startswith("port_claims_")]


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    path.mkdir(mode=0o700)
    return path


def test_making_this_boot_s_file_removes_this_host_s_earlier_boots_and_no_other_host_s(root, caplog):
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
    elsewhere = _boot_file(root.parent, here)  # an earlier boot's, reached by a link named as one: not followed
    link = root / claims_name(str(uuid.uuid4()), ("", ""))
    link.symlink_to(elsewhere)
    claimed = _boot_file(root, here)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(claimed)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "held\n"
        with caplog.at_level(logging.DEBUG, logger="executor.host.lock"):
            fd = Registry(RegistrySettings(registry_root=str(root))).open_claims()
        os.close(fd)
    finally:
        locker.kill()
        locker.wait()
        for stream in (locker.stdin, locker.stdout):
            if stream is not None:
                stream.close()
    assert [p.exists() for p in earlier] == [False] * 3
    assert [p.exists() for p in [*others, by_host, legacy, elsewhere]] == [True] * 7 and link.is_symlink()
    assert claimed.exists(), "a file a live process claims a port in was removed"
    # one line, naming the files removed and none other (not the link, nor the claimed file)
    assert _pruning_lines(caplog) == [("port_claims_pruned", {
        "files": ",".join(sorted(p.name for p in earlier)),
        "reason": "the port claims files of this host's earlier boots"})]
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



def test_a_file_made_within_the_slack_after_the_boot_is_an_earlier_boot_s_and_one_past_it_is_not(root):
    """The boot's wall time may be off by a clock stepped at boot (TWIN_SLACK_SECS): a file
    made within that long after it is taken for an earlier boot's; one made later is this
    boot's (a clone's), however little later."""
    here = host_identity()
    within = _boot_file(root, here, after_boot_secs=TWIN_SLACK_SECS / 2)
    past = _boot_file(root, here, after_boot_secs=TWIN_SLACK_SECS + 0.5)
    os.close(Registry(RegistrySettings(registry_root=str(root))).open_claims())
    assert (within.exists(), past.exists()) == (False, True)


def test_a_file_named_by_its_host_not_its_boot_removes_nothing(root):
    """A host whose boot id cannot be read names its file by its host (`claims_name`): it
    has no boot to compare, and judges no other file."""
    earlier = _boot_file(root, host_identity())
    name = claims_name("", host_identity())
    fd = os.open(root / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        claims_made(dir_fd, fd, name)
        assert recorded_host(fd) == host_identity()
    finally:
        os.close(fd)
        os.close(dir_fd)
    assert earlier.exists()


def test_a_record_it_cannot_write_is_one_line_with_its_error_and_nothing_removed(root, caplog):
    earlier = _boot_file(root, host_identity())
    name = claims_name(boot_id(), host_identity())
    (root / name).touch(mode=0o600)
    fd = os.open(root / name, os.O_RDONLY | os.O_CLOEXEC)  # the write refused: EBADF
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with caplog.at_level(logging.DEBUG, logger="executor.host.lock"):
            claims_made(dir_fd, fd, name)
    finally:
        os.close(fd)
        os.close(dir_fd)
    assert earlier.exists()
    [(event, fields)] = _pruning_lines(caplog)
    assert event == "port_claims_not_pruned" and list(fields) == ["error"], fields
    assert fields["error"].startswith("OSError: [Errno 9] Bad file descriptor"), fields


@pytest.mark.parametrize("content", [
    b'{"host_id": "m", "host_name": "h"}\nnext\nlast\n',  # the first line's, whatever follows
])
def test_the_host_recorded_is_the_first_line_s(tmp_path, content):
    assert _recorded(tmp_path, content) == ("m", "h")


@pytest.mark.parametrize("content", [
    b'["m", "h"]\n', b"7\n", b'{"host_id": 1, "host_name": "h"}\n', b'{"host_id": "m"}\n', b"",
    b'{"host_id": "m",\n "host_name": "h"}\n',  # a record is one line
])
def test_a_first_line_that_is_no_record_of_two_strings_records_no_host(tmp_path, content):
    assert _recorded(tmp_path, content) is None


def _recorded(tmp_path: Path, content: bytes) -> tuple[str, str] | None:
    path = tmp_path / "ports.claims"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return recorded_host(fd)
    finally:
        os.close(fd)


def test_the_claims_file_is_made_owner_only_in_an_owner_only_root_and_never_through_a_link(tmp_path):
    root = tmp_path / "a" / "root"
    registry = Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=60.0))
    fd = registry.open_claims()
    try:
        name = claims_name(boot_id(), host_identity())
        assert os.path.samestat(os.fstat(fd), os.stat(root / name))
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700 == stat.S_IMODE(os.stat(root.parent).st_mode)
        assert stat.S_IMODE(os.stat(root / name).st_mode) == 0o600
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(fd)
    (root / name).unlink()
    (tmp_path / "elsewhere").write_bytes(b"")
    (root / name).symlink_to(tmp_path / "elsewhere")  # planted in its place
    with pytest.raises(OSError) as refused:
        os.close(registry.open_claims())
    assert refused.value.errno == errno.ELOOP and (tmp_path / "elsewhere").read_bytes() == b""
