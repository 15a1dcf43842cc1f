"""`stoker run` under a umask that takes the owner's own permissions is refused before it
makes anything when it runs as a user other than root (it made its sandbox and registry
without the owner's write, then called the sandbox "not writable"). Root's runs go on: root
reads, writes and enters what it owns whatever its modes (`umask 0277` in a root shell or a
unit's `UMask=0277` ran its tasks before the refusal, and was refused with it)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.configs import job_text, write_config
from tests.support.stoker_proc import REPO
from tests.support.users import STRANGER, needs_root, open_sandbox, stoker_as

pytestmark = pytest.mark.timeout(60)

REFUSAL = ("stoker run: the umask 0277 takes the owner's own permissions (0200): the sandbox, "
           "its .stoker and .logs, and the task's own files would not be writable by their "
           "owner; use one that leaves the owner's (umask 022, or 077)\n")


@needs_root
def test_a_umask_without_the_owner_s_write_is_refused_before_anything_is_made():
    with open_sandbox() as shared:
        os.chmod(shared, 0o777)  # the stranger may make things here: the refusal makes none
        config = write_config(shared, job_text())
        work = shared / "work"
        work.mkdir()
        os.chmod(work, 0o777)
        registry = shared / "registry"
        stoker = stoker_as(STRANGER, STRANGER)
        if stoker is None:
            pytest.skip("no Python (or no setpriv) that another user may run")
        done = subprocess.run([*stoker, "run", str(config)], cwd=work, umask=0o277,
                              env={**os.environ, "STOKER_ROOT": str(registry)},
                              capture_output=True, text=True, timeout=30)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", REFUSAL)
        assert os.listdir(work) == [] and not registry.exists()


@needs_root
def test_root_under_a_umask_without_the_owner_s_write_runs_its_task(tmp_path):
    config = write_config(tmp_path, job_text())
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "executor", "run", "--sandbox", str(work / "sb"), str(config)],
                          cwd=work, umask=0o277, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO), "STOKER_ROOT": str(tmp_path / "registry")})
    assert done.returncode == 0, done.stderr
    assert "FINISHED" in done.stdout and "umask" not in done.stderr
    assert (work / "sb" / ".logs" / "web" / "0" / "stdout").read_text() == "hi\n"
