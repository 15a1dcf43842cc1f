"""Fault 5a: process names and log paths cannot leave the sandbox.

Every hostile process name is rejected when the job is loaded, both from a `.aurora` file
and from a task document, with a message naming the field (a name may hold templates, as in
Aurora, and is checked again once they are bound); and the Supervisor's own check
(run in a child process by `tests/support/spawn_names.py`) refuses every name that would put
a log outside `SANDBOX/.logs`, so nothing is ever created outside the sandbox.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from config.bind import bind
from config.document import decode, encode
from config.errors import ConfigError
from config.loader import load_job
from config.loader import prepare_job as load_ready
from tests.support.configs import job, process
from tests.support.stoker_proc import REPO

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

SPAWN_NAMES = REPO / "tests/support/spawn_names.py"
ABSOLUTE = f"/tmp/stoker-faults-abs-{uuid.uuid4().hex}"

# Names that lead out of SANDBOX/.logs, or cannot be a file name at all.
ESCAPING = {
    "parent": "../x",
    "dotdot": "..",
    "dot": ".",
    "absolute": ABSOLUTE,
    "slash": "a/b",
    "climb": "a/../../x",
    "trailing slash": "web/",
    "nul": "x\0y",
    "only nul": "\0",
    "empty": "",
    "very long": "a" * 300,
}
# Names that stay inside the sandbox but are not safe names (control and look-alike characters).
TRICKS = {
    "newline": "web\n",
    "trailing newline after dots": "..\n",
    "space": " ",
    "hidden": ".hidden",
    "dash": "-rf",
    "backslash": "a\\b",
    "fullwidth": "\uff57\uff45\uff42",
    "fullwidth solidus": "a\uff0fb",
    "division slash": "..\u2215x",
    "one dot leaders": "\u2024\u2024",
    "right-to-left override": "web\u202etxt.exe",
    "zero width space": "web\u200b",
    "dotless i": "web\u0131",
    "template and a slash": "{{thermos.task_id}}/x",
    "tab": "a\tb",
}
ALL = {**ESCAPING, **TRICKS}
def _load_cases():
    return [pytest.param(name, id=label) for label, name in ALL.items()]


@pytest.mark.parametrize("name", list(_load_cases()))
def test_hostile_process_name_is_rejected_when_a_config_file_is_loaded(tmp_path, name):
    path = tmp_path / "job.aurora"
    path.write_text(
        f"jobs = [Job(cluster='c', role='r', environment='e', name='j',\n"
        f"            task=Task(name='t', processes=[Process(name={name!r}, cmdline='true')],\n"
        f"                      resources=Resources(cpu=0.1, ram=1024 * 1024, disk=1024 * 1024)))]\n")
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    assert "processes[0].name" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("name", list(_load_cases()))
def test_hostile_process_name_is_rejected_in_a_task_document(name):
    doc = json.loads(encode(job(process("web", "true"))))
    doc["job"]["task"]["processes"][0]["name"] = name
    doc["job"]["task"]["name"] = "t"
    with pytest.raises(ConfigError) as caught:
        decode(json.dumps(doc).encode())
    assert "processes[0].name" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("hostname", ["../../x", "a/b", "..", " x", "x\ny"])
def test_a_template_that_binds_a_hostile_name_is_rejected_when_bound(hostname):
    templated = job(process("{{mesos.hostname}}", "true"), name="j")
    with pytest.raises(ConfigError) as caught:
        bind(load_ready(templated, "test"), instance=0, ports={}, task_id="t", hostname=hostname, user="u")
    assert "processes[0].name" in str(caught.value) and "is not a safe process name" in str(caught.value)


def _spawn_names(sandbox: Path, names: list[str]) -> list[dict]:
    result = subprocess.run([sys.executable, str(SPAWN_NAMES), str(sandbox)],
                            input=json.dumps(names), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
        return True
    except ValueError:
        return False


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_the_supervisor_refuses_every_name_that_leaves_the_sandbox(tmp_path, figures):
    sandbox = tmp_path / "sandbox"
    before = _tree(tmp_path)
    results = _spawn_names(sandbox, list(ALL.values()))
    by_name = {r["name"]: r for r in results}
    assert len(results) == len(ALL)
    errors = [r for r in results if "error" in r]
    assert not errors, errors
    refused = [label for label, name in ESCAPING.items() if "rejected" in by_name[name]]
    figures.add("escaping names refused by the supervisor", f"{len(refused)} of {len(ESCAPING)}")
    assert refused == list(ESCAPING), \
        f"the supervisor started {sorted(set(ESCAPING) - set(refused))}"
    for label, name in ESCAPING.items():
        assert by_name[name]["rejected"], label
    for label, name in TRICKS.items():
        r = by_name[name]
        if "spawned" in r:  # not a safe name, but the supervisor's job is only containment
            assert _inside(Path(r["log_dir"]), sandbox / ".logs"), (label, r)
    started = sum("spawned" in r for r in results)
    figures.add("look-alike names the supervisor started inside SANDBOX/.logs", started)
    after = _tree(tmp_path)
    outside = {p for p in after - before if p != "sandbox" and not p.startswith("sandbox/")}
    assert not outside, f"files were created outside the sandbox: {sorted(outside)}"
    assert not os.path.exists(ABSOLUTE)


def test_a_symlinked_process_log_directory_is_refused(tmp_path):
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    (sandbox / ".logs").mkdir(parents=True)
    outside.mkdir()
    (sandbox / ".logs" / "evil").symlink_to(outside)
    [result] = _spawn_names(sandbox, ["evil"])
    assert "would put its logs outside" in result.get("rejected", ""), result
    assert not any(outside.iterdir())


def test_a_symlinked_logs_root_is_refused(tmp_path):
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    sandbox.mkdir()
    outside.mkdir()
    (sandbox / ".logs").symlink_to(outside)
    [result] = _spawn_names(sandbox, ["web"])
    assert not any(outside.iterdir()), f"logs were written outside the sandbox: {result}"
    assert "rejected" in result, result


def _rejected_at_load(name: str) -> bool:
    doc = json.loads(encode(job(process("web", "true"))))
    doc["job"]["task"]["processes"][0]["name"] = name
    doc["job"]["task"]["name"] = "t"
    try:
        decode(json.dumps(doc).encode())
    except ConfigError:
        return True
    return False


def test_figure_hostile_names_rejected_at_load(figures):
    rejected = {label for label, name in ALL.items() if _rejected_at_load(name)}
    accepted = sorted(set(ALL) - rejected)
    figures.add("hostile names rejected at load", f"{len(rejected)} of {len(ALL)}"
                + (f" (accepted: {', '.join(accepted)})" if accepted else ""))
    assert not accepted
