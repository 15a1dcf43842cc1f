"""`BASH_ENV` as bash reads it (executor/procs/runenv.py): bash expands the variable's value
as a word in double quotes before it sources the file, so a path holding `$`, `` ` `` or `\\`
is written with those escaped, and a filesystem image's wrapper maps the path it names.
Checked against the real bash."""
from __future__ import annotations

import subprocess

import pytest

from executor.mesos.containerizer import ContainerizerLaunch
from executor.procs.runenv import bash_env, bash_env_path, seen_through

ODD = ["plain", "sb$HOME", "sb$(touch planted)", "sb`touch ticked`", "sb\\$HOME", "end\\", "sb${x:=y}\\\\x",
       "a\\b", "new\nline", 'q"uote', "sb$((1+1))", "sb$",
       # bash's own quoting byte (CTLESC, \x01) quotes the byte after it and goes: a \x01 goes doubled
       "sb\x01x", "sb\x01", "\x01\x01", "\x7f\x01", "\x01\x7f", "sb\x01$HOME", "sb\\\x01"]


@pytest.mark.parametrize("name", ODD)
def test_bash_sources_the_file_the_value_names_and_runs_nothing_of_it(tmp_path, name):
    sandbox = tmp_path / name
    sandbox.mkdir()
    (sandbox / ".thermos_profile").write_text("echo sourced\n")
    value = bash_env(str(sandbox / ".thermos_profile"))
    ran = subprocess.run(["/bin/bash", "-c", "true"], env={"BASH_ENV": value, "PATH": "/usr/bin:/bin"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert (ran.stdout, ran.stderr) == ("sourced\n", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing planted, nothing ticked
    assert bash_env_path(value) == str(sandbox / ".thermos_profile")


def test_a_path_with_nothing_bash_expands_is_itself():
    assert bash_env("/var/lib/mesos/run/1/.thermos_profile") == "/var/lib/mesos/run/1/.thermos_profile"
    assert bash_env_path("/a\\b/c") == "/a\\b/c"  # a backslash before anything else stays, as bash keeps it
    assert bash_env_path("/a\x01b\x01") == "/ab"  # a \x01 quotes what follows and goes, as in bash


def test_an_image_task_s_profile_is_mapped_as_the_path_it_names_and_written_for_bash_again():
    launch = ContainerizerLaunch(path="/mc", rootfs="/srv/$x/taskfs", working_directory="/mnt/$sandbox",
                                 sandbox="/srv/$x")
    env = {"HOME": "/srv/$x", "BASH_ENV": bash_env("/srv/$x/.thermos_profile")}
    assert seen_through(env, launch.env) == {"HOME": "/mnt/$sandbox", "BASH_ENV": "/mnt/\\$sandbox/.thermos_profile"}
    assert seen_through({"HOME": "/srv/$x"}, launch.env) == {"HOME": "/mnt/$sandbox"}


def test_a_bash_env_of_the_task_s_own_environment_outside_the_sandbox_goes_through_as_it_was():
    """`preserve_env` (or `stoker run`) keeps the environment's own BASH_ENV when the sandbox
    has no profile: written for bash by whoever set it (`$HOME` there for bash to expand),
    and not the sandbox's, so not Stoker's to write again. Was: `\\$HOME/.bashenv`."""
    launch = ContainerizerLaunch(path="/mc", rootfs="/srv/1/taskfs", working_directory="/mnt/sandbox",
                                 sandbox="/srv/1")
    assert seen_through({"BASH_ENV": "$HOME/.bashenv"}, launch.env) == {"BASH_ENV": "$HOME/.bashenv"}
    assert seen_through({"BASH_ENV": "/etc/a\\b"}, launch.env) == {"BASH_ENV": "/etc/a\\b"}
