"""A LOST task whose sandbox a later supervisor took is listed by plain `stoker ps` only while
a process of it lives (someone must act); once none does, only with `--all`, replaced. Two
hand-made entries of gone supervisors in one sandbox (the e2e of real runs:
tests/e2e/test_replaced_lost.py)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from tests.support.statuscli import GONE, RUNNING, header, write

pytestmark = pytest.mark.timeout(30)


def _ps(capsys, *extra: str) -> dict[str, dict]:
    assert main(["ps", "--json", *extra]) == 0
    return {r["task_id"]: r for r in json.loads(capsys.readouterr().out)}


def _registered_old_and_new(tmp_path, sandbox, monkeypatch) -> subprocess.Popen:
    """Entries of two gone supervisors in `sandbox`, web-0-old's then web-0-new's, and a
    leftover process of the old one (the caller kills it)."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    monkeypatch.setenv("STOKER_ROOT", settings.registry_root)
    for n, name in enumerate(("old", "new")):
        Registry(settings).write(RegistryEntry(
            sandbox=str(sandbox), supervisor_pid=GONE + n, supervisor_start=1 + n, supervisor_boot=own_identity().boot_id,
            front_end=FrontEnd.RUN, registered_wall=time.time() + n, task_id=f"web-0-{name}", marker=f"m-{name}"),
            prune=False)
    env = {"PATH": os.environ["PATH"], "STOKER_TASK_MARKER": "m-old", "STOKER_RUN_MARKER": "m-old/web/2"}
    return subprocess.Popen(["sleep", "60"], env=env)


def test_a_replaced_lost_task_with_a_leftover_stays_listed_until_it_is_gone(tmp_path, capsys, monkeypatch):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    write(sandbox, [dict(header(GONE, 1, marker="m-old"), task_id="web-0-old"), *RUNNING,
                    dict(header(GONE + 1, 2, marker="m-new", wall=1100.0), task_id="web-0-new"), *RUNNING])
    leftover = _registered_old_and_new(tmp_path, sandbox, monkeypatch)
    try:
        rows = _ps(capsys)
        assert [(i, r["state"], r["replaced_by"]) for i, r in rows.items()] == [
            ("web-0-old", "LOST", None), ("web-0-new", "LOST", None)], rows
        assert [p["pid"] for p in rows["web-0-old"]["leftovers"]] == [leftover.pid]
    finally:
        leftover.kill()
        leftover.wait()
    assert list(_ps(capsys)) == ["web-0-new"]  # the latest: no later supervisor took its sandbox
    every = _ps(capsys, "--all")
    assert (every["web-0-old"]["replaced_by"]["task_id"], every["web-0-new"]["replaced_by"]) == ("web-0-new", None)


def test_a_gone_task_whose_sandbox_was_deleted_and_run_again_is_listed_as_a_replaced_lost_one(
        tmp_path, capsys, monkeypatch):
    """Its supervisor died with no end recorded, its sandbox was deleted and another task run
    in it: GONE, not ended. While a process of it lives plain `ps` lists it; once none does,
    nothing of it is left to act on, as for a replaced LOST task: only `--all`, replaced."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    write(sandbox, [dict(header(GONE + 1, 2, marker="m-new", wall=1100.0), task_id="web-0-new"), *RUNNING])
    leftover = _registered_old_and_new(tmp_path, sandbox, monkeypatch)
    try:
        rows = _ps(capsys)
        assert [(i, r["state"]) for i, r in rows.items()] == [("web-0-old", "GONE"), ("web-0-new", "LOST")], rows
        assert [p["pid"] for p in rows["web-0-old"]["leftovers"]] == [leftover.pid]
    finally:
        leftover.kill()
        leftover.wait()
    assert list(_ps(capsys)) == ["web-0-new"]
    every = _ps(capsys, "--all")
    assert (every["web-0-old"]["state"], every["web-0-old"]["replaced_by"]["task_id"]) == ("GONE", "web-0-new")
    assert main(["ps", "--all"]) == 0
    assert "web-0-old: GONE (its supervisor recorded no end; replaced by web-0-new in the same sandbox)" in (
        capsys.readouterr().out)
