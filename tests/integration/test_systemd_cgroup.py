"""`stoker run` as a systemd service's main process, and its task cgroup (README "Running
under systemd"): below the unit's own cgroup only when systemd delegated it (`Delegate=yes`,
marked with the `user.delegate` attribute), never below a unit systemd did not delegate.
A real v2 cgroup named like a unit's (`*.service`), a real process moved into it with the
SYSTEMD_EXEC_PID systemd gives the process it starts (its own pid), and the real
`cgroups.create` in that process."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from executor.procs.cgroup_paths import CgroupKind, own_places
from tests.support import cgroups
from tests.support.stoker_proc import REPO, measured
from tests.support.users import stoker_as

PROBE = """
import os, sys
from executor.procs import cgroups
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as procs:
    procs.write(str(os.getpid()))
made = cgroups.create("stoker-probe-" + sys.argv[2], "auto")
if isinstance(made, cgroups.NoCgroup):
    print("none", made.reason)
else:
    print(made.place.kind.value, made.directory)
    cgroups.discard(made)
"""


@pytest.fixture
def unit_cgroup():
    """An empty v2 cgroup beside this process's, named like a service's cgroup."""
    if os.geteuid() != 0 or (why := cgroups.unavailable("auto")) is not None:
        pytest.skip(f"needs root and a v2 task cgroup here ({'not root' if os.geteuid() else why})")
    places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    v2 = next((p for p in places if p.kind is CgroupKind.V2), None)
    if v2 is None:
        pytest.skip("no cgroup v2 hierarchy shows this process's cgroup")
    unit = Path(v2.directory) / f"stoker-test-{uuid.uuid4().hex[:8]}.service"
    unit.mkdir()
    yield unit
    for below in unit.iterdir():
        if below.is_dir():
            cgroups.remove(str(below))
    unit.rmdir()


def probe(unit: Path, exec_pid: str | None, code: str = PROBE) -> list[str]:
    """`exec_pid`: SYSTEMD_EXEC_PID (`$$`: the probe's own pid: the shell execs python)."""
    env = measured({"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)})
    script = f'SYSTEMD_EXEC_PID={exec_pid} exec "$@"' if exec_pid is not None else 'exec "$@"'
    out = subprocess.run(["sh", "-c", script, "sh", sys.executable, "-c", code, str(unit), uuid.uuid4().hex[:8]],
                         env=env, capture_output=True, text=True, timeout=30, check=True).stdout
    return out.split(" ", 1)


def test_no_task_cgroup_below_a_service_systemd_did_not_delegate(unit_cgroup):
    kind, said = probe(unit_cgroup, "$$", PROBE.replace("made.directory)", "made.describe())"))
    assert kind != CgroupKind.V2.value, said  # the v1 freezer, or none: either line says why
    assert f"is systemd's, for {unit_cgroup.name}, which is not delegated (Delegate=yes" in said, said
    os.setxattr(unit_cgroup, "user.delegate", b"1")  # what systemd marks Delegate=yes with
    kind, said = probe(unit_cgroup, "$$")
    assert (kind, os.path.dirname(said.strip())) == (CgroupKind.V2.value, str(unit_cgroup))


@pytest.mark.parametrize("exec_pid", [None, "1"])
def test_a_process_systemd_did_not_start_for_the_unit_uses_its_cgroup_as_ever(unit_cgroup, exec_pid):
    """Not the process systemd started: a shell's `stoker run`, or a `stoker executor` that
    inherited a Mesos agent unit's SYSTEMD_EXEC_PID (another pid)."""
    kind, said = probe(unit_cgroup, exec_pid)
    assert (kind, os.path.dirname(said.strip())) == (CgroupKind.V2.value, str(unit_cgroup))


def test_a_cgroup_systemd_handed_to_the_units_user_is_delegated(unit_cgroup):
    """`Delegate=yes` with `User=`: systemd makes the unit's cgroup that user's (its directory
    and the files a delegate writes), and may mark it only with `trusted.delegate`, which that
    user cannot read. The process systemd started, as that user (nobody here), makes its task's
    cgroup there; one root still owns (no `Delegate=`) it may not, and the reason says why."""
    python = stoker_as(65534, 65534)
    if python is None:
        pytest.skip("no setpriv, or no Python nobody may run")
    script = f'echo $$ > {unit_cgroup}/cgroup.procs && SYSTEMD_EXEC_PID=$$ exec "$@"'
    probe = PROBE.replace("with open(", "if False:\n  with open(", 1)  # systemd moved it there already

    def run() -> list[str]:
        done = subprocess.run(["sh", "-c", script, "sh", *python[:-2], "-c", probe, str(unit_cgroup),
                               uuid.uuid4().hex[:8]], capture_output=True, text=True, timeout=30, check=True, cwd="/")
        return done.stdout.split(" ", 1)

    kind, said = run()
    assert kind == "none" and f"for {unit_cgroup.name}, which is not delegated" in said, said
    for name in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
        os.chown(unit_cgroup / name, 65534, 65534)
    kind, said = run()
    assert (kind, os.path.dirname(said.strip())) == (CgroupKind.V2.value, str(unit_cgroup))
