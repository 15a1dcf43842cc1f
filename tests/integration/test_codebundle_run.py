"""`executor.codebundle` in a real `stoker run`: which process opens which bundle file, and
what is left of them once the start is over.

Each case warms a code cache of its own (`python -m executor.codecache run`, then `plan`: the
two bundle files), and runs `stoker run` with a test-only `sitecustomize` that notes each
open of a bundle file (an audit hook: the supervisor's or a child's) and, right after
`runstart.forget_listings`, what the supervisor still holds of them: `_OpenBundle` objects
alive, descriptors open on a bundle file, modules listed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor import codebundle
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(180)

OPENS = """
import os as _os, sys as _sys
_NOTES, _MAIN = _os.environ["BUNDLE_NOTES"], _os.getpid()

def _note(line):
    fd = _os.open(_NOTES, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o600)
    try:
        _os.write(fd, (line + "\\n").encode())
    finally:
        _os.close(fd)

def _audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].endswith(".codebundle"):
        _note(("supervisor " if _os.getpid() == _MAIN else "child ") + _os.path.basename(args[0]))

_sys.addaudithook(_audit)
"""

LEFT = """
def _patch(module):
    forget = module.forget_listings

    def forget_listings(*args, **kwargs):
        forget(*args, **kwargs)
        import gc
        bundle = sys.modules["executor.codebundle"]
        gc.collect()
        alive = sum(type(thing) is bundle._OpenBundle for thing in gc.get_objects())
        fds = 0
        for name in os.listdir("/proc/self/fd"):
            try:
                fds += os.readlink(f"/proc/self/fd/{name}").endswith(".codebundle")
            except OSError:
                continue
        _note(f"left {alive} {fds} {len(bundle._modules)}")

    module.forget_listings = forget_listings
"""


LIST_FDS = "ls -l /proc/self/fd"


def job(processes: int, cmdline: str = "true") -> str:
    return (f"processes = [Process(name='p%d' % i, cmdline={cmdline!r}) for i in range({processes})]\n"
            "jobs = [Job(cluster='local', role='me', environment='test', name='job',\n"
            "            task=Task(processes=processes, resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")


@pytest.fixture
def place(tmp_path: Path) -> Path:
    (tmp_path / "cache").mkdir(mode=0o755)
    os.chmod(tmp_path / "cache", 0o755)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(OPENS + patched_at_load("executor.local.runstart", LEFT))
    environ = environment(tmp_path)
    for profile in ("run", "plan"):
        subprocess.run([sys.executable, "-P", "-m", "executor.codecache", profile], cwd=tmp_path, check=True,
                       env={**environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120)
    return tmp_path


def environment(place: Path) -> dict[str, str]:
    environ = {**os.environ, "STOKER_CODE_CACHE": str(place / "cache"), "HOME": str(place / "home"),
               "PYTHONPATH": os.pathsep.join([str(REPO), str(place / "site")]),
               "BUNDLE_NOTES": str(place / "notes")}
    for name in ("PYTHONPYCACHEPREFIX", "STOKER_PLAN_CACHE", "XDG_CACHE_HOME", "STOKER_EARLY_START"):
        environ.pop(name, None)
    return environ


def stoker_run(place: Path, *args: str) -> list[str]:
    """`stoker run job.aurora ARGS`'s notes (each a line), once no run of it got a bundle's
    descriptor (a first run's start while both files are open: the supervisor's, its planning
    child's)."""
    (place / "notes").unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", "executor", "run", "job.aurora", *args], cwd=place,
                          env=environment(place), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    for listed in (place / args[1] / ".logs").glob("p*/0/stdout"):  # (LIST_FDS's, or none)
        text = listed.read_text()
        assert ".codebundle" not in text and (not text or " 0 -> /dev/null" in text), text
    return (place / "notes").read_text().splitlines()


def test_a_first_run_s_planning_child_reads_the_plan_bundle_and_a_re_run_s_supervisor_never_does(place: Path) -> None:
    (place / "job.aurora").write_text(job(2, LIST_FDS))
    first = stoker_run(place, "--sandbox", str(place / "sb1"))
    assert sorted(set(first) - {"left 0 0 0"}) == [f"child {codebundle.PLAN}", f"supervisor {codebundle.NAME}"]
    again = stoker_run(place, "--sandbox", str(place / "sb2"))
    assert sorted(set(again) - {"left 0 0 0"}) == [f"supervisor {codebundle.NAME}"]


def test_a_first_run_planned_by_the_supervisor_s_own_child_reads_the_plan_bundle_there(place: Path) -> None:
    # a run the first run's early start does not plan ahead (another flag than --sandbox): its planning child is
    # `executor.local.planning`'s, which loaded the config language module by module (23 files) from beside the bundle
    (place / "job.aurora").write_text(job(2, LIST_FDS))
    notes = stoker_run(place, "--sandbox", str(place / "sb"), "--root", str(place / "root"))
    assert sorted(set(notes) - {"left 0 0 0"}) == [f"child {codebundle.PLAN}", f"supervisor {codebundle.NAME}"]


def test_nothing_of_either_bundle_is_kept_once_a_start_of_a_hundred_processes_is_over(place: Path) -> None:
    (place / "job.aurora").write_text(job(100))
    for sandbox in ("sb1", "sb2"):  # a new config's start (the planning child's), then a re-run's
        notes = stoker_run(place, "--sandbox", str(place / sandbox))
        assert [line for line in notes if line.startswith("left")] == ["left 0 0 0"], notes

