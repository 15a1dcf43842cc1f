"""`stoker status TASK_ID` of a real `stoker run` held (a test-only `sitecustomize`) just after
it registered its next attempt's id, before that attempt's header is in the checkpoint: the
window of 0.05-0.12 s in which, before, the text showed the attempt before under the new id
(its number, start and running process) while `--json` and `stoker ps` had none of it. Text
and JSON now agree: RESTARTING, the next attempt's number, started when it was registered,
no process of it recorded, the attempt before listed as an earlier one."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import textwrap
import time

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.observe.pages import task_page
from executor.observe.reader import Reader
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

# Holds `stoker run` in its second attempt's start, just after the registry names its id and
# before its header is written, until the test creates GATE/go (at most 60 s).
HOLD_AT_THE_NEXT_ID = patched_at_load("executor.host.session", """
    def _patch(module):
        real, seen = module.HostSession.task_started, []

        def task_started(self, *, task_id, **kwargs):
            real(self, task_id=task_id, **kwargs)
            seen.append(task_id)
            if len(seen) == int(os.environ.get("STOKER_TEST_HOLD_AT", "2")):
                gate = os.environ["STOKER_TEST_GATE"]
                with open(os.path.join(gate, "registered.tmp"), "w") as f:
                    f.write(task_id)
                os.rename(os.path.join(gate, "registered.tmp"), os.path.join(gate, "registered"))
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not os.path.exists(os.path.join(gate, "go")):
                    time.sleep(0.01)

        module.HostSession.task_started = task_started
    """)

CONFIG = """\
jobs = [Service(cluster='local', role='me', environment='test', name='web',
                task=Task(processes=[Process(name='web', cmdline='echo up; sleep 0.2; exit 3', max_failures=1)],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


ONCE = """\
jobs = [Job(cluster='local', role='me', environment='test', name='once',
            task=Task(processes=[Process(name='hi', cmdline='echo hi')], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


@contextlib.contextmanager
def _held(tmp_path, hold_at: int = 2):
    """A `stoker run` of a service that fails, held at its `hold_at`th attempt's new id: (its
    sandbox, that id, the run)."""
    hook, gate, work = tmp_path / "hook", tmp_path / "gate", tmp_path / "work"
    for d in (hook, gate, work):
        d.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOLD_AT_THE_NEXT_ID)
    (tmp_path / "web.aurora").write_text(textwrap.dedent(CONFIG))
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(tmp_path / "web.aurora"), "--sandbox", str(sandbox), "--restart-backoff", "0.1"],
                        work, env={"PYTHONPATH": f"{hook}:{REPO}", "STOKER_TEST_GATE": str(gate),
                                   "STOKER_TEST_HOLD_AT": str(hold_at)})
    pids: set[int] = set()
    try:
        wait_for(lambda: (gate / "registered").exists() or run.proc.poll() is not None, 30,
                 message=f"attempt {hold_at}'s id registered")
        assert (gate / "registered").exists(), run.stdout() + run.stderr()
        pids = task_pids(sandbox)
        yield sandbox, (gate / "registered").read_text(), run
    finally:
        (gate / "go").touch()
        run.close()
        kill_leftovers(pids | task_pids(sandbox))


@pytest.fixture
def held(tmp_path):
    """A `stoker run` of a service that fails, held at its second attempt's new id: (its
    sandbox, that id)."""
    with _held(tmp_path) as (sandbox, new_id, _run):
        yield sandbox, new_id


def test_status_of_a_new_id_before_its_attempt_is_recorded_agrees_in_text_and_json(held, capsys):
    sandbox, new_id = held
    registered = time.time()
    assert main(["status", new_id]) == 0
    text = capsys.readouterr().out
    assert main(["status", new_id, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first = text.splitlines()[0]
    assert "state=RESTARTING (attempt 1 ended FAILED; attempt 2 is starting)  attempt=2" in first, text
    assert f"task_id: {new_id} " in text and "earlier attempt 1: FAILED" in text, text
    assert "no processes recorded" in text and "\nweb " not in text, text  # before: web's run of attempt 1
    started = re.search(r"started: (\S+)", text)
    assert started is not None, text
    assert doc["task_id"] == new_id and doc["state"] == "RESTARTING" and doc["attempt"] == 2, doc
    assert doc["restart"]["attempt"] == 2 and [a["number"] for a in doc["attempts"]] == [1], doc
    assert abs(doc["started"] - registered) < 30 and started.group(1) == doc["started_iso"], (text, doc)
    # registered when attempt 1 ended and its back-off was over, not when its supervisor first was
    assert doc["started"] >= doc["attempts"][0]["history"][-1]["wall"], doc
    assert main(["ps", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["sandbox"] == str(sandbox)]
    assert (row["task_id"], row["state"], row["started"], row["processes_total"]) == \
        (new_id, "RESTARTING", doc["started"], 0), row
    page = task_page(Reader(RegistrySettings(registry_root=os.environ["STOKER_ROOT"])).task(new_id), time.time())
    assert "<dt>attempt</dt><dd>2</dd>" in page, page  # before: "-"
    assert "<h2>Earlier attempts</h2>" in page, page  # before: none (the text had attempt 1)


def _text_and_json(capsys, task_id: str) -> tuple[str, dict]:
    assert main(["status", task_id]) == 0
    text = capsys.readouterr().out
    assert main(["status", task_id, "--json"]) == 0
    return text, json.loads(capsys.readouterr().out)


def test_a_supervisor_gone_in_that_window_leaves_the_attempt_before_in_text_as_in_json(tmp_path, capsys):
    """Killed while held: the task is what its last attempt recorded (FAILED, the restart
    never made); the text listed no earlier attempt while --json had attempt 1."""
    with _held(tmp_path) as (sandbox, new_id, run):
        os.kill(run.pid, signal.SIGKILL)
        run.proc.wait(10)
        text, doc = _text_and_json(capsys, new_id)
    assert "state=FAILED  attempt=-" in text.splitlines()[0] and doc["state"] == "FAILED", (text, doc)
    assert [a["number"] for a in doc["attempts"]] == [1] and doc["attempt"] is None, doc
    assert "earlier attempt 1: FAILED" in text and f"supervisor_pid: {run.pid} (gone)" in text, text


def test_a_new_run_in_the_sandbox_of_another_before_its_first_header_is_its_own(tmp_path, capsys):
    """`stoker run` again in a sandbox whose checkpoint holds an earlier run: before its
    first header, its id showed the earlier run's label, id and supervisor pid, that one said
    running (text and --json), beside `stoker ps`'s row of the new run."""
    (tmp_path / "once.aurora").write_text(ONCE)
    (tmp_path / "first").mkdir()
    first = StokerProcess(["run", str(tmp_path / "once.aurora"), "--sandbox", str(tmp_path / "sandbox")],
                          tmp_path / "first")
    try:
        assert first.wait(30) == 0, first.stdout() + first.stderr()
    finally:
        first.close()
    with _held(tmp_path, hold_at=1) as (sandbox, new_id, run):
        text, doc = _text_and_json(capsys, new_id)
        assert main(["ps", "--json"]) == 0
        (row,) = [r for r in json.loads(capsys.readouterr().out) if r["task_id"] == new_id]
    assert "once" not in text and f"supervisor_pid: {run.pid} (running)" in text, text
    assert (doc["state"], doc["supervisor_pid"], doc.get("task_id", new_id)) == ("NEW", run.pid, new_id), doc
    assert "attempts" not in doc and (row["state"], row["supervisor_pid"]) == ("NEW", run.pid), (doc, row)
