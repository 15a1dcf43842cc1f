"""What the hostile-image tests share (tests/integration/test_image_hostile.py, the image's
files, mount points and volumes; test_image_seal.py, the nosuid,nodev seal and the flags it
keeps; test_image_taskfs_swaps.py, a `taskfs` swapped by the task's owner): the session's
rootfs as a module's fixture, the check after each test that nothing is left mounted under
its tmp_path, and `in_private_mounts`, which runs what mounts in a child in a mount namespace
of its own, with a timeout, so that a regression can neither touch the host's mount table nor
hang the suite. A test module takes the fixtures by importing them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.rootfs import session_rootfs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return session_rootfs(tmp_path_factory)


@pytest.fixture(autouse=True)
def no_mount_left(tmp_path):
    yield
    left = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(tmp_path) in line]
    assert not left, left


def in_private_mounts(tmp_path: Path, body: str) -> dict:
    """BODY (Python; `taskfs`, `sandbox` and `decoy` are tmp_path's directories of those
    names) run in a child in a private mount namespace; the dict it leaves in `result`."""
    code = textwrap.dedent("""
        import json, os, subprocess, sys
        from pathlib import Path
        from executor.mesos.imagefs import ImageError, ImageSandbox
        tmp = Path(sys.argv[1])
        taskfs, sandbox, decoy = tmp / "taskfs", tmp / "sandbox", tmp / "decoy"
        result = {}
        def mounted():
            return [l.split()[4] for l in open("/proc/self/mountinfo") if str(tmp) in l]
        def with_bash():  # what the executor asks of an image first
            (taskfs / "bin").mkdir(parents=True)
            (taskfs / "bin/bash").write_text("")
            (taskfs / "bin/bash").chmod(0o755)
    """) + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", code,
                           str(tmp_path)], capture_output=True, text=True, timeout=20, cwd=REPO, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])
