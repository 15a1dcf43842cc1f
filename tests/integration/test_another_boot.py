"""A sandbox left by the boot before this one (the host rebooted while its task ran): its
checkpoint, lock file and registry entry name a supervisor and a run whose pids, after the
reboot, belong to other processes, even ones started at the same clock tick after boot (a
service the init system starts at the same point of every boot). Here those are two live
`sleep`s of this test, recorded with their real pids and start ticks but another boot id.
The task is LOST (never RUNNING) to `stoker status`, `stoker ps` and the observer;
`stoker kill` refuses to talk to it; a new `stoker run`'s kill of what a lost attempt left
(`end_lost_attempts`) signals neither process: none of them carries its marker."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import identity_of
from executor.host.registry import Registry
from executor.observe.reader import Reader
from executor.task.checkpoint import CheckpointWriter
from executor.task.leftovers import end_lost_attempts
from tests.support.opens import opens

pytestmark = pytest.mark.timeout(30)

OTHER_BOOT = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def before_reboot(tmp_path):
    """(sandbox, registry root, the processes that now hold the recorded pids)."""
    supervisor, run = subprocess.Popen(["sleep", "30"]), subprocess.Popen(["sleep", "30"])
    try:
        then = identity_of(supervisor.pid)
        assert then is not None
        sandbox, root, wall = tmp_path / "sb", tmp_path / "root", time.time() - 600
        sandbox.mkdir()
        writer = CheckpointWriter(sandbox)
        writer.append_many([
            {"kind": "header", "task": "web.0", "job_key": "c/r/e/web", "task_id": "web-0-1",
             "sandbox": str(sandbox), "ports": {}, "supervisor_pid": then.pid,
             "supervisor_start": then.start_ticks, "supervisor_boot": OTHER_BOOT,
             "marker": "m4rk3r-of-the-last-boot", "processes": ["web"], "health": "none", "wall": wall},
            {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": wall},
            {"kind": "process", "process": "web", "run": 0, "from": "WAITING", "to": "RUNNING",
             "reason": "starting run 0", "pid": run.pid, "wall": wall},
            {"kind": "task", "from": "STARTING", "to": "RUNNING", "reason": "processes started",
             "wall": wall}])
        writer.close()
        (sandbox / ".stoker" / "supervisor.lock").write_text(json.dumps(
            {"pid": then.pid, "start": then.start_ticks, "boot": OTHER_BOOT, "front_end": "run",
             "since": wall}))
        Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=86400.0)).write(
            RegistryEntry(sandbox=str(sandbox), supervisor_pid=then.pid,
                          supervisor_start=then.start_ticks, supervisor_boot=OTHER_BOOT,
                          front_end=FrontEnd.RUN, registered_wall=wall, task_id="web-0-1"))
        yield sandbox, root, (supervisor, run)
    finally:
        for proc in (supervisor, run):
            proc.kill()
            proc.wait()


def test_a_task_of_the_boot_before_is_lost_and_nothing_of_this_boot_is_signalled(before_reboot, capsys):
    sandbox, root, procs = before_reboot
    assert main(["status", str(sandbox), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "state=LOST (supervisor gone since " in out.splitlines()[0]
    assert main(["status", str(sandbox), "--root", str(root.parent / "emptied")]) == 0  # /var/run
    assert "state=LOST (supervisor gone since " in capsys.readouterr().out.splitlines()[0]
    assert main(["ps", "--root", str(root)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("web-0-1 "))
    assert row.split()[2] == "LOST"
    assert Reader(RegistrySettings(registry_root=str(root))).task("web-0-1").usage == {}
    assert main(["kill", str(sandbox)]) != 0
    assert f"no live supervisor holds '{sandbox}' (its task is LOST)" in capsys.readouterr().err
    assert end_lost_attempts(sandbox) == []
    assert [p.poll() for p in procs] == [None, None]  # neither was signalled


def test_a_page_opens_the_stoker_directory_of_a_task_of_the_boot_before_no_more_than_it_reads(before_reboot):
    """No supervisor of another boot is looked up in /proc/locks (`lock.seen_here`): its
    `.stoker` was opened a second time for it, on every page, for each such task."""
    _, root, _ = before_reboot
    reader = Reader(RegistrySettings(registry_root=str(root)))
    assert [t.row["state"] for t in reader.tasks()] == ["LOST"]
    with opens() as opened:
        assert [t.row["state"] for t in reader.tasks()] == ["LOST"]
    assert opened[".stoker"] == 2, opened  # its checkpoint, its held list (leftovers); before: 3
