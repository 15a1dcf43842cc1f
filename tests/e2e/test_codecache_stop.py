"""The code cache an installer writes (`python -m executor.codecache`) holds what a command
compiles at its stop too, not only at its start (importcut).

The kill's machine (`executor.task.kill`, five attrs classes) loads with a task's first kill
request, after the first report; a warm step that imported only a command's start modules
left its classes out of the file. Every stopped `stoker run` then compiled them as it was
stopped and wrote the file again at its exit (`codecache.save()`), and one that could not
write it (an installation its users cannot write to) compiled them at every stop; under an
address-space limit that save's read of the whole file was a MemoryError, a traceback and
exit 1 after the task had ended KILLED.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.test_startup_imports import SLEEPER, run_job
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)


def cache_file(directory: Path, profile: str) -> Path:
    return directory / f"attrs-{profile}.{sys.implementation.cache_tag}.bin"


def test_a_stopped_stoker_run_compiles_nothing_the_warm_step_wrote_the_file_without(tmp_path):
    cache = tmp_path / "codecache"
    cache.mkdir(mode=0o700)
    env = {"STOKER_CODE_CACHE": str(cache)}
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # a save would not write
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "run"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**clean, "PYTHONPATH": str(REPO), **env})
    assert warm.returncode == 0, warm.stderr
    written = cache_file(cache, "run").stat()
    run_job(tmp_path, textwrap.dedent(SLEEPER.format(extra="", logger="")), env=env)  # RUNNING, then SIGTERM
    assert "KILLED" in (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()[-3000:]
    after = cache_file(cache, "run").stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns), "written again at its exit"
