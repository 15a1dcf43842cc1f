"""`stoker run` in a user namespace (`unshare -r`, rootless tools' `podman unshare`): a file
whose owner the namespace does not map shows as the kernel's overflow uid (65534, `nobody`),
and a refusal names it as what it is, an owner outside the namespace. Was: `... belongs to
nobody (uid 65534)`, though nobody owns it (real root, or any user outside, shows so).
Here root maps itself alone (`unshare -r`), so a directory of another uid is unmapped; needs
root and unshare, skipped elsewhere."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from executor.host.replacefile import maps
from tests.support.configs import job_text, write_config
from tests.support.stoker_proc import REPO
from tests.support.users import STRANGER, needs_root, open_sandbox

pytestmark = needs_root


def test_a_refusal_names_an_owner_outside_the_namespace_as_such(tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-r", "true"], capture_output=True, timeout=30).returncode:
        pytest.skip("no user namespace to be made here")
    config = write_config(tmp_path, job_text())
    with open_sandbox() as top:
        os.chmod(top, 0o755)
        theirs = top / "theirs"
        theirs.mkdir()
        os.chown(theirs, STRANGER, STRANGER)
        done = subprocess.run([unshare, "-r", sys.executable, "-m", "executor", "run", str(config),
                               "--sandbox", str(theirs / "sandbox")], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO), "STOKER_PLAN_CACHE": "off"},
                              capture_output=True, text=True, timeout=60)
        assert not (theirs / "sandbox").exists()
    assert done.returncode == 2, done.stderr
    assert (f"is in a directory another user could change ({theirs} belongs to a user outside this user "
            "namespace (shown as uid 65534))") in done.stderr, done.stderr


def test_a_mapped_uid_is_a_user_of_the_namespace_even_at_the_overflow_uid():
    """A namespace that maps 0-65535 (Docker's userns-remap) has its own `nobody` at 65534."""
    assert maps("         0          0 4294967295\n", 65534)  # the host's
    assert maps("0 100000 65536\n", 65534)
    assert not maps("0 1000 1\n", 65534)  # `unshare -r`: only root
    assert maps("0 1000 1\n1 100000 65536\n", 65534) and not maps("0 1000 1\n1 100000 65536\n", 65537)
