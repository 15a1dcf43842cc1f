"""A `stoker run` kept up by runsv / s6 / systemd, SIGKILLed (the OOM killer, `kill -9`) and
started again in the same sandbox: the new supervisor kills what the dead one left and runs
on. Each dead attempt was a LOST row of plain `stoker ps` ("leftover processes: none") for
the registry's retention, beside the RUNNING one: two kill -9s, two LOST rows. A LOST task
whose sandbox a later supervisor took, and that left no process, is now listed only with
`--all`, its line saying by whom it was replaced; `stoker status` says the same, and
`--json` has `replaced_by`."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.observe.pages import task_page
from executor.observe.reader import Reader
from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

SERVICE = """\
jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                task=Task(processes=[Process(name='svc', cmdline='sleep 600')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def _rows(capsys, sandbox: Path, *extra: str) -> list[dict]:
    assert main(["ps", "--json", *extra]) == 0
    return [r for r in json.loads(capsys.readouterr().out) if r["sandbox"] == str(sandbox)]


def _running(capsys, sandbox: Path, pid: int) -> str:
    """The task id of supervisor `pid`'s task once its process runs."""
    def up() -> str:
        found = [r for r in _rows(capsys, sandbox) if r["supervisor_pid"] == pid]
        return found[0]["task_id"] if found and found[0]["state"] == "RUNNING" \
            and found[0]["processes_running"] == 1 else ""
    return wait_for(up, 30, message=f"supervisor {pid}'s task running")


def test_attempts_killed_and_run_again_in_their_sandbox_are_listed_only_with_all(tmp_path, capsys):
    (tmp_path / "svc.aurora").write_text(SERVICE)
    sandbox = tmp_path / "sandbox"
    runs: list[StokerProcess] = []
    ids: list[str] = []
    try:
        for n in range(3):
            work = tmp_path / f"w{n}"
            work.mkdir()
            run = StokerProcess(["run", str(tmp_path / "svc.aurora"), "--sandbox", str(sandbox)], work)
            runs.append(run)
            ids.append(_running(capsys, sandbox, run.pid))
            if n < 2:  # the supervisor alone: its task's process lives on until the next run kills it
                os.kill(run.pid, signal.SIGKILL)
                run.proc.wait(10)
        rows = _rows(capsys, sandbox)
        assert [(r["task_id"], r["state"]) for r in rows] == [(ids[2], "RUNNING")], rows  # before: 2 LOST more
        every = {r["task_id"]: r for r in _rows(capsys, sandbox, "--all")}
        assert [every[i]["state"] for i in ids] == ["LOST", "LOST", "RUNNING"], every
        assert [(every[i]["replaced_by"] or {}).get("task_id") for i in ids] == [ids[1], ids[2], None], every
        assert main(["ps", "--all"]) == 0
        text = capsys.readouterr().out
        for old, new in zip(ids, ids[1:]):
            assert f"{old}: LOST (supervisor gone since " in text, text
            line = next(line for line in text.splitlines() if line.startswith(f"{old}: LOST"))
            assert line.endswith(f"; replaced by {new} in the same sandbox)"), line
        assert main(["status", ids[0]]) == 0
        status = capsys.readouterr().out
        assert f"replaced by {ids[1]} in the same sandbox" in status.splitlines()[0], status
        assert main(["status", ids[0], "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["state"] == "LOST" and doc["replaced_by"]["task_id"] == ids[1], doc
        assert main(["status", ids[2], "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["replaced_by"] is None
        reader = Reader(RegistrySettings(registry_root=os.environ["STOKER_ROOT"]))  # the observer: every task
        listed = {t.row["task_id"]: t.row for t in reader.tasks() if t.row["sandbox"] == str(sandbox)}
        assert [(listed[i]["replaced_by"] or {}).get("task_id") for i in ids] == [ids[1], ids[2], None], listed
        page = task_page(reader.task(ids[0]), time.time())
        assert f"; replaced by {ids[1]} in the same sandbox); recorded RUNNING" in page, page
    finally:
        for run in runs:
            run.close()
        kill_leftovers(task_pids(sandbox))
