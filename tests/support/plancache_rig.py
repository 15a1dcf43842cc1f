"""`executor/local/plancache.py`'s tests' pieces (tests/integration/test_plancache*.py): a job
that includes a file, the job planned (and kept) as `stoker run` does on a miss, and the kept
plan looked up as the next run does."""
from __future__ import annotations

import os
from pathlib import Path

from config.plan import JobPlan, open_problem, plan_job
from config.settings import RunSettings
from executor.local import plancache
from executor.local.planfiles import ports_free
from executor.local.planning import allocate_ports

__all__ = ["JOB", "entries", "look", "plan_of", "planned", "settings", "write_job"]

JOB = """
include('lib.aurora')
jobs = [Job(cluster='c', role='r', environment='e', name='cached',
            task=Task(processes=[Process(name='web', cmdline='serve {{thermos.ports[http]}} ' + WORD)],
                      resources=Resources(cpu=1, ram=1*MB, disk=1*MB)))]
"""


def write_job(directory: Path) -> Path:
    """JOB as `directory`/job.aurora, with the file it includes."""
    (directory / "lib.aurora").write_text("WORD = 'one'\n")
    config = directory / "job.aurora"
    config.write_text(JOB)
    return config


def settings(config: Path, **kw) -> RunSettings:
    return RunSettings.from_env({}, config=str(config), **kw)


def plan_of(config: Path, **kw) -> tuple[JobPlan, tuple, dict[str, str]]:
    """The job planned as `stoker run` does on a miss: (its plan, its key, the text of each
    file its load read)."""
    s = settings(config, **kw)
    sources: dict[str, str] = {}
    plan = plan_job(s.config, s.jobkey, s.bindings, instance=s.instance, fixed_ports=s.ports,
                    hostname="host", user="me", allocate=allocate_ports, sources=sources)
    return plan, plancache.plan_key(s, "host", "me"), sources


def planned(config: Path, cache: str, **kw) -> tuple[JobPlan, tuple]:
    """Plan the job as `stoker run` does on a miss, and keep it (under the lease)."""
    plan, key, sources = plan_of(config, **kw)
    held = plancache.lease(cache, key)
    try:
        plancache.store(cache, key, sources, plan, held, open_problem(sources))
    finally:
        held.close()
    return plan, key


def look(cache: str, key: tuple) -> JobPlan | None:
    """The kept plan, as the next run finds it (taking the lease, then letting it go)."""
    held = plancache.lease(cache, key)
    try:
        return plancache.lookup(cache, key, ports_free, held)
    finally:
        held.close()


def entries(cache: str, suffix: str = ".bin") -> list[str]:
    return sorted(n for n in os.listdir(cache) if n.endswith(suffix)) if os.path.isdir(cache) else []
