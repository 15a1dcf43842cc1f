"""`stoker run` under a umask that takes the owner's own permissions is refused before it
makes anything (it made its sandbox and registry without the owner's write, then called the
sandbox "not writable")."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.configs import job_text, write_config
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)


def test_a_umask_without_the_owner_s_write_is_refused_before_anything_is_made(tmp_path):
    config = write_config(tmp_path, job_text())
    work = tmp_path / "work"
    work.mkdir()
    registry = tmp_path / "registry"
    done = subprocess.run([sys.executable, "-m", "executor", "run", str(config)], cwd=work, umask=0o277,
                          env={**os.environ, "PYTHONPATH": str(REPO), "STOKER_ROOT": str(registry)},
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("stoker run: the umask 0277 takes the owner's own permissions (0200): the sandbox, "
                           "its .stoker and .logs, and the task's own files would not be writable by their "
                           "owner; use one that leaves the owner's (umask 022, or 077)\n")
    assert os.listdir(work) == [] and not registry.exists()
