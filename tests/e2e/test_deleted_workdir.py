"""Every command run from a working directory that was deleted (`rm -rf` of the directory a
shell is in): a relative path (or a default that is the working directory) is one `stoker:
error:` line saying so, exit 2 (was: a FileNotFoundError traceback from os.getcwd(), or
`does not exist`); absolute paths work end to end, the planning child and the early start
included, and the task's processes run in their sandbox (executor/cli/main.py, `_resolvable`).
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(120)

JOB = textwrap.dedent("""
    jobs = [Job(cluster='local', role='me', environment='test', name='gone',
                task=Task(processes=[Process(name='where', cmdline='readlink /proc/self/cwd')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
""")
GONE = "the working directory was deleted, so a relative path"
# `sh -c SCRIPT DIR CMD...`: enter DIR, remove it, then exec the command from there
FROM_DELETED = ("sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"')


def from_deleted(tmp_path: Path, args: list[str], name: str, env: dict[str, str] | None = None) -> StokerProcess:
    """`stoker ARGS` started in a directory removed before it runs (its output in tmp_path/NAME)."""
    gone, work = tmp_path / f"{name}-gone", tmp_path / name
    gone.mkdir()
    work.mkdir()
    env = {"STOKER_ROOT": str(tmp_path / "registry"), "STOKER_PLAN_CACHE": str(tmp_path / "plans"),
           "HOME": str(tmp_path), **(env or {})}
    return StokerProcess(args, work, env=env, launcher=(*FROM_DELETED, str(gone)))


def refused(proc: StokerProcess, *sandboxes: Path) -> None:
    """`proc` must exit 2 (its output says why not); closed, and what the tasks of
    `sandboxes` left killed, whatever happened."""
    try:
        assert proc.wait(60) == 2, proc.stdout() + proc.stderr()
    finally:
        proc.close()
        kill_leftovers(set().union(*(task_pids(sandbox) for sandbox in sandboxes)))


@pytest.mark.parametrize("args, named", [
    (["run", "job.aurora"], "'job.aurora': "),
    (["run", "../job.aurora"], "'../job.aurora': "),  # the kernel finds `..`: Stoker's paths are absolute
    (["run", ""], "'': "),  # an empty name, quoted (was: `stoker: error: : the working directory ...`)
    (["run", "{config}", "--sandbox", "sb"], "'sb': "),
    (["run", "{config}", "--root", "registry"], "'registry': "),
    (["run", "{config}"], ""),  # a sandbox made in the working directory
    (["status"], "sandbox '.': "),
    (["status", "sb"], "sandbox 'sb': "),
    (["tail", "sb", "where"], "sandbox 'sb': "),
    (["kill", "sb"], "sandbox 'sb': "),
    (["restart", "sb", "where"], "sandbox 'sb': "),
    (["inspect", "job.aurora"], "'job.aurora': "),
    (["ps", "--root", "registry"], "'registry': "),
])
def test_a_relative_path_from_a_deleted_working_directory_is_one_error_line(tmp_path, args, named):
    config = tmp_path / "job.aurora"
    config.write_text(JOB)
    proc = from_deleted(tmp_path, [arg.format(config=config) for arg in args], "cmd")
    refused(proc)
    lines = proc.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stoker: error: {named}{GONE}"), proc.stderr()
    # nothing left running: the child that planned `run CONFIG` ahead is gone with it
    assert [p.pid for p in psutil.process_iter(["cmdline"]) if str(config) in (p.info["cmdline"] or ())] == []



@pytest.mark.parametrize("args, variable", [
    (["ps"], "STOKER_ROOT"),
    (["status", "{tmp}/sb"], "STOKER_ROOT"),
    (["run", "{tmp}/job.aurora", "--sandbox", "{tmp}/sb"], "STOKER_ROOT"),
    (["run", "{tmp}/job.aurora"], "STOKER_SANDBOX"),
    (["run", "{tmp}/job.aurora"], "MESOS_SANDBOX"),
])
def test_a_relative_path_from_the_environment_is_refused_naming_its_variable(tmp_path, args, variable):
    """STOKER_ROOT=registry (or a sandbox's variable) from a deleted working directory: one
    error line naming it, exit 2, as `--root registry` (was: `stoker ps` "No live tasks in the
    registry registry", exit 0, `stoker run` a task that `stoker ps` cannot list, after a
    warning saying only ENOENT; a sandbox's, a line naming no path)."""
    (tmp_path / "job.aurora").write_text(JOB)
    (tmp_path / "sb").mkdir()
    proc = from_deleted(tmp_path, [arg.format(tmp=tmp_path) for arg in args], "cmd", env={variable: "registry"})
    refused(proc, tmp_path / "sb")
    lines = proc.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stoker: error: {variable}='registry': {GONE}"), proc.stderr()


def test_a_refused_relative_registry_root_starts_no_process_first(tmp_path):
    """A re-run whose kept plan would start its first runs before Stoker loads (the early
    start), refused for STOKER_ROOT=registry from a deleted working directory: no process of
    the task ran, not even one killed unreported (was: started, then killed, no line said so)."""
    started = tmp_path / "started"
    (tmp_path / "job.aurora").write_text(JOB.replace("readlink /proc/self/cwd", f"touch {started}"))
    args = ["run", str(tmp_path / "job.aurora"), "--sandbox"]
    kept = from_deleted(tmp_path, [*args, str(tmp_path / "first")], "kept")  # keeps the plan: absolute root
    try:
        assert kept.wait(60) == 0, kept.stdout() + kept.stderr()
    finally:
        kept.close()
    assert started.exists()
    started.unlink()
    proc = from_deleted(tmp_path, [*args, str(tmp_path / "again")], "cmd", env={"STOKER_ROOT": "registry"})
    refused(proc, tmp_path / "first", tmp_path / "again")
    assert proc.stderr().startswith(f"stoker: error: STOKER_ROOT='registry': {GONE}"), proc.stderr()
    assert not started.exists() and not (tmp_path / "again").exists()



def test_a_working_directory_deleted_and_made_again_is_named_to_cd_to(tmp_path):
    """`rm -rf DIR; mkdir DIR` beside a shell in DIR: the shell's prompt names a directory that
    exists, but its working directory is the deleted one; the error line says to cd to DIR
    again (was: "cd to a directory that exists", which DIR is)."""
    again = tmp_path / "again"
    again.mkdir()
    proc = StokerProcess(["status"], tmp_path, env={"STOKER_ROOT": str(tmp_path / "registry")},
                         launcher=("sh", "-c", 'cd "$0" && rmdir "$0" && mkdir "$0" && exec "$@"', str(again)))
    refused(proc)
    assert proc.stderr() == (f"stoker: error: sandbox '.': {GONE} cannot be resolved (the {str(again)!r} made since is "
                             "another directory: cd to it again, or give an absolute path)\n")


def test_absolute_paths_from_a_deleted_working_directory_run_end_to_end(tmp_path):
    config = tmp_path / "job.aurora"
    config.write_text(JOB)
    sandboxes = [tmp_path / "first", tmp_path / "again"]
    try:
        for sandbox in sandboxes:  # planned by the planning child, then started from the kept plan
            proc = from_deleted(tmp_path, ["run", str(config), "--sandbox", str(sandbox)], sandbox.name + "-cmd",
                                env={"STOKER_LOG_LEVEL": "DEBUG"})
            try:
                assert proc.wait(60) == 0, proc.stdout() + proc.stderr()
            finally:
                proc.close()
            assert "Traceback" not in proc.stderr()
            # started before the supervisor loaded (the first run's early start, then the
            # kept plan's), and run in its sandbox
            assert re.findall(r"process_adopted task=\S+ process=(\S+) run=0", proc.stderr()) == ["where"]
            assert (sandbox / ".logs" / "where" / "0" / "stdout").read_text() == f"{sandbox}\n"
        assert "plan_cache_used" in proc.stderr()
    finally:
        for sandbox in sandboxes:
            kill_leftovers(task_pids(sandbox))


def _private_mounts() -> bool:
    """Whether this test may mount in a mount namespace of its own (root, util-linux's unshare)."""
    import os
    import shutil

    return os.geteuid() == 0 and shutil.which("unshare") is not None


# `unshare -m sh -c SCRIPT MNT CMD...`: in a mount namespace of its own (gone with it), enter
# a directory of a tmpfs mounted on MNT, detach the tmpfs (`umount -l`), write and read a file
# there (it exists), then exec the command
IN_DETACHED = ("unshare", "-m", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs stoker-test "$0" && mkdir "$0/w" && cd "$0/w" && umount -l "$0" '
               '&& echo here > f && cat f && exec "$@"')


@pytest.mark.skipif(not _private_mounts(), reason="mounting a tmpfs in a mount namespace needs root and unshare")
def test_a_working_directory_that_exists_but_has_no_name_is_not_called_deleted(tmp_path):
    """A working directory on a filesystem unmounted lazily (`umount -l`; or outside a chroot
    entered without cd): os.getcwd() fails as for a deleted one, yet it exists (the command
    below writes a file there). Stoker still needs its name, and says why it has none (was:
    "the working directory was deleted")."""
    config = tmp_path / "job.aurora"
    config.write_text(JOB)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    proc = StokerProcess(["run", "job.aurora"], tmp_path, env={"STOKER_ROOT": str(tmp_path / "registry"),
                                                                "HOME": str(tmp_path)},
                         launcher=(*IN_DETACHED, str(mountpoint)))
    refused(proc)
    assert proc.stdout() == "here\n"  # it exists: the shell wrote and read a file there
    lines = proc.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "stoker: error: 'job.aurora': the working directory has no name this process can see (it is "
        "outside this process's root: on a filesystem unmounted lazily, or above a chroot), "
        "so a relative path cannot be resolved"), proc.stderr()



@pytest.mark.skipif(not _private_mounts(), reason="a bind mount in a mount namespace needs root and unshare")
def test_the_deleted_root_of_a_bind_mount_is_not_named_to_cd_to(tmp_path):
    """A shell in a bind mount whose source was deleted: the mount point keeps the deleted
    directory's path, but it is that same deleted directory: no "cd to it again"."""
    source, point = tmp_path / "source", tmp_path / "point"
    source.mkdir()
    point.mkdir()
    script = 'mount --bind "$0" "$1" && cd "$1" && rmdir "$0" && shift && exec "$@"'
    proc = StokerProcess(["status"], tmp_path, env={"STOKER_ROOT": str(tmp_path / "registry")},
                         launcher=("unshare", "-m", "--propagation", "private", "sh", "-c", script, str(source),
                                   str(point)))
    refused(proc)
    assert proc.stderr() == (f"stoker: error: sandbox '.': {GONE} cannot be resolved (cd to a directory that "
                             "exists, or give an absolute path)\n")


def _in_chroot_without_proc(tmp_path: Path, first: str = "") -> str:
    """What `working_directory_gone()` and `working_directory_unnamed()` say in a Python that
    ran `first` (in tmp_path/work) and then entered an empty chroot without cd: no /proc there."""
    import os
    import subprocess
    import sys

    (tmp_path / "root").mkdir()
    (tmp_path / "work").mkdir()
    child = "; ".join(filter(None, ["import contextlib, os, sys, executor", first, "os.chroot(sys.argv[1])",
                                     "print(executor.working_directory_gone(), executor.working_directory_unnamed())"]))
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path / "root")], cwd=tmp_path / "work",
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout


@pytest.mark.skipif(not _private_mounts(), reason="chroot needs root")
def test_a_working_directory_above_a_chroot_without_proc_is_not_called_deleted(tmp_path):
    """A process that entered a chroot (with no /proc in it) without cd: its working directory
    exists outside its root, has no name, and /proc/self/cwd cannot be read: the link count
    alone says it was not deleted."""
    said = _in_chroot_without_proc(tmp_path)
    assert said.startswith("True the working directory has no name this process can see"), said


@pytest.mark.skipif(not _private_mounts(), reason="chroot needs root")
def test_a_deleted_working_directory_above_a_chroot_without_proc_is_called_deleted(tmp_path):
    """The same process, its working directory deleted before it entered the chroot: the link
    count alone says it was deleted."""
    said = _in_chroot_without_proc(tmp_path, first="os.rmdir(os.getcwd())")
    assert said == f"True {GONE} cannot be resolved (cd to a directory that exists, or give an absolute path)\n"
