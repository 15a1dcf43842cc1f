"""`runstart.forget_listings` (executor/local/runstart.py): the import system's finders and their directory listings
dropped as `stoker run`'s start ends (`LocalRun._attempt`), but those of Stoker's own
packages, in a real interpreter with Stoker's loader of modules without docstrings
(`executor.nodocs`): a module of Stoker's imported after it is found by the finder kept
(its directory not listed again), one of the standard library's by a finder made again,
both by that loader."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from executor import nodocs
nodocs.install()
from executor.local import runstart
import executor.host.replacefile, math, json.decoder  # a finder of executor/host; clock's one import; a standard package
host = os.path.dirname(executor.host.__file__)
finder = sys.path_importer_cache[host]
before = sorted(sys.path_importer_cache)
runstart.forget_listings()
after = sorted(sys.path_importer_cache)
from executor.host import clock  # not loaded before
import colorsys  # nor this, a module of the standard library's top level
print(json.dumps([before, after, sys.path_importer_cache[host] is finder,
                  [type(m.__loader__).__name__ for m in (clock, colorsys)]]))
"""


def test_stoker_s_package_finders_are_kept_and_a_late_import_loads_by_stoker_s_loader():
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    before, after, same, loaders = json.loads(done.stdout)
    stdlib = next(path for path in before if path.endswith("json"))  # json's package: not Stoker's
    assert stdlib not in after and len(before) > len(after) + 3, (before, after)
    own = [str(REPO / package) for package in ("executor", "config", "healthcheck")]
    assert after == sorted(path for path in before if any(path == top or path.startswith(top + "/") for top in own))
    assert (same, loaders) == (True, ["NoDocLoader", "NoDocLoader"])
