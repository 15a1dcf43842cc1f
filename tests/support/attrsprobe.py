"""A probe script run in a fresh interpreter with the code cache at a directory (or attrs'
own methods, mode "plain"), its JSON answer read back: what the attrs-methods tests compare."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.stoker_proc import REPO


def run_probe(script: str, cache: Path, mode: str, *, seed: int, timeout: float = 60) -> dict:
    """`script`'s printed JSON, run as `python -c script mode` from the repository with
    STOKER_CODE_CACHE=`cache` and a fixed hash seed (hashes compared across processes)."""
    env = {**os.environ, "STOKER_CODE_CACHE": str(cache), "PYTHONHASHSEED": str(seed)}
    result = subprocess.run([sys.executable, "-c", script, mode], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
