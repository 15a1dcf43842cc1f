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
none = sorted(path for path, finder in sys.path_importer_cache.items() if finder is None)  # no directory there
runstart.forget_listings()
after = sorted(sys.path_importer_cache)
from executor.host import clock  # not loaded before
import colorsys  # nor this, a module of the standard library's top level
print(json.dumps([before, none, after, sys.path_importer_cache[host] is finder,
                  [type(m.__loader__).__name__ for m in (clock, colorsys)]]))
"""


def test_stoker_s_package_finders_are_kept_and_a_late_import_loads_by_stoker_s_loader():
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    before, none, after, same, loaders = json.loads(done.stdout)
    stdlib = next(path for path in before if path.endswith("json"))  # json's package: not Stoker's
    assert stdlib not in after and len(before) > len(after) + 3, (before, after)
    own = [str(REPO / package) for package in ("executor", "config", "healthcheck")]
    assert after == sorted(path for path in before
                           if path in none or any(path == top or path.startswith(top + "/") for top in own))
    assert (same, loaders) == (True, ["NoDocLoader", "NoDocLoader"])


LATER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
later = sys.argv[2]
sys.path.insert(1, later)  # searched before the standard library: an operator's PYTHONPATH entry, made after the start
from executor.local import runstart
import colorsys  # a search past it: the path finder keeps None for it (no directory there)
assert sys.path_importer_cache[later] is None
runstart.forget_listings()
os.mkdir(later)
with open(os.path.join(later, "wave.py"), "w") as planted:
    planted.write("PLANTED = True\n")
import wave  # a late import of the standard library's
print(json.dumps([wave.__file__, hasattr(wave, "PLANTED")]))
"""


def test_a_directory_without_a_finder_at_the_start_is_not_searched_by_a_late_import(tmp_path):
    """A sys.path entry the start found no directory at keeps its None: Python searches it no
    more, a late import of the standard library's finds the same file as without
    `forget_listings` (was: the entry searched again, a `wave.py` put there after the start
    stood in for the standard library's)."""
    later = tmp_path / "later"
    done = subprocess.run([sys.executable, "-c", LATER, str(REPO), str(later)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    path, planted = json.loads(done.stdout)
    assert (planted, str(later) in path) == (False, False), path


BUSY = r"""
import json, os, sys, threading
sys.path.insert(0, sys.argv[1])
from _frozen_importlib_external import PathFinder
from executor.local import runstart
sys.setswitchinterval(1e-6)
stop, failed = threading.Event(), []
places = [os.path.join(sys.argv[2], str(n)) for n in range(64)]
for place in places:
    os.mkdir(place)
def finders():  # another thread's imports, each searching a directory: its finder made again, cached
    n = 0
    while not stop.is_set():
        PathFinder.find_spec("nothing_here", [places[n % len(places)]])
        n += 1
thread = threading.Thread(target=finders)
thread.start()
try:
    for _ in range(3000):
        try:
            runstart.forget_listings()
        except RuntimeError as exc:
            failed.append(str(exc))
            break
finally:
    stop.set()
    thread.join()
print(json.dumps(failed))
"""


def test_forgetting_while_another_thread_imports_never_fails(tmp_path):
    """`forget_listings` while another thread's import caches a finder (attempt 2 starts
    while the observer's or a health check's thread imports): no `RuntimeError:
    dictionary changed size during iteration` out of `LocalRun._attempt`, its owner made
    and never run."""
    done = subprocess.run([sys.executable, "-c", BUSY, str(REPO), str(tmp_path)], capture_output=True, text=True,
                          timeout=50)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
