"""`stoker status` run in this process (`executor/cli/status.py`), its own words: its help;
another host's task as JSON, whole; a task's JSON indented by two."""
from __future__ import annotations

import json
import os

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from tests.integration.test_shared_root import OTHER, other_host_s, shared_root
from tests.support.statuscli import RUNNING, registered_task

pytestmark = pytest.mark.timeout(60)


def test_its_help_says_what_it_prints_and_each_argument(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # (argparse's width: each argument's help where the test reads it)
    with pytest.raises(SystemExit) as leaving:
        main(["status", "--help"])
    said = capsys.readouterr().out
    assert leaving.value.code == 0
    for words in ("\nPrint the checkpointed state of a task's sandbox; LOST when its supervisor is gone.\n",
                  "\n  SANDBOX|TASK_ID       sandbox directory, task id (or its beginning), or job key\n"
                  "                        CLUSTER/ROLE/ENV/NAME[/INSTANCE] (default $MESOS_SANDBOX, else the current\n"
                  "                        directory)\n",
                  "\n  --json                print the replayed state as JSON\n",
                  "\nexamples:\n  stoker status sandbox-hello-20261128-101500-3f2a1c\n"
                  "  stoker status hello-0-3f2a1c8e   (a task id, from `stoker ps`)\n"
                  "  stoker status hello-0            (the beginning of one running task's id)\n"
                  "  stoker status local/www-data/devel/hello/0   (a job key, and an instance)\n"
                  "  stoker status --json /var/lib/mesos/.../sandbox\n"):
        assert words in said, said


def test_another_host_s_task_as_json_is_its_entry_and_why_nothing_is_inspected(tmp_path, capsys):
    entry = other_host_s("other-0-1")
    shared_root(tmp_path, entry)
    root = str(tmp_path / "root")
    target = "other-0-1"
    assert main(["status", target, "--root", root]) == 0
    problem = capsys.readouterr().out.rstrip("\n")
    assert main(["status", "--json", target, "--root", root]) == 0
    out = capsys.readouterr().out
    assert out == json.dumps({"task_id": "other-0-1", "host": "other-host", "host_id": OTHER[0],
                              "sandbox": entry.sandbox, "supervisor_pid": os.getpid(),
                              "registered": entry.registered_wall, "ended": None, "problem": problem},
                             indent=2) + "\n"


def test_a_task_s_json_is_indented_by_two(tmp_path, capsys):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    assert main(["status", "--json", str(tmp_path / "sb"), "--root", settings.registry_root]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["state"] == "RUNNING"
    assert out == json.dumps(json.loads(out), indent=2) + "\n"


@pytest.mark.parametrize("where", ["MESOS_SANDBOX", "the current directory"])
def test_with_no_target_it_is_mesos_sandbox_else_the_current_directory(tmp_path, capsys, monkeypatch, where):
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    registered_task(settings, tmp_path / "sb", "web-0-1", RUNNING, alive=True)
    monkeypatch.delenv("MESOS_SANDBOX", raising=False)
    if where == "MESOS_SANDBOX":
        monkeypatch.setenv("MESOS_SANDBOX", str(tmp_path / "sb"))
    else:
        monkeypatch.chdir(tmp_path / "sb")
    assert main(["status", "--json", "--root", settings.registry_root]) == 0
    assert json.loads(capsys.readouterr().out)["task_id"] == "web-0-1"
