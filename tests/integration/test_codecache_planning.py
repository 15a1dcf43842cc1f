"""`executor.codecache` in a first run's planning child, in real interpreters: the config
language's attrs classes served from the `plan` file (`codecache.also("plan")`), the early
start's child and the supervisor's own (a run not planned ahead) alike.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)


PLANNING_CHILD = textwrap.dedent("""
    import json, sys
    from executor import codecache, deferred
    deferred.defer()
    codecache.install("run")
    import executor.local.planning
    if sys.argv[1] == "also":
        codecache.also("plan")
    import config.loader, config.bind
    print(json.dumps({"compiled": codecache.counts()[1],
                      "in_run": sorted(name for name in codecache._cache.loaded if "config.loader" in name
                                       or "config.bind" in name or "config.templates" in name)}))
""")


def warmed(cache: Path) -> dict[str, str]:
    """The environment of a code cache in CACHE whose `run` and `plan` files the warm step wrote."""
    env = {**os.environ, "STOKER_CODE_CACHE": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for profile in ("run", "plan"):
        warm = subprocess.run([sys.executable, "-m", "executor.codecache", profile], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert warm.returncode == 0, warm.stderr
    return env


@pytest.mark.parametrize("also", ["also", "no"])
def test_the_planning_child_serves_the_config_language_from_its_own_file(tmp_path, also):
    env = warmed(tmp_path)
    done = subprocess.run([sys.executable, "-c", PLANNING_CHILD, also], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    if also == "also":
        assert seen["compiled"] == 0
    else:  # the supervisor's file holds none of them (it never loads them): compiled again
        assert seen["compiled"] > 0 and seen["in_run"] == []


# The planning child `stoker run` forks itself (`planning.plan_apart`: a run not planned ahead,
# `--root` and the like), its entry point's `run` cache installed: the classes it compiled.
SUPERVISORS_CHILD = textwrap.dedent("""
    import json, os, sys
    from executor import codecache, deferred
    deferred.defer()
    codecache.install("run")
    from executor.local import planning
    from executor.local.planahead import inputs_of
    planned = planning.job_planner(inputs_of(sys.argv[1], None, (), 0, (), "localhost", "root"))

    def counted(sources):
        result = planned(sources)
        with open(sys.argv[2], "w") as out:
            json.dump({"compiled": codecache.counts()[1]}, out)
        return result

    planning.plan_apart(counted)
    print(open(sys.argv[2]).read())
""")


def test_the_supervisor_s_own_planning_child_serves_the_config_language_from_its_own_file(tmp_path):
    """A run the early start did not plan ahead (`--root`) planned in the supervisor's own
    child (`planning._fork`), which added the `plan` bundle but not the `plan` cache: the
    config language's classes were compiled again at every such start (3)."""
    env = warmed(tmp_path)
    (tmp_path / "job.aurora").write_text(textwrap.dedent("""
        jobs = [Job(cluster='local', role='me', environment='test', name='j',
                    task=Task(processes=[Process(name='p', cmdline='true')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    done = subprocess.run([sys.executable, "-c", SUPERVISORS_CHILD, str(tmp_path / "job.aurora"),
                           str(tmp_path / "seen.json")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"compiled": 0}
