"""An installation that lacks one of the dependencies only a few tasks or commands load
(kazoo: a task that announces; waitress: `stoker observe`), as a `pip install --no-deps` or a
distribution's packages may leave it: setup.py requires both and stoker.pyz carries both.
What needs it is refused with one line naming the package; everything else runs.

Each case is a real `stoker` process whose interpreter is told the package is not there
(`sys.modules[NAME] = None`, which makes importing it fail as a missing package does).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from executor.task import wiring
from executor.task.serverset import AnnounceError

pytestmark = pytest.mark.timeout(60)

WITHOUT = "import sys; sys.modules[{name!r}] = None; sys.argv[0] = 'stoker'; from executor.cli.start import run; run()"
JOB = """
    jobs = [Service(cluster='local', role='me', environment='test', name='{name}', {announce}
                    task=Task(processes=[Process(name='a', cmdline='echo ran')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def stoker_without(package: str, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STOKER_ROOT": str(tmp_path / "registry"), "STOKER_PLAN_CACHE": "off",
           "STOKER_EARLY_START": "off"}
    return subprocess.run([sys.executable, "-c", WITHOUT.format(name=package), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_a_job_that_announces_is_refused_without_kazoo_before_anything_starts(tmp_path):
    (tmp_path / "web.aurora").write_text(textwrap.dedent(JOB.format(
        name="web", announce="announce=Announcer(primary_port='http'),")))
    done = stoker_without("kazoo", ["run", "web.aurora", "--sandbox", "sb", "--announce", "127.0.0.1:1"], tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == ("stoker: error: 'web.aurora': job local/me/test/web: announcing in ZooKeeper needs the "
                           "kazoo package, which this installation of Stoker lacks (pip install 'kazoo>=2.9'; "
                           "stoker.pyz carries it)\n")
    assert not (tmp_path / "sb/.logs/a").exists()  # no process ran


def test_the_executors_check_refuses_the_task_with_the_reason(monkeypatch):
    """`stoker executor` turns this AnnounceError into TASK_FAILED (`invalid task: ...`)."""
    monkeypatch.setitem(sys.modules, "kazoo", None)
    for name in [m for m in sys.modules if m.startswith("kazoo.") or m == "executor.task.announcer"]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(AnnounceError, match=r"needs the kazoo package, which this installation of Stoker lacks"):
        wiring.load_announcer()


def test_without_kazoo_a_job_that_does_not_announce_runs(tmp_path):
    (tmp_path / "once.aurora").write_text(textwrap.dedent(JOB.format(name="once", announce="")).replace(
        "Service(", "Job("))
    done = stoker_without("kazoo", ["run", "once.aurora", "--sandbox", "sb"], tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert (tmp_path / "sb/.logs/a/0/stdout").read_text() == "ran\n"


def test_observe_without_waitress_is_one_error_line(tmp_path):
    done = stoker_without("waitress", ["observe", "--port", "0"], tmp_path)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == ("stoker: error: stoker observe needs the waitress package, which this installation of "
                           "Stoker lacks (pip install 'waitress>=3.0'; stoker.pyz carries it)\n")
