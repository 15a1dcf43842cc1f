"""The classes a supervisor holds for its whole life: none of Stoker's that only the type
checker reads. A `typing.Protocol` is an ABC with its own registry and caches (some 7 KiB a
class); Stoker's Protocols (the task's ports, the reaper's `ChildWatcher`, a run's `Wrap`,
the console's `ScreenLine`, a health `Checker`) are defined under TYPE_CHECKING, since
nothing checks one with `isinstance` and annotations are strings. A fresh interpreter that
imports what `stoker run` imports, as its entry point has it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)

PROBE = textwrap.dedent("""
    import gc, json
    from executor import codecache, deferred, nodocs
    nodocs.install()
    deferred.defer()
    codecache.install("run")
    import executor.cli.main, executor.local.run, executor.task.wiring, healthcheck.base
    ours = ("executor", "config", "healthcheck")
    print(json.dumps(sorted(f"{c.__module__}.{c.__qualname__}" for c in gc.get_objects()
                            if isinstance(c, type) and getattr(c, "_is_protocol", False)
                            and c.__module__.split(".")[0] in ours)))
""")


def test_a_supervisor_holds_no_protocol_class_of_stokers():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []  # was: ScreenLine, ChildWatcher, Wrap and Checker (28 KiB of its USS)
