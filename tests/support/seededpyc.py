"""One PYTHONPYCACHEPREFIX per test session, filled once by the warm step (`python -m
executor.codecache`, every profile): the standard library's, attrs' and Stoker's modules
compiled there, ours without docstrings. A test whose prefix only spares its interpreters
that compile (each start in a fresh prefix compiled them all again: about 1 s of CPU, the
warm step several) starts from a copy of it; a test that checks what gets written under a
prefix keeps a fresh one of its own. The seed is this session's own tree's, compiled by
this session's code: nothing in it is stale. xdist's workers share one, the first to come
filling it under a lock."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.stoker_proc import REPO


def seed(root: Path) -> Path:
    """The seeded prefix under `root` (made by the first caller, the others waiting for it)."""
    prefix = root / "seeded-pyc"
    done = root / "seeded-pyc.done"
    with open(root / "seeded-pyc.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(prefix, ignore_errors=True)
            env = {**os.environ, "STOKER_CODE_CACHE": str(root / "seeded-attrs"), "PYTHONPYCACHEPREFIX": str(prefix)}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            warm = subprocess.run([sys.executable, "-m", "executor.codecache"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert warm.returncode == 0, warm.stderr
            done.touch()
    return prefix


def copy_of(prefix: Path, where: Path) -> Path:
    """A test's own prefix at `where`: the seed's files copied (what it writes stays its own)."""
    shutil.copytree(prefix, where, symlinks=True)
    return where
