"""Which `stoker run` command lines the early start may start (executor/cli/launch.py): only
`run CONFIG` and `run CONFIG --sandbox DIR` (either order), each with `--ready-fd N` first or
not (s6's readiness notification, the examples' form), with no sandbox from the
environment; anything else may change the plan or the sandbox, and is left to the full path.
And the early start finds the plan cache entry `plancache` keeps for that command."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from config.settings import RunSettings
from executor.cli.launch import eligible
from executor.local import plancache, planfiles


@pytest.mark.parametrize(("args", "wanted"), [
    (["run", "job.aurora"], ("job.aurora", None)),
    (["run", "job.aurora", "--sandbox", "/tmp/s"], ("job.aurora", "/tmp/s")),
    (["run", "--sandbox", "rel/s", "job.aurora"], ("job.aurora", "rel/s")),
    (["run", "--ready-fd", "W", "--sandbox", "/tmp/s", "job.aurora"], ("job.aurora", "/tmp/s")),  # s6's
    (["run", "--ready-fd", "W", "job.aurora"], ("job.aurora", None)),
])
def test_the_plain_forms_are_eligible(args, wanted, pipe):
    assert eligible(_with(args, pipe), {}) == wanted


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe's (read end, write end): W and R in a command line."""
    ends = os.pipe()
    yield ends
    for end in ends:
        os.close(end)


def _with(args: list[str], pipe: tuple[int, int]) -> list[str]:
    return [{"R": str(pipe[0]), "W": str(pipe[1])}.get(arg, arg) for arg in args]


@pytest.mark.parametrize("which", ["R", "closed", "1", "99999999999999999999"])
def test_a_ready_fd_not_open_for_writing_is_left_to_the_full_path(which, pipe):
    """Checked before the early start opens anything: by the time the full path checks it,
    a closed descriptor's number may be one of the early start's own (the plan's lease: a
    newline was written into it and it was closed under the run, which crashed at exit)."""
    closed = os.dup(pipe[1])
    os.close(closed)
    fd = {"R": str(pipe[0]), "closed": str(closed)}.get(which, which)
    assert eligible(["run", "--ready-fd", fd, "job.aurora"], {}) is None


@pytest.mark.parametrize("args", [
    ["run"], ["run", "job.aurora", "cluster/role/env/name"], ["run", "job.aurora", "--instance", "1"],
    ["run", "job.aurora", "--bind", "x=y"], ["run", "job.aurora", "--port", "http=80"],
    ["run", "job.aurora", "--sandbox=/tmp/s"], ["run", "--help"], ["run", "-h", "job.aurora"],
    ["run", "job.aurora", "--sandbox", "--cgroups"], ["run", "job.aurora", "--log-level", "DEBUG"],
    ["executor"], ["inspect", "job.aurora"], ["run", ""],
    ["run", "--ready-fd", "x", "job.aurora"], ["run", "--ready-fd", "W"], ["run", "--ready-fd"],
    ["run", "job.aurora", "--ready-fd", "W"], ["run", "--ready-fd", "W", "--ready-fd", "W", "job.aurora"],
])
def test_any_other_command_line_is_not(args, pipe):
    assert eligible(_with(args, pipe), {}) is None


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
