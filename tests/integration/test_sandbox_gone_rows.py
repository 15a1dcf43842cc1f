"""A task whose checkpoint cannot be read while its supervisor runs, as `stoker ps`, its
`--json`, the observer's list and /metrics show it: its sandbox renamed or deleted under it
(`SANDBOX GONE`), its `.stoker` renamed away (`UNKNOWN`). Each showed `NEW 0/0`, which an
operator reads as "not started"; the JSON said `"state": "NEW"` with only the `problem`
sentence to tell. Now the state says nothing was read (`UNKNOWN`), `sandbox_gone` says why,
and the supervisor's pid and whether it runs are the registry's."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.observe.pages import tasks_page
from executor.observe.reader import EVERYONE, Reader
from executor.observe.scrape import TaskErrors, metrics_text
from tests.support.statuscli import RUNNING, registered_task

pytestmark = pytest.mark.timeout(60)


def _ps(capsys, root, *flags: str) -> str:
    assert main(["ps", "--root", str(root), *flags]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize("how", ["deleted", "renamed"])
def test_a_live_supervisor_s_task_whose_sandbox_is_gone_is_shown_so_never_new(tmp_path, capsys, how):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    sandbox = tmp_path / "sb"
    registered_task(settings, sandbox, "web-0-1", RUNNING, alive=True)  # this process is its supervisor
    if how == "deleted":
        shutil.rmtree(sandbox)
    else:
        os.rename(sandbox, tmp_path / "sb.old")
    me = os.getpid()
    (row,) = json.loads(_ps(capsys, settings.registry_root, "--json"))
    assert (row["state"], row["sandbox_gone"], row["supervisor_alive"], row["supervisor_pid"], row["ended"]) == \
        ("UNKNOWN", True, True, me, False)
    text = _ps(capsys, settings.registry_root)
    header, listed = text.splitlines()[:2]
    assert listed.split()[2:4] == ["SANDBOX", "GONE"] and " NEW " not in listed and " 0/0 " not in listed
    assert listed.split()[-2:] == ["-", "-"]  # PROCS, HEALTH: nothing read
    assert (f"web-0-1: the sandbox {sandbox} no longer exists (renamed or deleted); its supervisor (pid {me}) "
            f"still runs, but without its sandbox it cannot be reached: `kill {me}` (SIGTERM) stops it "
            f"gracefully\n") in text
    reader = Reader(settings)
    (task,) = reader.tasks()
    assert task.row == row | {"started": task.row["started"], "started_iso": task.row["started_iso"]}
    page = tasks_page([task], 0.0, settings.registry_root)
    assert "SANDBOX GONE" in page and ">NEW<" not in page and "0/0" not in page
    scraped = metrics_text(reader, EVERYONE, None, TaskErrors()).splitlines()
    (state,) = [line for line in scraped if line.startswith("stoker_task_state{") and line.endswith(" 1")]
    assert 'state="UNKNOWN"' in state, scraped


def test_a_live_supervisor_s_task_whose_stoker_dir_was_renamed_away_is_unknown(tmp_path, capsys):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    sandbox = tmp_path / "sb"
    registered_task(settings, sandbox, "web-0-1", RUNNING, alive=True)
    os.rename(sandbox / ".stoker", sandbox / ".stoker.away")
    (row,) = json.loads(_ps(capsys, settings.registry_root, "--json"))
    assert (row["state"], row["sandbox_gone"], row["supervisor_alive"]) == ("UNKNOWN", False, True)
    listed = _ps(capsys, settings.registry_root).splitlines()[1]
    assert listed.split()[2] == "UNKNOWN" and listed.split()[-2:] == ["-", "-"]


def test_a_live_supervisor_s_task_whose_checkpoint_cannot_be_read_is_unknown(tmp_path, capsys):
    """The same rule for a checkpoint there but unreadable (here a directory in its place;
    another user's, an I/O error): its problem said under the table, never NEW 0/0."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    sandbox = tmp_path / "sb"
    registered_task(settings, sandbox, "web-0-1", RUNNING, alive=True)
    os.unlink(sandbox / ".stoker/checkpoint.jsonl")
    os.mkdir(sandbox / ".stoker/checkpoint.jsonl")
    (row,) = json.loads(_ps(capsys, settings.registry_root, "--json"))
    assert (row["state"], row["sandbox_gone"], row["supervisor_alive"]) == ("UNKNOWN", False, True)
    assert row["problem"].startswith(f"cannot read the checkpoint in {sandbox}/.stoker: ")
    text = _ps(capsys, settings.registry_root)
    assert text.splitlines()[1].split()[2] == "UNKNOWN" and f"web-0-1: {row['problem']}\n" in text


@pytest.mark.parametrize("older", [False, True], ids=["pinned", "older-entry"])
@pytest.mark.parametrize("ended", [False, True], ids=["no-end", "let-go"])
def test_a_gone_supervisor_s_task_whose_sandbox_is_deleted_is_gone_whatever_stoker_wrote_its_entry(
        tmp_path, capsys, older, ended):
    """An entry of an older Stoker records no `.stoker` (`stoker_dir`): with its supervisor gone
    and its sandbox deleted, its task showed LOST (no end recorded) or NEW (one recorded), where
    an entry that pins its `.stoker` shows GONE, as both now do."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    sandbox = tmp_path / "sb"
    registered_task(settings, sandbox, "web-0-1", RUNNING, alive=False, ended=ended)
    if older:
        (path,) = (tmp_path / "root").glob("*.json")
        doc = json.loads(path.read_text())
        del doc["stoker_dir"]
        path.write_text(json.dumps(doc))
    shutil.rmtree(sandbox)
    (row,) = json.loads(_ps(capsys, settings.registry_root, "--all", "--json"))
    assert (row["state"], row["ended"]) == ("GONE", ended), row
    assert row["problem"].startswith("its sandbox no longer holds its checkpoint: removed; "), row["problem"]
    assert main(["status", "--root", settings.registry_root, "web-0-1"]) == 0  # (was, an older entry's: an
    out = capsys.readouterr()[0]  # error, exit 2, "its sandbox ... no longer exists", where ps says GONE)
    assert "state=GONE" in out and row["problem"] in out, out
