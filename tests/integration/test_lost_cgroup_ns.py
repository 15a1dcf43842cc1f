"""A lost attempt's task cgroup, found by a re-run in a cgroup namespace of its own
(`cgroups.lost_cgroups`, `leftovers.end_lost_attempts`), with real namespaces, mounts,
cgroups and processes.

In a cgroup namespace the kernel shows a process outside it at a path with `..` levels
(`/../x/stoker-ID`, /proc/PID/cgroup), and a cgroup hierarchy mounted inside it (a
container's own /sys/fs/cgroup) shows only the namespace's subtree, rooted at `/`: that
process's cgroup is on none of this namespace's mounts. Joined to the mount point as it
was, the path named a directory outside the cgroup file system, and the re-run's rmdir
removed it (and the empty directories below it).

Every cgroup made is removed at teardown, every process killed; the mount lives and ends
with a mount namespace of the test's own."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support import cgroups as cgroup_support
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# The re-run's look-up as `end_lost_attempts` does it (then its removal), from a cgroup
# namespace rooted at argv[1], with the freezer hierarchy mounted at argv[2] inside it.
RERUN = """
import json, subprocess, sys
from executor.procs import cgroups
subprocess.run(["mount", "-t", "cgroup", "-o", "freezer", "none", sys.argv[2]], check=True)
found = sorted(cgroups.lost_cgroups(sys.argv[3], [int(sys.argv[4])]))
said = [cgroups.remove_emptied(d, 5) for d in found]
print(json.dumps({"found": found, "said": said}))
"""


def _namespaced() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: cgroup namespaces, mounts, the freezer's cgroups")
    if not shutil.which("unshare") or not os.access(cgroup_support.FREEZER, os.W_OK):
        pytest.skip("no unshare(1), or no writable cgroup-v1 freezer here")


def test_a_marked_process_outside_the_re_run_s_cgroup_namespace_names_no_directory(tmp_path):
    """The marked process is in `G/x/stoker-ID`, the re-run in `G/ns`'s namespace with the
    freezer mounted at `mnt/d`: `mnt/d/../x/stoker-ID` is `mnt/x/stoker-ID`, a plain
    directory here, which must stay (as must the one below it)."""
    _namespaced()
    tag = uuid.uuid4().hex[:16]
    group = Path(cgroup_support.FREEZER, f"lostns-{tag[:8]}")
    lost = group / "x" / f"stoker-{tag}"
    plain = tmp_path / "mnt" / "x" / f"stoker-{tag}"
    (plain / "inner").mkdir(parents=True)
    (tmp_path / "mnt" / "d").mkdir()
    marked = None
    try:
        (group / "ns").mkdir(parents=True)
        lost.mkdir(parents=True)
        marked = subprocess.Popen(["sleep", "600"])
        (lost / "cgroup.procs").write_text(str(marked.pid))
        enter = f'echo $$ > {group / "ns" / "cgroup.procs"} && exec unshare --cgroup "$@"'
        rerun = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", enter, "sh",
             sys.executable, "-c", RERUN, str(group / "ns"), str(tmp_path / "mnt" / "d"),
             f"stoker-{tag}", str(marked.pid)],
            cwd=REPO, capture_output=True, text=True, timeout=30)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout) == {"found": [], "said": []}
        assert (plain / "inner").is_dir()
    finally:
        if marked is not None:
            marked.kill()
            marked.wait(10)
        for directory in (lost, lost.parent, group / "ns", group):
            with contextlib.suppress(OSError):
                directory.rmdir()
