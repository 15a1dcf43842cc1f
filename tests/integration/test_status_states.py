"""`stoker status` in this process (`executor/cli/status.py`) of a sandbox in the states
between and after supervisors: one whose supervisor died before it recorded anything (named
by its task id or its path: its leftovers looked for by the marker its registry entry
holds), one whose newest supervisor has no attempt in the checkpoint yet, a LOST task whose
sandbox a later supervisor took, a restart pending between two attempts, another host's task
named by an earlier attempt's id, a frozen supervisor, and a live task's disk sample."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import attrs
import pytest

from config.registry import RegistrySettings
from config.spec import ProcessSpec, TaskSpec
from executor.events import DiskSampled
from executor.host import identity
from executor.host.clock import iso_time
from executor.host.registry import Registry
from executor.task.usagefile import UsageWriter
from tests.integration.test_shared_root import other_host_s, shared_root
from tests.integration.test_status_attempts import _between_attempts
from tests.integration.test_unrecorded_sandboxes import entry, lock_names
from tests.integration.test_usage_file import pin_of
from tests.support.statuscli import RUNNING, header, registered_task, status, write
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)
NONE_LEFT = "leftover processes: none (nothing of the task's user carries the task's marker)"


def _taken_by(root: Path, sandbox: Path, who: identity.ProcessIdentity, task_id: str) -> None:
    """`sandbox` taken by supervisor `who` (gone): its lock file names it and its registry
    entry (task `task_id`, marker `m-TASK_ID`) pins the sandbox's `.stoker`."""
    (sandbox / ".stoker").mkdir(parents=True, mode=0o700, exist_ok=True)
    lock_names(sandbox, who)
    Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=3600)).write(
        entry(sandbox, pin_of(sandbox), who, task_id=task_id, marker=f"m-{task_id}"), prune=False)


def test_a_supervisor_that_died_before_recording_has_its_leftovers_looked_for_by_its_entry_s_marker(
        tmp_path, capsys, dead):
    sandbox, root = tmp_path / "sb", tmp_path / "root"
    _taken_by(root, sandbox, dead, "t-1")
    for target in ("t-1", sandbox):  # by its id, and by its path (the entry that pins its `.stoker`)
        code, out, _ = status(capsys, target, "--root", root)
        assert (code, out) == (0, f"sandbox {sandbox}  state=LOST\n  no checkpoint in {sandbox}/.stoker: its "
                                  f"supervisor (pid {dead.pid}) died before it recorded anything\n  supervisor_pid: "
                                  f"{dead.pid} (gone)\n\n{NONE_LEFT}\n")
    code, out, _ = status(capsys, "--json", sandbox, "--root", root)
    doc = json.loads(out)
    assert (code, doc["state"], doc["leftovers"], doc["supervisor_frozen"]) == (0, "LOST", [], False)
    assert out == json.dumps(doc, indent=2) + "\n"


def test_a_newest_supervisor_with_no_attempt_in_the_checkpoint_yet_is_the_one_shown(tmp_path, capsys, dead):
    """Named by its path, the sandbox's checkpoint keeps an earlier supervisor's attempt only:
    the newest (its lock's, its entry's) is shown, LOST, its leftovers looked for."""
    sandbox, root = tmp_path / "sb", tmp_path / "root"
    write(sandbox, [dict(header(dead.pid + 1_000_000, 1), task_id="t-0"), *RUNNING])
    _taken_by(root, sandbox, dead, "t-1")
    code, out, _ = status(capsys, sandbox, "--root", root)
    assert code == 0 and out.splitlines()[0] == f"sandbox {sandbox}  state=LOST", out
    assert out.endswith(f"supervisor_pid: {dead.pid} (gone)\n\n{NONE_LEFT}\n"), out


def test_a_lost_task_whose_sandbox_a_later_supervisor_took_names_it(tmp_path, capsys):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=False)
    registered_task(settings, tmp_path / "sb", "web-0-2", RUNNING, alive=True)
    code, out, _ = status(capsys, "web-0-1", "--root", settings.registry_root)
    assert code == 0 and "its registry entry; replaced by web-0-2 in the same sandbox); recorded RUNNING" in \
        out.splitlines()[0], out
    lost = "the task is LOST: its supervisor is gone, so its processes are not measured"
    assert f"\nresources (used of reserved):\n  RESOURCE  USED  RESERVED  %  NOTE\n  cpu       -     -         -  {lost}\n" \
        in out, out  # its use, from the figures measured for it
    code, out, _ = status(capsys, "--json", "web-0-1", "--root", settings.registry_root)
    assert (code, json.loads(out)["replaced_by"]["task_id"]) == (0, "web-0-2")


