"""Names longer than a file name may be: a job's, in the default sandbox's name, and a
sandbox or task id given to a command. Real directories, the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from executor.local import planfiles
from executor.local.runstart import SandboxError, make_sandbox
from tests.support.stoker_proc import REPO


@pytest.mark.parametrize("job", ["a" * 300, "作" * 100], ids=["300-letters", "100-chinese"])
def test_a_long_job_name_makes_a_default_sandbox_whose_name_fits(tmp_path, monkeypatch, job):
    """`sandbox-JOB-DATE-TIME-RANDOM` of a job named with 300 letters (or 100 Chinese ones,
    300 bytes) was longer than the 255 bytes of a file name: `stoker run` ended in a
    traceback, 'File name too long'."""
    monkeypatch.chdir(tmp_path)
    made = make_sandbox(None, job)
    assert made.is_dir() and len(os.fsencode(made.name)) <= 255
    assert planfiles.is_sandbox_name(made.name, job) and made.name.startswith("sandbox-" + job[:60])


def test_a_sandbox_or_task_id_too_long_for_a_file_name_is_one_error_line(tmp_path):
    """`stoker run --sandbox` of such a name, and `stoker status` of it (or of a task id that
    long), ended in a traceback; now one `stoker: error:` line, exit 2."""
    long = tmp_path / ("b" * 300)
    with pytest.raises(SandboxError, match=r"^cannot create sandbox .*b: File name too long$"):
        make_sandbox(str(long), "job")
    for given in (str(long), "c" * 300):
        done = subprocess.run([sys.executable, "-m", "executor", "status", given], capture_output=True,
                              timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 2 and done.stderr.count(b"\n") == 1, done.stderr.decode()
        assert done.stderr.startswith(b"stoker: error: sandbox ")
        assert b"does not exist" in done.stderr
