"""Which `stoker run` command lines the early start may start (executor/cli/launch.py): only
`run CONFIG` and `run CONFIG --sandbox DIR` (either order), each with `--ready-fd N` first or
not (s6's readiness notification, the examples' form), with no sandbox from the
environment; anything else may change the plan or the sandbox, and is left to the full path.
And the early start finds the plan cache entry `plancache` keeps for that command."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from config.settings import RunSettings
from executor.cli.launch import eligible
from executor.local import plancache, planfiles
from tests.support.stoker_proc import REPO


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


@pytest.mark.parametrize("which", ["R", "closed", "1", "2", "99999999999999999999"])
def test_a_ready_fd_not_open_for_writing_is_left_to_the_full_path(which, pipe):
    """Checked before the early start opens anything: by the time the full path checks it,
    a closed descriptor's number may be one of the early start's own (the plan's lease: a
    newline was written into it and it was closed under the run, which crashed at exit)."""
    closed = os.dup(pipe[1])
    os.close(closed)
    fd = {"R": str(pipe[0]), "closed": str(closed)}.get(which, which)
    assert eligible(["run", "--ready-fd", fd, "job.aurora"], {}) is None


# In a child of its own, whose descriptor 3 is the pipe's write end (this process's 3 may be
# the test runner's own).
AT_3 = ("import os, sys; os.dup2(int(sys.argv[1]), 3); from executor.cli.launch import eligible; "
        "print(eligible(['run', '--ready-fd', '3', 'job.aurora'], {}))")


def test_descriptor_3_the_first_after_stderr_may_be_the_ready_fd(pipe):
    said = subprocess.run([sys.executable, "-c", AT_3, str(pipe[1])], pass_fds=(pipe[1],), cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    assert said.stdout == "('job.aurora', None)\n"


def test_a_relative_stoker_root_is_not_once_the_working_directory_is_gone(tmp_path, monkeypatch):
    """The run refuses it then (exit 2): nothing may start first."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    assert eligible(["run", "/j.aurora"], {"STOKER_ROOT": "rel"}) == ("/j.aurora", None)  # (resolvable here)
    gone.rmdir()
    assert eligible(["run", "/j.aurora"], {"STOKER_ROOT": "rel"}) is None
    for environ in ({"STOKER_ROOT": "/abs"}, {"STOKER_ROOT": ""}, {}):
        assert eligible(["run", "/j.aurora"], environ) == ("/j.aurora", None), environ


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
