"""`stoker ps` run in this process (`executor/cli/ps.py`), its own words: its help; a
registry with no task to list, live or at all; the JSON list, indented; an entry of a live
supervisor this version cannot read, named with its pid; an end its supervisor recorded
before it let go, not replayed without `--all`."""
from __future__ import annotations

import json
import os

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.task import inspection
from tests.support.statuscli import RUNNING, registered_task

pytestmark = pytest.mark.timeout(60)


def ps(capsys: pytest.CaptureFixture[str], root: str, *flags: str) -> tuple[str, str]:
    assert main(["ps", "--root", root, *flags]) == 0
    return capsys.readouterr()


def test_its_help_says_what_it_lists_and_each_flag(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # (argparse's width: each flag's help on its line)
    with pytest.raises(SystemExit) as leaving:
        main(["ps", "--help"])
    said = capsys.readouterr().out
    assert leaving.value.code == 0
    for words in ("\nList the tasks Stoker supervises on this host.\n", "\n  --all                 also the tasks that ended\n",
                  "\n  --json                print the list as JSON\n",
                  "\nexamples:\n  stoker ps\n  stoker ps --all --json\n  stoker ps --root /var/run/stoker\n"):
        assert words in said, said


def test_no_task_to_list_is_said_with_what_all_would_add(tmp_path, capsys):
    root = str(tmp_path / "root")
    os.makedirs(root, mode=0o700)
    assert ps(capsys, root) == (f"no live tasks in the registry {root} (--all lists ended ones too)\n", "")
    assert ps(capsys, root, "--all") == (f"no tasks in the registry {root}\n", "")
    assert ps(capsys, root, "--json") == ("[]\n", "")


def test_the_json_list_is_indented_by_two(tmp_path, capsys):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    out, _ = ps(capsys, settings.registry_root, "--json")
    (row,) = json.loads(out)
    assert out == json.dumps([row], indent=2) + "\n"


def test_an_entry_this_version_cannot_read_of_a_live_supervisor_is_named_with_its_pid(tmp_path, capsys):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    (damaged,) = os.listdir(settings.registry_root)  # named after this process, its supervisor
    with open(os.path.join(settings.registry_root, damaged), "w") as f:
        f.write("{not json")
    _, err = ps(capsys, settings.registry_root)
    assert err == (f"stoker ps: {settings.registry_root}/{damaged} is not an entry this version of Stoker reads "
                   f"(another version's, or damaged); its supervisor (pid {os.getpid()}) runs, and its task is "
                   "not listed\n")


FINISHED = [*RUNNING, {"kind": "task", "from": "RUNNING", "to": "FINISHED", "reason": "done", "wall": 1003.0}]


def test_an_end_its_supervisor_recorded_is_not_replayed_unless_all_is_asked(tmp_path, capsys, monkeypatch):
    """A host's registry holds a week of ended tasks: `stoker ps` replayed each one's
    checkpoint (up to 1 MB of records) to find it ended (1,000 of 38 KB each: 5.8 s). An entry
    whose supervisor let go after its task's end was recorded says so, and is skipped; one that
    let go without it (a full disk) is replayed, and its task is LOST."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "done", "done-0-1", FINISHED, alive=False, ended=True, ended_state="FINISHED")
    registered_task(settings, tmp_path / "unsaid", "unsaid-0-1", RUNNING, alive=False, ended=True)
    registered_task(settings, tmp_path / "odd", "odd-0-1", FINISHED, alive=False, ended=True, ended_state="LOST")
    registered_task(settings, tmp_path / "web", "web-0-1", RUNNING, alive=True)
    replayed: list[str] = []
    real = inspection.inspect_sandbox
    monkeypatch.setattr(inspection, "inspect_sandbox",
                        lambda sandbox, *rest, **kw: replayed.append(sandbox.name) or real(sandbox, *rest, **kw))
    out, _ = ps(capsys, settings.registry_root, "--json")
    assert sorted(replayed) == ["odd", "unsaid", "web"]  # an `ended_state` not a terminal one counts for none
    assert sorted((r["task_id"], r["state"]) for r in json.loads(out)) == [("unsaid-0-1", "LOST"), ("web-0-1", "RUNNING")]
    replayed.clear()
    out, _ = ps(capsys, settings.registry_root, "--all", "--json")
    assert sorted(replayed) == ["done", "odd", "unsaid", "web"]
    assert ("done-0-1", "FINISHED") in [(r["task_id"], r["state"]) for r in json.loads(out)]


def test_a_lost_task_whose_sandbox_a_recorded_end_took_since_stays_unlisted(tmp_path, capsys):
    """The later supervisor's entry is not inspected (its end recorded), and still counts as
    the one that took the sandbox of a task LOST before it: that one, which left no process,
    is listed only with `--all`, as when both were inspected."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "other", "other-0-1", FINISHED, alive=False, ended=True,
                    ended_state="FINISHED")  # listed first, not inspected: the lists apart
    registered_task(settings, tmp_path / "sb", "lost-0-1", RUNNING, alive=False)
    registered_task(settings, tmp_path / "sb", "next-0-2", FINISHED, alive=False, ended=True, ended_state="FINISHED")
    assert ps(capsys, settings.registry_root) == (
        f"no live tasks in the registry {settings.registry_root} (--all lists ended ones too)\n", "")
    out, _ = ps(capsys, settings.registry_root, "--all", "--json")
    assert sorted(r["task_id"] for r in json.loads(out)) == ["lost-0-1", "next-0-2", "other-0-1"]
