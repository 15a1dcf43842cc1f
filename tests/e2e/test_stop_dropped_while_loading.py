"""A SIGTERM that reaches `stoker run` while it loads and while Python runs a finalizer or a
weakref callback (importlib's module lock callback, as 40 runs were stopped together 1.5 s into
their start: one in the storms ran on, RUNNING, its SIGTERM gone): the handler's `Stopped`
was raised inside the callback, where Python can only report and drop it ("Exception
ignored"), and nothing stopped the run. The stop such a finalizer drops is now sent again once
the run's signal relay is up, and ends the run as a SIGTERM then does; it is said in one plain
line, not as an ignored exception with its traceback. A test-only
`sitecustomize` makes such a callback send the SIGTERM, as a module on the start path loads."""
from __future__ import annotations

import json

import pytest

from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(120)

DROPPING = """
    def _patch(module):
        import signal, weakref

        class Thing:
            __slots__ = ("__weakref__",)  # what the weak reference refers to

        def callback(_ref):
            os.kill(os.getpid(), signal.SIGTERM)
            total = 0
            for n in range(100000):  # the handler runs here, in the callback: its raise is dropped
                total += n

        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        assert ref() is None
    """
DROPPED_IN_A_CALLBACK = patched_at_load("executor.local.runstart", DROPPING)
DROPPED_AS_OBSERVE_LOADS = patched_at_load("executor.observe.reader", DROPPING)

CONFIG = """\
jobs = [Service(cluster='local', role='me', environment='test', name='web',
                task=Task(processes=[Process(name='web', cmdline='exec sleep 600')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


@pytest.mark.parametrize(("sent", "status"), [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_a_stop_a_callback_dropped_as_the_run_loaded_still_stops_it(tmp_path, sent, status):
    """SIGINT's too: Python's own handler raised its KeyboardInterrupt in the callback, dropped
    as a `Stopped` was (a `kill -INT`, a container's STOPSIGNAL, lost)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DROPPED_IN_A_CALLBACK.replace("signal.SIGTERM", f"signal.{sent}"))
    (tmp_path / "web.aurora").write_text(CONFIG)
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(tmp_path / "web.aurora"), "--sandbox", str(sandbox), "--log-level", "info"],
                        tmp_path, env={"PYTHONPATH": f"{hook}:{REPO}", "STOKER_EARLY_START": "off"})
    try:
        try:
            code = run.wait(60)
        except Exception:  # still running: the stop was lost
            code = None
        assert f"stop_deferred signal={sent}" in run.stderr(), run.stderr()  # the callback did drop it
        assert code == status, run.stdout() + run.stderr()
        # an ordinary stop, said in one plain line: was a WARNING `exception_ignored` and a traceback
        assert "Traceback" not in run.stderr() and "WARNING" not in run.stderr(), run.stderr()
    finally:
        run.close()
        kill_leftovers(task_pids(sandbox))


@pytest.mark.parametrize("sent", ["SIGTERM", "SIGINT"])
def test_a_stop_a_callback_dropped_as_the_observer_loaded_still_stops_it(tmp_path, sent):
    """`stoker observe` has no signal relay: the stop dropped so was noted and never sent
    again, and the observer served on."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DROPPED_AS_OBSERVE_LOADS.replace("signal.SIGTERM", f"signal.{sent}"))
    observer = StokerProcess(["observe", "--root", str(tmp_path / "root"), "--port", "0"], tmp_path,
                             env={"PYTHONPATH": f"{hook}:{REPO}"})
    try:
        try:
            code = observer.wait(60)
        except Exception:  # still serving: the stop was lost
            code = None
        said = observer.stderr()
        assert f"{sent} came as a finalizer ran" in said or f"stop_deferred signal={sent}" in said, said  # dropped
        assert code == 0, observer.stdout() + said
        assert "Traceback" not in said and "Exception ignored" not in said, said  # one plain line
    finally:
        observer.close()


@pytest.mark.parametrize(("flags", "env"), [
    (["--log-format", "json"], {}),
    (["--log-form", "json"], {}),  # argparse takes a flag's unique abbreviation: was a plain line
    (["--log-f=json"], {}),
    ([], {"STOKER_LOG_FORMAT": "json"}),
    (["--log-format=json"], {"STOKER_LOG_FORMAT": "text"}),  # the flag wins
])
def test_a_stop_dropped_before_logging_is_set_up_is_said_as_json_under_log_format_json(tmp_path, flags, env):
    """Its notice was a plain line before the log was set up, even with `--log-format json`,
    whose stderr must hold nothing but JSON objects."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DROPPED_AS_OBSERVE_LOADS)
    observer = StokerProcess(["observe", "--root", str(tmp_path / "root"), "--port", "0", *flags],
                             tmp_path, env={"PYTHONPATH": f"{hook}:{REPO}", **env})
    try:
        assert observer.wait(60) == 0, observer.stderr()
        said = [json.loads(line) for line in observer.stderr().splitlines()]  # each line an object
        assert [(doc["event"], doc.get("signal")) for doc in said][:1] == [("stop_deferred", "SIGTERM")], said
    finally:
        observer.close()
