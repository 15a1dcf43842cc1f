"""kazoo is loaded only for a task that announces: a fresh interpreter proves it.

The check imports every module the executor and `stoker run` start with, plus the module that
decides whether to announce, makes that decision for tasks that do not announce, and looks in
`sys.modules`. The same script then imports the adapter, so the check is shown to be able to
fail.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import executor.cli.main, executor.mesos.executor, executor.local.run, executor.task.owner
from config.announcer import AnnouncerSpec
from config.zookeeper import AnnouncerSettings
from config.spec import JobSpec, TaskSpec
from executor.task.serverset import plan_announcement

job = JobSpec(role="r", environment="e", cluster="c", name="n", instance=0, task_id="t",
              task=TaskSpec(name="n", processes=()), ports={"http": 8080})
decisions = [plan_announcement(job, None, AnnouncerSettings(ensemble="127.0.0.1:2181"), "h"),
             plan_announcement(job, AnnouncerSpec(), None, "h"),
             plan_announcement(job, None, None, "h")]
before = sorted(m for m in sys.modules if m == "kazoo" or m.startswith("kazoo."))
import executor.task.announcer
after = "kazoo" in sys.modules
print(json.dumps({"decisions": [d is None for d in decisions], "before": before, "after": after}))
"""


def test_a_task_that_does_not_announce_never_loads_kazoo():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"decisions": [True, True, True], "before": [], "after": True}


SETTINGS_SCRIPT = r"""
import json, sys
import executor.cli.main, executor.local.run
from config.executorsettings import ExecutorSettings
from config.settings import RunSettings

def loaded():
    return [m for m in ("config.zookeeper", "executor.task.serverset") if m in sys.modules]

agent = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e"}
quiet = [RunSettings.from_env({}, config="job.aurora").announcer, ExecutorSettings.from_env(agent).announcer]
at_start = loaded()
run = RunSettings.from_env({}, config="job.aurora", announce="127.0.0.1:2181").announcer
print(json.dumps({"quiet": [s is None for s in quiet], "at_start": at_start,
                  "run": [run.ensemble, run.allow_custom_serverset_path], "after": loaded()}))
"""


def test_the_announcer_settings_are_built_and_loaded_only_when_a_command_announces():
    """`stoker run` and `stoker executor` load `config.zookeeper` (AnnouncerSettings, ZkAuth)
    and the ServerSet planner only once a flag asks them to announce."""
    proc = subprocess.run([sys.executable, "-c", SETTINGS_SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"quiet": [True, True], "at_start": [],
                      "run": ["127.0.0.1:2181", True], "after": ["config.zookeeper"]}


BIND_SCRIPT = r"""
import json, sys
from config.bind import bind
from config.schema import Announcer, Job, Process, Resources, Task

task = Task(name="t", processes=[Process(name="p", cmdline="true")], resources=Resources(cpu=1, ram=1, disk=1))
quiet = bind(Job(cluster="c", role="r", environment="e", name="n", task=task),
             ports={}, instance=0, task_id="t", hostname="h", user="u")
at_quiet = "config.announcer" in sys.modules
loud = bind(Job(cluster="c", role="r", environment="e", name="n", task=task, announce=Announcer(primary_port="http")),
            ports={"http": 8080}, instance=0, task_id="t", hostname="h", user="u")
print(json.dumps({"quiet": quiet.announce is None, "at_quiet": at_quiet,
                  "loud": type(loud.announce).__module__, "port": loud.announce.primary_port}))
"""


def test_binding_a_job_that_does_not_announce_never_loads_the_announcer_spec():
    """A new config's planning child binds before its plan is sent: `config.announcer` (0.8 ms
    of its CPU) is loaded only for a job that has an `announce` (`config.bind._announcer_spec`)."""
    proc = subprocess.run([sys.executable, "-c", BIND_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"quiet": True, "at_quiet": False, "loud": "config.announcer", "port": "http"}
