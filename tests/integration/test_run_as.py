"""A supervisor that starts its task's processes as another user (the role, under root) still
contains them: runs and shell commands carry the user's uid, gid and groups, the leftovers
of a failed run are killed, and a SIGKILLed supervisor's watchdog leaves nothing. And every
run sources `.thermos_profile` through BASH_ENV once it exists."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.spec import ProcessSpec
from executor.events import ProcessExited
from executor.procs.identity import RunAs, give_sandbox, user_named
from executor.procs.supervisor import Supervisor
from tests.support import pidnames
from tests.support.stoker_proc import REPO, kill_leftovers, live
from tests.support.users import needs_root, open_sandbox, throwaway_user
from tests.support.waiting import wait_for


def pids_in(path: Path) -> set[int]:
    return wait_for(lambda: pidnames.pid_file(path), 5, message=f"{path.name} written")


@pytest.fixture
def role():
    with throwaway_user() as user, open_sandbox() as sandbox:
        yield user, sandbox


@contextlib.contextmanager
def supervising(sandbox: Path, **kw) -> Iterator[tuple[Supervisor, queue.SimpleQueue]]:
    """A supervisor of `sandbox` and the queue its events are posted to; closed on the way out."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    sup = Supervisor(sandbox=sandbox, task_label="t.0", env={"PATH": os.environ["PATH"]}, post=events.put, **kw)
    try:
        yield sup, events
    finally:
        sup.close()


def given_to(user: pwd.struct_passwd, sandbox: Path) -> RunAs:
    """The role's identity, the sandbox given to it."""
    run_as = user_named(user.pw_name)
    give_sandbox(sandbox, run_as)
    return run_as


@needs_root
def test_runs_and_shell_commands_start_as_the_user_with_its_groups(role):
    (user, group), sandbox = role
    with supervising(sandbox, run_as=given_to(user, sandbox)) as (sup, events):
        sup.spawn(ProcessSpec("ids", "id -u; id -g; id -G; touch mine"), 0)
        exited = events.get(timeout=10)
        assert isinstance(exited, ProcessExited) and exited.status.exit_code == 0
        uid, gid, groups = (sandbox / ".logs/ids/0/stdout").read_text().split("\n")[:3]
        assert (int(uid), int(gid)) == (user.pw_uid, user.pw_gid)
        assert set(map(int, groups.split())) == {user.pw_gid, group.gr_gid}
        assert os.stat(sandbox / "mine").st_uid == user.pw_uid
        result = sup.run_command("id -un", timeout_secs=5)
        assert (result.exit_code, result.output) == (0, f"{user.pw_name}\n")


@needs_root
def test_commands_as_the_executor_s_user_take_nothing_the_role_wrote_in_the_sandbox(role):
    # --nosetuid-health-checks under root: the processes run as the role, the shell checks as
    # root, which sourced a `.thermos_profile` the role's processes wrote (and had HOME there).
    (user, _group), sandbox = role
    with supervising(sandbox, run_as=given_to(user, sandbox), check_as=user_named("root")) as (sup, events):
        sup.spawn(ProcessSpec("w", "echo 'id -un > sourced-by; export SOURCED=yes' > .thermos_profile"), 0)
        assert events.get(timeout=10).status.exit_code == 0
        result = sup.run_command('echo "$(id -un) $HOME $USER [$BASH_ENV][$SOURCED]"', timeout_secs=5)
        assert (result.exit_code, result.output) == (0, "root /root root [][]\n")
        assert not (sandbox / "sourced-by").exists()


@needs_root
def test_the_leftovers_of_a_failed_run_of_another_user_are_killed(role):
    (user, _group), sandbox = role
    with supervising(sandbox, run_as=given_to(user, sandbox)) as (sup, events):
        sup.spawn(ProcessSpec("leaves", "sleep 600 & a=$!; setsid sleep 600 & echo $a $! > left.pids; exit 1"), 0)
        left = pids_in(sandbox / "left.pids")
        assert isinstance(events.get(timeout=10), ProcessExited)  # posted after the leftovers' kill
        wait_for(lambda: not live(left), 10, message="the role's leftovers gone")


@needs_root
def test_kill_9_of_a_root_supervisor_leaves_no_process_of_the_role(role):
    (user, _group), sandbox = role
    child = subprocess.Popen([sys.executable, str(REPO / "tests/support/supervise_child.py"), str(sandbox),
                              user.pw_name], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(child.stdout.readline()), daemon=True)
        reader.start()
        reader.join(15)
        assert box and box[0], "supervise_child printed nothing within 15 s"
        info = json.loads(box[0])  # printed as they run: each named now
        info["pids"], info["watchdog"] = [pidnames.named(p) for p in info["pids"]], pidnames.named(info["watchdog"])
        pids = info["pids"] + [info["watchdog"]]
        assert len(info["pids"]) == 6 and len(live(info["pids"])) == 6
        assert {os.stat(f"/proc/{p}").st_uid for p in info["pids"]} == {user.pw_uid}
        child.kill()
        child.wait(5)
        wait_for(lambda: not live(info["pids"]), 10, message="every process of the role gone")
        wait_for(lambda: not live([info["watchdog"]]), 10, message="the watchdog exited")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        child.stdout.close()
        kill_leftovers(pids)


def test_every_run_after_thermos_profile_appears_sources_it(tmp_path):
    with supervising(tmp_path) as (sup, events):
        sup.spawn(ProcessSpec("before", 'echo "[$BASH_ENV][$IT_WORKED]"'), 0)
        events.get(timeout=10)
        (tmp_path / ".thermos_profile").write_text("export IT_WORKED=hello\n")
        sup.spawn(ProcessSpec("after", 'echo "[$BASH_ENV][$IT_WORKED]"'), 0)
        events.get(timeout=10)
        assert sup.run_command('echo "$IT_WORKED"', timeout_secs=5).output == "hello\n"
    assert (tmp_path / ".logs/before/0/stdout").read_text() == "[][]\n"
    assert (tmp_path / ".logs/after/0/stdout").read_text() == f"[{tmp_path}/.thermos_profile][hello]\n"


def test_runs_started_together_all_source_a_thermos_profile_that_exists(tmp_path):
    """spawn_many looks for the profile once for the runs it starts together: each of them
    gets BASH_ENV when it exists then, none when it does not."""
    cmd = 'echo "[$BASH_ENV][$IT_WORKED]"'
    with supervising(tmp_path) as (sup, events):
        batch = [(ProcessSpec(f"early{i}", cmd), 0) for i in range(3)]
        assert all(isinstance(r, int) for r in sup.spawn_many(batch))
        (tmp_path / ".thermos_profile").write_text("export IT_WORKED=hello\n")
        batch = [(ProcessSpec(f"late{i}", cmd), 0) for i in range(3)]
        assert all(isinstance(r, int) for r in sup.spawn_many(batch))
        for _ in range(6):
            events.get(timeout=10)
    for i in range(3):
        assert (tmp_path / f".logs/early{i}/0/stdout").read_text() == "[][]\n"
        assert (tmp_path / f".logs/late{i}/0/stdout").read_text() == f"[{tmp_path}/.thermos_profile][hello]\n"
