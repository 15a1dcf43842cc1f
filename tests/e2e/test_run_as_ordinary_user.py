"""`stoker run` as an ordinary user (no root: throwaway users, through `setpriv`, each with a
home of its own and no cgroup it may make): a service with a daemon is theirs to list, read,
restart and stop by Ctrl-C, none of it left after; another ordinary user may read its logs
(0644) but neither its state nor its control socket; root reads its state by its sandbox.
With a home that user owns but may not write (a read-only network home, a locked-down
account), or a plans directory it made before and may no longer write, the run works, and
says why it keeps no plan; from an installation it may not
write (root's, without its code cache written ahead), the run neither fails nor warns, and
writes nothing there. Needs root to make the users; skipped elsewhere."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import attrs
import pytest

from tests.e2e.test_cli_conventions import stoker as stoker_as_root
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids
from tests.support.users import needs_root, open_sandbox, stoker_as, throwaway_user
from tests.support.waiting import wait_for

pytestmark = [needs_root, pytest.mark.timeout(120)]

ONCE = """
    say = Process(name='say', cmdline='echo hi')
    jobs = [Job(cluster='c', role='me', environment='e', name='once',
                task=Task(processes=[say], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""


SERVICE = """
    hello = Process(name='hello', cmdline='setsid sleep 601 </dev/null >/dev/null 2>&1 & echo hello; exec sleep 600')
    jobs = [Service(cluster='c', role='me', environment='e', name='hello',
                    task=Task(processes=[hello], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""


def test_an_ordinary_user_s_task_is_theirs_to_control_and_not_another_user_s():
    with throwaway_user() as (alice, _a), throwaway_user() as (bob, _b), open_sandbox() as top:
        os.chmod(top, 0o755)
        as_alice, as_bob = User.made(alice.pw_uid, alice.pw_gid, top), User.made(bob.pw_uid, bob.pw_gid, top)
        (as_alice.work / "hello.aurora").write_text(textwrap.dedent(SERVICE))
        sandbox = as_alice.work / "sandbox"
        run = subprocess.Popen([*as_alice.command, "run", "hello.aurora", "--sandbox", "sandbox"], cwd=as_alice.work,
                               env=as_alice.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            wait_for(lambda: "RUNNING" in as_alice("status", "sandbox").stdout or run.poll() is not None,
                     timeout_secs=30, interval_secs=0.1)
            assert as_alice("ps").stdout.splitlines()[1].split()[2] == "RUNNING"
            wait_for(lambda: as_alice("tail", "sandbox", "hello").stdout == "hello\n", timeout_secs=30,
                     interval_secs=0.1, message="its output, through stoker tail")  # RUNNING: spawned, not yet echoed
            assert as_bob("tail", str(sandbox), "hello").stdout == "hello\n"  # the logs are 0644
            assert as_alice("restart", "sandbox", "hello").returncode == 0
            for command in (["status", str(sandbox)], ["kill", str(sandbox)], ["restart", str(sandbox), "hello"]):
                refused = as_bob(*command)
                assert refused.returncode == 1 and "only the supervisor's user (or root) may" in refused.stderr, command
            assert as_bob("ps").stdout.startswith("no live tasks")
            assert "state=RUNNING" in stoker_as_root("status", str(sandbox)).stdout
            run.send_signal(signal.SIGINT)
            assert run.wait(timeout=30) == 130
            # the daemon too; the watchdog, told to retire as the run ends, exits on its own
            wait_for(lambda: not _processes_of(alice.pw_uid), timeout_secs=10,
                     message=f"no process of uid {alice.pw_uid} left")
        finally:
            run.kill()
            run.wait(timeout=30)
            kill_leftovers(task_pids(sandbox) | set(_processes_of(alice.pw_uid)))


@attrs.frozen
class User:
    """How a throwaway user runs this checkout's `stoker`, in a work directory of its own,
    with a home of its own (both below the test's top directory, the user's)."""

    command: list[str]
    env: dict[str, str]
    work: Path

    @classmethod
    def made(cls, uid: int, gid: int, top: Path) -> User:
        """Skipped where that user has no Python to run this checkout with."""
        command = stoker_as(uid, gid)
        if command is None:
            pytest.skip("no Python an unprivileged user may run this checkout with")
        home, work = top / str(uid) / "home", top / str(uid) / "work"
        for directory in (top / str(uid), home, work):
            directory.mkdir(mode=0o755)
            os.chown(directory, uid, gid)
        return cls(command, {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}, work)

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=60)


def _processes_of(uid: int) -> list[int]:
    """The pids of the processes of `uid` now (a throwaway user's: all the test's)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # gone meanwhile
            if os.stat(f"/proc/{pid}").st_uid == uid:
                found.append(int(pid))
    return found


def test_a_run_whose_home_is_not_writable_says_why_it_keeps_no_plan():
    with throwaway_user() as (user, _group), open_sandbox() as top:
        stoker = stoker_as(user.pw_uid, user.pw_gid)
        if stoker is None:
            pytest.skip("no Python an unprivileged user may run this checkout with")
        os.chmod(top, 0o755)
        home, work, registry = top / "home", top / "work", top / "registry"
        for directory in (home, work, registry):
            directory.mkdir(mode=0o700)
            os.chown(directory, user.pw_uid, user.pw_gid)
        (work / "once.aurora").write_text(textwrap.dedent(ONCE))
        home.chmod(0o555)  # the user's own, read-only
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "STOKER_ROOT": str(registry), "LANG": "C.UTF-8"}
        try:
            runs = [_run(stoker, work, env, f"sandbox{n}") for n in range(2)]
        finally:
            for n in range(2):
                kill_leftovers(task_pids(work / f"sandbox{n}"))
        for run in runs:
            assert run.returncode == 0, run.stderr
            unkept = [line for line in run.stderr.splitlines() if "plan_not_kept" in line]
            assert len(unkept) == 1, run.stderr
            assert f'reason="cannot make {home}/.cache/stoker/plans: Permission denied (EACCES)"' in unkept[0]
            assert "Traceback" not in run.stderr
        assert (work / "sandbox1/.logs/say/0/stdout").read_text() == "hi\n"
        assert os.listdir(home) == []


def test_a_run_whose_plan_directory_is_there_but_not_writable_says_why_it_keeps_no_plan():
    """The plans directory an earlier run made, read-only since (a home remounted read-only, a
    locked-down account): a run that would keep a plan says once why it cannot, whether the
    entry's lock file is there (its plan then cannot be written) or not (nor can the lock
    file). Was: both planned afresh each time without a word."""
    with throwaway_user() as (user, _group), open_sandbox() as top:
        os.chmod(top, 0o755)
        me = User.made(user.pw_uid, user.pw_gid, top)
        (me.work / "once.aurora").write_text(textwrap.dedent(ONCE))
        (me.work / "other.aurora").write_text(textwrap.dedent(ONCE))
        plans = Path(me.env["HOME"]) / ".cache/stoker/plans"
        try:
            first = _run(me.command, me.work, me.env, "sandbox0")
            assert first.returncode == 0 and "plan_not_kept" not in first.stderr, first.stderr
            assert any(name.endswith(".lock") for name in os.listdir(plans))
            plans.chmod(0o500)  # the user's own still, and nobody else's to write
            (me.work / "once.aurora").write_text(textwrap.dedent(ONCE).replace("echo hi", "echo hello"))
            runs = [_run(me.command, me.work, me.env, "sandbox1"),  # its lock file there, the plan missed
                    _run(me.command, me.work, me.env, "sandbox2", "other.aurora")]  # no lock file either
        finally:
            for n in range(3):
                kill_leftovers(task_pids(me.work / f"sandbox{n}"))
        for run in runs:
            assert run.returncode == 0, run.stderr
            unkept = [line for line in run.stderr.splitlines() if "plan_not_kept" in line]
            assert len(unkept) == 1, run.stderr
            assert f'reason="cannot write in {plans}: Permission denied (EACCES)"' in unkept[0]
        assert (me.work / "sandbox1/.logs/say/0/stdout").read_text() == "hello\n"


def _run(stoker: list[str], work: Path, env: dict[str, str], sandbox: str,
         config: str = "once.aurora") -> subprocess.CompletedProcess:
    return subprocess.run([*stoker, "run", config, "--sandbox", sandbox], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_run_from_an_installation_the_user_cannot_write_falls_back_quietly():
    with throwaway_user() as (user, _group), open_sandbox() as top:
        os.chmod(top, 0o755)
        me = User.made(user.pw_uid, user.pw_gid, top)
        install = top / "install"  # root's, 0755, no __pycache__ anywhere: nothing written ahead
        for package in ("executor", "config", "healthcheck"):
            shutil.copytree(REPO / package, install / package, ignore=shutil.ignore_patterns("__pycache__"))
        # the installation first: its packages, not the checkout's (or its copy's), are imported
        command = [word.replace("PYTHONPATH=", f"PYTHONPATH={install}{os.pathsep}", 1) for word in me.command]
        assert command != me.command
        (me.work / "once.aurora").write_text(textwrap.dedent(ONCE))
        # PYTHONDONTWRITEBYTECODE unset (this host sets it): Python and the code cache try to write
        env = {**me.env, "STOKER_PLAN_CACHE": "off"}  # the code alone: no plan kept, no early start
        try:
            done = subprocess.run([*command, "run", "once.aurora", "--sandbox", "sandbox"], cwd=me.work, env=env,
                                  capture_output=True, text=True, timeout=60)
        finally:
            kill_leftovers(task_pids(me.work / "sandbox"))
        assert done.returncode == 0, done.stderr
        assert [line for line in done.stderr.splitlines() if " WARNING " in line or " ERROR " in line
                or "Traceback" in line] == []
        assert (me.work / "sandbox/.logs/say/0/stdout").read_text() == "hi\n"
        assert sorted(str(p.relative_to(install)) for p in install.rglob("__pycache__")) == []
