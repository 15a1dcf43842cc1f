"""A task whose entry a reader read before its supervisor named the task there (the entry of a
`stoker executor` before its LAUNCH, or of a `stoker run` before its first attempt's id), and
whose checkpoint it read after (the supervisor names its task in its entry, then writes the
header): before, `stoker ps --json` and the observer showed that STARTING or RUNNING task with
no id, job key or label (seen as 36 runs started at once), and the same row with them at the
next reading. The row names the task as its supervisor's checkpoint does."""
from __future__ import annotations

import json
import time

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.observe.reader import Reader
from tests.support.statuscli import RUNNING, header, write

pytestmark = pytest.mark.timeout(60)
ME = own_identity()


def _read_before_named(tmp_path) -> RegistrySettings:
    """The registry as such a reader has it: the entry of a live supervisor (this test's
    process) that names no task yet, and its checkpoint's header and records."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    sandbox = tmp_path / "sandbox"
    write(sandbox, [header(ME.pid, ME.start_ticks), *RUNNING])
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=ME.pid, supervisor_start=ME.start_ticks,
        supervisor_boot=ME.boot_id, front_end=FrontEnd.EXECUTOR, registered_wall=time.time()), prune=False)
    return settings


def test_ps_names_the_task_its_checkpoint_names(tmp_path, capsys):
    settings = _read_before_named(tmp_path)
    assert main(["ps", "--json", "--root", settings.registry_root]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert (shown["task_id"], shown["job_key"], shown["label"], shown["state"]) == \
        ("web-0-1", "c/r/e/web", "web.0", "RUNNING")


def test_the_observer_names_it_too(tmp_path):
    [summary] = Reader(_read_before_named(tmp_path)).tasks()
    assert (summary.row["task_id"], summary.row["label"]) == ("web-0-1", "web.0")