def test_a_task_id_registered_before_its_attempt_is_recorded_reads_as_the_restart_it_waits_for(
        tmp_path, capsys):
    due = _between_attempts(tmp_path, identity.own_identity())
    code, out, _ = status(capsys, "web-0-2", "--root", tmp_path / "root")
    lines = out.splitlines()
    assert code == 0 and lines[0] == ("task web.0  key=c/r/e/web  state=RESTARTING (attempt 1 ended FAILED; "
                                      "attempt 2 is starting)  attempt=2"), out
    assert lines[1] == f"  restart: attempt 2 at {iso_time(due)}: task failed (1 of 3)"
    assert lines[3].startswith(f"  task_id: web-0-2  supervisor_pid: {os.getpid()} (running)  started: "
                               f"{iso_time(due)} (")
    assert lines[4].startswith("  earlier attempt 1: FAILED (started ") and lines[4].endswith(") web failed")
    assert lines[6] == ("no processes recorded for this attempt yet (its id is registered; its first record is "
                        "not in the checkpoint)")


def test_another_host_s_task_named_by_an_earlier_attempt_s_id_is_named_so(tmp_path, capsys):
    entry = attrs.evolve(other_host_s("other-0-2"), earlier_task_ids=("other-0-1",))
    shared_root(tmp_path, entry)
    for named in ("other-0-1", "other-0-2"):
        code, out, _ = status(capsys, "--json", named, "--root", tmp_path / "root")
        assert (code, json.loads(out)["task_id"]) == (0, named)


@pytest.mark.parametrize("stopped", [False, True], ids=["frozen", "stopped, then frozen"])
def test_a_frozen_supervisor_that_recorded_is_said_frozen_in_either_form(tmp_path, capsys, stopped):
    """Its cgroup frozen (`docker pause`), a supervisor the kernel shows sleeping read as
    running: a warning names the cgroup to thaw, and the JSON says it too; one stopped
    (SIGSTOP) is said stopped in the view itself, and nothing more. The supervisor is a real
    `sleep` its checkpoint's header names, in a real cgroup the test freezes."""
    from tests.support import cgroups as test_cgroups

    if (why := test_cgroups.unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    sandbox, sleeper = tmp_path / "sb", subprocess.Popen(["sleep", "60"])
    try:
        who = identity.identity_of(sleeper.pid)
        assert who is not None
        write(sandbox, [header(sleeper.pid, who.start_ticks), *RUNNING])
        if stopped:
            os.kill(sleeper.pid, signal.SIGSTOP)
            wait_for(lambda: identity.is_stopped(sleeper.pid), 5)
        with test_cgroups.frozen_in_a_cgroup(sleeper.pid) as directory:
            said = [status(capsys, sandbox), status(capsys, "--json", sandbox)]
    finally:
        sleeper.kill()
        sleeper.wait()
    warning = (f"stoker: warning: the supervisor (pid {sleeper.pid}) is frozen (its cgroup {directory}): nothing "
               "is supervised, restarted or health-checked until it is thawed\n")
    assert [(code, warning in err) for code, _, err in said] == [(0, not stopped), (0, not stopped)], said
    assert f"supervisor_pid: {sleeper.pid} ({'stopped: SIGSTOP' if stopped else 'running)'}" in said[0][1]
    doc = json.loads(said[1][1])
    assert (doc["supervisor_stopped"], doc["supervisor_frozen"], doc["supervisor_frozen_cgroup"]) == (
        stopped, not stopped, None if stopped else directory)


def test_a_live_task_s_json_has_its_disk_sample_and_the_sample_s_age(tmp_path, capsys):
    """Its supervisor (this process) wrote its usage record and one disk sample, as the
    owner's writer writes them: the JSON says how much, against the reservation, and how
    long ago the sample was taken."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    task = TaskSpec(name="t", processes=(ProcessSpec("web", "true"),), cpu=0.5, ram_bytes=64 << 20,
                    disk_bytes=8 << 20)
    usage = UsageWriter(tmp_path / "sb", "marker-web-0-1", "web.0", task, 60.0)
    usage.start()
    usage.sampled(DiskSampled(2 << 20, files=3, unreadable=0, secs=0.02))
    usage.close()
    code, out, _ = status(capsys, "--json", "web-0-1", "--root", settings.registry_root)
    shown = json.loads(out)["resources"]
    assert code == 0 and (shown["disk_used"], shown["disk_reserved"], shown["disk_percent"]) == (
        2 << 20, 8 << 20, 25.0), shown
    assert 0 <= shown["disk_sample_age_secs"] < 30 and shown["disk_check_secs"] == 60.0, shown
