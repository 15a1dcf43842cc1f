"""Files in the registry root that `stoker ps` does not read as tasks: one line on stderr
naming how many and the first, exit status and `--json`'s stdout as they were. Before, a
file put there by hand, an entry that is not JSON or one that lacks a field were skipped
without a word, and an operator looking for a task they held never learned it was not read.
What the registry itself keeps there (a write's temporary, the port claims files) and what a
file system puts there (NFS's `.nfs*` of a file still open, a mount's `lost+found`) is left
alone, silently."""
from __future__ import annotations

import html
import json
import os
import time

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.observe.pages import tasks_page
from executor.observe.reader import EVERYONE, Reader
from executor.observe.scrape import TaskErrors, metrics_text
from tests.support.statuscli import RUNNING, registered_task

pytestmark = pytest.mark.timeout(60)
NOT_A_PID = "4000000000"  # an entry's name no supervisor can have (pids stop at 2**22)


def _ps(capsys, root, *flags: str) -> tuple[str, str]:
    assert main(["ps", "--all", "--root", str(root), *flags]) == 0
    return capsys.readouterr()


def test_files_ps_does_not_read_as_tasks_are_one_line_naming_the_first(tmp_path, capsys):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    root = tmp_path / "root"
    (root / f"{NOT_A_PID}-1.json").write_text("{not json")
    (root / f"{NOT_A_PID}-2.json").write_text(json.dumps({"sandbox": "/sb"}))  # fields missing
    (root / "notes.txt").write_text("my tasks\n")
    (root / f"{NOT_A_PID}-3.json").symlink_to(root / "notes.txt")  # named as one, not read through
    (root / "ports.0a1b.claims").write_text("")  # the registry's own, and the file system's
    (root / f".{NOT_A_PID}-4.json.x1y2.tmp").write_text("")
    (root / ".nfs000000000001").write_text("")
    (root / "lost+found").mkdir()
    out, err = _ps(capsys, root)
    assert "web-0-1" in out
    assert err == (f"stoker ps: 4 files in the registry {root} are not tasks it reads (put there by hand, "
                   f"not JSON, a field missing; a damaged entry goes once older than the retention, anything "
                   f"else stays): the first is {root}/{NOT_A_PID}-1.json\n")
    out, again = _ps(capsys, root, "--json")
    assert [r["task_id"] for r in json.loads(out)] == ["web-0-1"] and again == err  # stdout: the list alone


def test_a_registry_of_its_own_files_only_says_nothing(tmp_path, capsys):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    (tmp_path / "root/ports.0a1b.claims").write_text("")
    assert _ps(capsys, tmp_path / "root")[1] == ""
    os.unlink(tmp_path / "root/ports.0a1b.claims")
    (tmp_path / "root/one.txt").write_text("")
    assert _ps(capsys, tmp_path / "root")[1].startswith(
        f"stoker ps: 1 file in the registry {tmp_path / 'root'} is not a task it reads (")


def test_the_observer_says_what_ps_says_on_its_task_list_and_in_its_metrics(tmp_path):
    """The observer's task list and `/metrics` said nothing of the files `stoker ps` names (its
    list showed the tasks alone): the list now says the same sentence below its table, and
    `stoker_observer_registry_files_not_read` counts them; neither to a viewer who sees only
    their own tasks (`--show-tasks-to owner`), as for the entries it cannot read."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    root = tmp_path / "root"
    (root / f"{NOT_A_PID}-1.json").write_text("{not json")
    (root / "notes.txt").write_text("my tasks\n")
    (root / "ports.0a1b.claims").write_text("")
    reader = Reader(settings)
    tasks, unreadable = reader.tasks_and_unreadable(EVERYONE)
    page = tasks_page(tasks, time.time(), str(root), unreadable, not_read=reader.not_read)
    assert html.escape(f"2 files in the registry {root} are not tasks it reads (put there by hand, not "
                       f"JSON, a field missing; a damaged entry goes once older than the retention, anything "
                       f"else stays): the first is {root}/{NOT_A_PID}-1.json", quote=False) in page
    text = metrics_text(reader, EVERYONE, None, TaskErrors())
    assert "\nstoker_observer_registry_files_not_read 2\n" in text
    assert "stoker_observer_registry_files_not_read" not in metrics_text(reader, os.getuid() + 1, None, TaskErrors())
