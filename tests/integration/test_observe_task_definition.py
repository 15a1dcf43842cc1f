"""A task's page (`Reader.task`) and the definition it shows: the reader asks for it with the
facts of the task's registry entry and checkpoint (its id, its supervisor's ids, whether it
runs, whether it recorded its attempt, the tasks that took its sandbox after it, whether it
let go), each of which changes what the page says when the sandbox's `task.json` is not its
own; and only the `.stoker` its supervisor made is read. Sandboxes and registry entries are
written with the product's own writers (`tests/support/statuscli.py`)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.observe.reader import EVERYONE, Reader, supervisor_key
from tests.support.statuscli import RUNNING, registered_task

pytestmark = pytest.mark.timeout(30)

NOT_KEPT = ("its supervisor did not keep it: a Stoker from before task.json, or one that could not write it "
            "(`task_definition_unwritten` in its log), or it was removed since")


@pytest.fixture
def settings(tmp_path) -> RegistrySettings:
    return RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=86400.0)


def _sandbox(tmp_path: Path, name: str = "sandbox") -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def _definition(sandbox: Path, task_id: str) -> dict:
    doc = {"task_id": task_id, "processes": ["web"]}
    (sandbox / ".stoker" / "task.json").write_text(json.dumps(doc))
    return doc


def _page(settings: RegistrySettings, task_id: str, supervisor: str = ""):
    return Reader(settings).task(task_id, supervisor, EVERYONE)


def test_the_task_s_own_definition_is_shown(settings, tmp_path):
    sandbox = _sandbox(tmp_path)
    registered_task(settings, sandbox, "web-1", RUNNING, alive=True)
    doc = _definition(sandbox, "web-1")
    detail = _page(settings, "web-1")
    assert (detail.definition, detail.definition_problem) == (doc, "")
    status = detail.status
    assert (status["supervisor_stopped"], status["stopped_processes"], status["supervisor_frozen"],
            status["supervisor_frozen_cgroup"], detail.supervisor_frozen) == (False, [], False, None, "")
    assert isinstance(status["resources"], dict) and status["resources"]
    assert detail.supervisor == supervisor_key(Reader(settings).visible_entries(EVERYONE)[0][0])


def test_a_definition_of_another_run_in_the_sandbox_is_not_shown_as_its_own(settings, tmp_path):
    sandbox = _sandbox(tmp_path)
    registered_task(settings, sandbox, "web-1", RUNNING, alive=True)
    _definition(sandbox, "someone-else")
    detail = _page(settings, "web-1")
    assert detail.definition is None
    assert detail.definition_problem == (
        "the sandbox's task.json is of task 'someone-else', an earlier run's in this sandbox; this attempt's: "
        + NOT_KEPT)


def test_a_definition_being_written_by_a_live_supervisor_says_so(settings, tmp_path):
    sandbox = _sandbox(tmp_path)
    registered_task(settings, sandbox, "web-1", RUNNING, alive=True)
    (sandbox / ".stoker" / ".task.json.0123abcd.tmp").write_text("{")
    assert _page(settings, "web-1").definition_problem == (
        f"no {sandbox}/.stoker/task.json: its supervisor is writing it")


def test_a_definition_left_half_written_by_a_dead_supervisor_says_so(settings, tmp_path):
    sandbox = _sandbox(tmp_path)
    registered_task(settings, sandbox, "web-1", RUNNING, alive=False)
    (sandbox / ".stoker" / ".task.json.0123abcd.tmp").write_text("{")
    assert _page(settings, "web-1").definition_problem == (
        f"no {sandbox}/.stoker/task.json: its supervisor was killed as it wrote it (it left .task.json.0123abcd.tmp, "
        "which the next supervisor of this sandbox removes)")


def test_a_definition_of_a_task_that_took_the_sandbox_later_is_a_later_attempt_s(settings, tmp_path):
    sandbox = _sandbox(tmp_path)
    registered_task(settings, sandbox, "web-1", RUNNING, alive=False, ended=True)
    time.sleep(0.01)  # registered after it
    registered_task(settings, sandbox, "web-2", RUNNING, alive=True)
    _definition(sandbox, "web-2")
    entries = {e.task_id: e for e in Reader(settings).visible_entries(EVERYONE)[0]}
    earlier = _page(settings, "web-1", supervisor_key(entries["web-1"]))
    assert (earlier.definition, earlier.definition_problem) == (
        None, "the sandbox's task.json is of task 'web-2', a later attempt")


def test_a_task_whose_checkpoint_recorded_no_attempt_says_why_none_was_written(settings, tmp_path):
    sandbox = _sandbox(tmp_path)
    registered_task(settings, sandbox, "web-1", [], alive=False, ended=True)
    os.unlink(sandbox / ".stoker" / "checkpoint.jsonl")
    assert _page(settings, "web-1").definition_problem == (
        f"no {sandbox}/.stoker/task.json: its supervisor let go of the sandbox before it recorded the attempt: it "
        "could not write it (`task_definition_unwritten` in its log), or stopped before it did")


def test_only_the_stoker_directory_its_supervisor_made_is_read(settings, tmp_path):
    sandbox = _sandbox(tmp_path)
    registered_task(settings, sandbox, "web-1", RUNNING, alive=True)
    os.rename(sandbox / ".stoker", tmp_path / "moved")
    (sandbox / ".stoker").mkdir()  # the task's own, in its place
    _definition(sandbox, "web-1")
    detail = _page(settings, "web-1")
    assert detail.definition is None
    assert detail.definition_problem.startswith(f"cannot open {sandbox}/.stoker/task.json: ")
