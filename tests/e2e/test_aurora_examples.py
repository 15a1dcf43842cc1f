"""`stoker inspect` over every `.aurora` file in the directory STOKER_AURORA_EXAMPLES names
(e.g. a checkout of Apache Aurora: its examples/jobs and end-to-end test jobs), skipped when
it is unset. Each job must inspect as the Aurora client would load it: either it inspects, or
it is refused only with "Config contains unbound variables", and then inspects once each of
those references is given with --bind (the values the client's --bind or binding helpers
would supply). Every job's outcome is printed (run with -s to see them)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.loader import job_key, load_jobs
from tests.support.stoker_proc import REPO

ROOT = os.environ.get("STOKER_AURORA_EXAMPLES")
pytestmark = pytest.mark.skipif(not ROOT, reason="STOKER_AURORA_EXAMPLES names no directory of .aurora files")


def _files() -> list[Path]:
    return sorted(Path(ROOT).rglob("*.aurora")) if ROOT else []


def inspect(path: Path, key: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor", "inspect", str(path), key, *extra],
                          cwd=path.parent, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)) if ROOT else str(p))
def test_every_job_inspects_as_the_aurora_client_loads_it(path):
    keys = [job_key(job) for job in load_jobs(path)]
    assert keys, f"{path} defines no job"
    for key in keys:
        done = inspect(path, key)
        if done.returncode == 0:
            print(f"\n{path.relative_to(ROOT)} {key}: inspects")
            continue
        assert "Config contains unbound variables: " in done.stderr, done.stderr
        refs = re.findall(r"{{([^{}]+)}}", done.stderr.split("Config contains unbound variables: ")[1])
        binds = [arg for ref in refs for arg in ("--bind", f"{ref}=bound-{len(ref)}")]
        again = inspect(path, key, *binds)
        assert again.returncode == 0, again.stderr
        assert "{{" + refs[0] + "}}" not in again.stdout
        print(f"\n{path.relative_to(ROOT)} {key}: needs --bind {', '.join(refs)}; then inspects")
        json_out = inspect(path, key, "--json", *binds)
        assert json_out.returncode == 0 and json_out.stdout.startswith('{"job": '), json_out.stderr
