"""Every `stoker: error:` line that names a path the operator gave (a config file, a
sandbox, `--task-info`) quotes it as the deleted-working-directory lines do
(`config.words.quoted`: repr-like), so that an empty name, spaces, a newline and a byte that
is not UTF-8 are visible and the line stays one line. Through the real `stoker`. Was: `sandbox
a b does not exist`, and `stoker run ""` said `.: cannot read the config file: Is a directory`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_conventions import EXAMPLES, one_error, stoker, write_config
from tests.support.configs import job_text
from tests.support.stoker_proc import REPO

ODD = "a b\n" + os.fsdecode(b"\xff")  # a space, a newline, a byte that is not UTF-8
SHOWN = "'a b\\n\\xff'"  # as the line shows it


@pytest.mark.parametrize("args", [["status", ODD], ["tail", ODD, "web"], ["kill", ODD], ["restart", ODD, "web"]])
def test_a_sandbox_that_does_not_exist_is_named_quoted(tmp_path, args):
    assert one_error(stoker(*args, cwd=tmp_path)).startswith(f"sandbox {SHOWN} does not exist, and no task ")


@pytest.mark.parametrize("args", [["status", ""], ["tail", "", "web"], ["kill", ""], ["restart", "", "web"]])
def test_an_empty_sandbox_names_no_sandbox_not_the_current_directory(tmp_path, args):
    """`stoker kill "$SB"` with SB unset. Was: `Path('')`, `.`: the task whose sandbox is the
    current directory (or $MESOS_SANDBOX) was the one shown, tailed, killed or restarted."""
    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True)  # a sandbox, as the current directory
    assert one_error(stoker(*args, cwd=sandbox)) == "sandbox '' does not exist"


def test_an_empty_sandbox_flag_is_refused_not_the_default(tmp_path):
    """`stoker run JOB --sandbox "$SB"` with SB unset. Was: a fresh sandbox in the current
    directory, as with no flag (an empty variable is unset; an empty argument is given)."""
    config, here = write_config(tmp_path, job_text()), tmp_path / "here"
    here.mkdir()
    assert one_error(stoker("run", str(config), "--sandbox", "", cwd=here)) == \
        "cannot create sandbox '': No such file or directory"
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "inspect"])
@pytest.mark.parametrize("given, shown, why", [
    (ODD, SHOWN, "No such file or directory"),
    ("", "''", "No such file or directory"),  # not `.`, "Is a directory"
    ("no such.aurora", "'no such.aurora'", "No such file or directory"),
])
def test_a_config_that_cannot_be_read_is_named_quoted(tmp_path, command, given, shown, why):
    assert one_error(stoker(command, given, cwd=tmp_path)) == f"{shown}: cannot read the config file: {why}"


def test_a_task_info_that_cannot_be_read_is_named_quoted(tmp_path):
    assert one_error(stoker("inspect", "--task-info", ODD, cwd=tmp_path)) == f"{SHOWN}: No such file or directory"


def test_a_sandbox_that_is_a_file_is_named_quoted(tmp_path):
    (tmp_path / "a file").write_text("")
    message = one_error(stoker("run", str(EXAMPLES / "hello_world.aurora"), "--sandbox", "a file", cwd=tmp_path))
    assert message == "sandbox 'a file' exists and is not a directory"


def test_a_sandbox_that_is_a_symlink_to_nothing_says_where_it_leads(tmp_path):
    """`--sandbox sb`, sb a symlink whose directory was removed: nothing is made through it.
    Was: `cannot create sandbox 'sb': File exists`, though nothing is there."""
    (tmp_path / "a b").symlink_to(tmp_path / "gone\n")
    message = one_error(stoker("run", str(EXAMPLES / "hello_world.aurora"), "--sandbox", "a b", cwd=tmp_path))
    assert message == f"cannot create sandbox 'a b': it is a symbolic link to '{tmp_path}/gone\\n', which does not exist"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a b"]


def test_a_sandbox_that_is_a_symlink_round_a_loop_or_to_a_link_to_nothing_says_so(tmp_path):
    """A link to itself leads round (was: "a symbolic link to 'loop', which does not
    exist"); a link to a link to nothing names where the links end (was: the first link,
    which is there, "does not exist")."""
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "chain").symlink_to("dangling")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    hello = str(EXAMPLES / "hello_world.aurora")
    assert one_error(stoker("run", hello, "--sandbox", "loop", cwd=tmp_path)) == (
        "cannot create sandbox 'loop': it is a symbolic link to 'loop', which leads round in a loop")
    assert one_error(stoker("run", hello, "--sandbox", "chain", cwd=tmp_path)) == (
        f"cannot create sandbox 'chain': it is a symbolic link to 'dangling', which leads to '{tmp_path}/gone', "
        "which does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain", "dangling", "loop"]


def test_a_config_s_own_problem_names_the_file_quoted(tmp_path):
    """The planning child's refusal, as `inspect`'s: the file named as given, quoted."""
    config = write_config(tmp_path, "jobs = []\n").rename(tmp_path / "my job.aurora")
    for command in ("run", "inspect"):
        message = one_error(stoker(command, Path(config).name, cwd=tmp_path))
        assert message == "'my job.aurora': `jobs` is empty; there is no job to run", command


def test_a_registry_root_is_shown_on_one_line_by_ps_and_observe(tmp_path):
    """`--root` (or a HOME) with a newline and a byte that is not UTF-8, as `stoker: error:`
    lines show them. Was: `stoker ps` and `stoker observe` printed the root raw, over two lines
    and with the byte itself."""
    root = tmp_path / ODD
    shown = f"{tmp_path}/a b\\n\\xff"
    assert stoker("ps", "--root", str(root)).stdout == (
        f"no live tasks in the registry {shown} (--all lists ended ones too)\n")
    observer = subprocess.Popen([sys.executable, "-m", "executor", "observe", "--port", "0", "--root", str(root)],
                                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert observer.stdout is not None
        first = observer.stdout.readline().decode()
    finally:
        observer.terminate()
        observer.wait(timeout=30)
        assert observer.stdout is not None
        observer.stdout.close()
    assert first.startswith("stoker observe: http://127.0.0.1:") and first.endswith(f"/ (registry {shown})\n")
