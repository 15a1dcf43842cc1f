"""`stoker run` in a user namespace (`unshare -r`, rootless tools' `podman unshare`): a file
whose owner the namespace does not map shows as the kernel's overflow uid (65534, `nobody`),
and a refusal names it as what it is, an owner outside the namespace. Was: `... belongs to
nobody (uid 65534)`, though nobody owns it (real root, or any user outside, shows so); where
the namespace maps a `nobody` of its own, the refusal names both it may be.
Here root maps itself alone (`unshare -r`), so a directory of another uid is unmapped; needs
root and unshare, skipped elsewhere."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.host.replacefile import maps, maps_every_id
from tests.support.configs import job_text, write_config
from tests.support.stoker_proc import REPO
from tests.support.users import STRANGER, needs_root, open_sandbox
from tests.support.waiting import wait_for

pytestmark = needs_root


def test_a_refusal_names_an_owner_outside_the_namespace_as_such(tmp_path):
    unshare, config = _unshare("-r"), write_config(tmp_path, job_text())
    with _another_user_s_directory() as theirs:
        done = subprocess.run([unshare, "-r", sys.executable, "-m", "executor", "run", str(config),
                               "--sandbox", str(theirs / "sandbox")], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO), "STOKER_PLAN_CACHE": "off"},
                              capture_output=True, text=True, timeout=60)
        assert not (theirs / "sandbox").exists()
    assert done.returncode == 2, done.stderr
    assert (f"is in a directory another user could change ({theirs} belongs to a user outside this user "
            "namespace (shown as uid 65534))") in done.stderr, done.stderr


def test_a_refusal_in_a_namespace_that_maps_its_own_nobody_names_both_it_may_be(tmp_path):
    """A namespace that maps ids up to 65534 but not every one (Docker's userns-remap: 0-65535
    onto 100000-165535) has a `nobody` of its own, and shows every owner it does not map (the
    host's root, on a bind mount) as that same uid: the refusal names both. Was: `... belongs
    to nobody (uid 65534)`, the message the overflow uid's naming was made to end. The
    namespace maps 0 to root and 65534 to a host uid of no one's; the directory is another's."""
    unshare, config = _unshare("-U"), write_config(tmp_path, job_text())
    with _another_user_s_directory() as theirs:  # not mapped: shown as 65534, as the namespace's nobody is
        # bash waits for the maps (one line on stdin), then runs stoker as root of the namespace
        run = subprocess.Popen([unshare, "-U", "/bin/bash", "-c", 'read -r && exec "$@"', "bash", sys.executable,
                                "-m", "executor", "run", str(config), "--sandbox", str(theirs / "sandbox")],
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "STOKER_PLAN_CACHE": "off"},
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: _user_namespace(run.pid) != _user_namespace(os.getpid()), timeout_secs=30,
                     interval_secs=0.01, message="unshare's own user namespace")
            Path(f"/proc/{run.pid}/uid_map").write_text(f"0 0 1\n65534 {STRANGER + 1} 1\n")
            Path(f"/proc/{run.pid}/gid_map").write_text("0 0 1\n")
            _out, err = run.communicate("\n", timeout=60)
        finally:
            run.kill()
            run.wait(timeout=30)
        assert not (theirs / "sandbox").exists()
    assert run.returncode == 2, err
    assert (f"({theirs} belongs to nobody (uid 65534), or a user outside this user namespace (shown as "
            "uid 65534))") in err, err


def _unshare(flag: str) -> str:
    """`unshare`, where it can make a user namespace with `flag` (`-r`, `-U`); else skipped."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, flag, "true"], capture_output=True, timeout=30).returncode:
        pytest.skip("no user namespace to be made here")
    return unshare


@contextlib.contextmanager
def _another_user_s_directory() -> Iterator[Path]:
    """A directory of another user (STRANGER's) in one every user may traverse."""
    with open_sandbox() as top:
        os.chmod(top, 0o755)
        theirs = top / "theirs"
        theirs.mkdir()
        os.chown(theirs, STRANGER, STRANGER)
        yield theirs


def _user_namespace(pid: int) -> str:
    """The user namespace `pid` is in (`user:[inode]`)."""
    return os.readlink(f"/proc/{pid}/ns/user")


def test_a_mapped_uid_is_a_user_of_the_namespace_even_at_the_overflow_uid():
    """A namespace that maps 0-65535 (Docker's userns-remap) has its own `nobody` at 65534."""
    assert maps("         0          0 4294967295\n", 65534)  # the host's
    assert maps("0 100000 65536\n", 65534)
    assert not maps("0 1000 1\n", 65534)  # `unshare -r`: only root
    assert maps("0 1000 1\n1 100000 65536\n", 65534) and not maps("0 1000 1\n1 100000 65536\n", 65537)
    assert maps_every_id("         0          0 4294967295\n")  # the host's: 65534 is nobody alone
    assert maps_every_id("0 0 1\n1 1 4294967294\n") and not maps_every_id("0 100000 65536\n")
