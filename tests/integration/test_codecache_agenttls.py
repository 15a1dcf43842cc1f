"""The `executor` profile's code cache file holds the TLS module's classes: an executor
whose agent has libprocess SSL on compiles no attrs method at its start (2 classes, ~1.5 ms
each start on an installation its users cannot write to), while a plain one never loads it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import json, sys
    from executor import codecache, deferred
    deferred.defer()
    codecache.install("executor")
    from healthcheck import plainhttp
    plainhttp.load()  # as `stoker executor` starts: http.client without ssl
    import executor.cli.main, executor.mesos.process, executor.mesos.transport
    plain = "_ssl" in sys.modules or "executor.mesos.agenttls" in sys.modules
    import executor.mesos.agenttls
    print(json.dumps({"plain_loaded_tls": plain, "compiled": [f[0] for f in codecache._cache.fresh]}))
""")


def test_a_tls_executor_s_start_compiles_no_attrs_method_once_warmed(tmp_path, seeded_pyc):
    # the attrs code cache (tmp_path) fresh; the modules' compiled code from the session's seed
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path), "PYTHONPYCACHEPREFIX": str(seeded_pyc)}
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "executor"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert warm.returncode == 0, warm.stderr
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=60, check=True)
    assert json.loads(probe.stdout) == {"plain_loaded_tls": False, "compiled": []}
