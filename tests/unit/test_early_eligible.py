"""Which `stoker run` command lines the early start may start (executor/cli/launch.py): only
`run CONFIG` and `run CONFIG --sandbox DIR` (either order), with no sandbox from the
environment; anything else may change the plan or the sandbox, and is left to the full path.
And the early start finds the plan cache entry `plancache` keeps for that command."""
from __future__ import annotations

import pytest

from config.settings import RunSettings
from executor.cli.launch import eligible
from executor.local import plancache, planfiles


@pytest.mark.parametrize(("args", "wanted"), [
    (["run", "job.aurora"], ("job.aurora", None)),
    (["run", "job.aurora", "--sandbox", "/tmp/s"], ("job.aurora", "/tmp/s")),
    (["run", "--sandbox", "rel/s", "job.aurora"], ("job.aurora", "rel/s")),
])
def test_the_plain_forms_are_eligible(args, wanted):
    assert eligible(args, {}) == wanted


@pytest.mark.parametrize("args", [
    ["run"], ["run", "job.aurora", "cluster/role/env/name"], ["run", "job.aurora", "--instance", "1"],
    ["run", "job.aurora", "--bind", "x=y"], ["run", "job.aurora", "--port", "http=80"],
    ["run", "job.aurora", "--sandbox=/tmp/s"], ["run", "--help"], ["run", "-h", "job.aurora"],
    ["run", "job.aurora", "--sandbox", "--cgroups"], ["run", "job.aurora", "--log-level", "DEBUG"],
    ["executor"], ["inspect", "job.aurora"], ["run", ""],
])
def test_any_other_command_line_is_not(args):
    assert eligible(args, {}) is None


@pytest.mark.parametrize("variable", ["MESOS_SANDBOX", "MESOS_DIRECTORY", "STOKER_SANDBOX"])
def test_a_sandbox_from_the_environment_is_not(variable):
    assert eligible(["run", "job.aurora"], {variable: "/tmp/s"}) is None
    assert eligible(["run", "job.aurora"], {variable: ""}) == ("job.aurora", None)  # empty: unset


def test_the_entry_it_reads_is_the_one_the_plan_cache_keeps_for_that_command(tmp_path):
    config = str(tmp_path / "job.aurora")
    key = plancache.plan_key(RunSettings.from_env({}, config=config), "host", "me")
    assert planfiles.entry_path("/c", config, None, 0, "") == plancache.entry_stem("/c", key)
    other = plancache.plan_key(RunSettings.from_env({}, config=config, instance=1), "host", "me")
    assert plancache.entry_stem("/c", other) != plancache.entry_stem("/c", key)


def test_the_lock_it_takes_is_the_one_the_supervisor_takes():
    from executor.cli import launch
    from executor.host import sandbox

    assert launch._LOCK_PATH == (sandbox.STOKER_DIR, sandbox.LOCK_FILE)
