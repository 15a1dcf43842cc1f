"""`stoker run`'s attempt loop in process (`executor/local/run.py`), where a subprocess
cannot place an event exactly: a stop that lands as the next attempt begins."""
from __future__ import annotations

import io
import os

import pytest

from config.registry import RegistrySettings
from config.settings import RunSettings
from executor.local import run as local_run

pytestmark = pytest.mark.timeout(30)

SERVICE = """
jobs = [Service(cluster='c', role='r', environment='test', name='quick',
                task=Task(processes=[Process(name='p', cmdline='exit 0')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
"""


def test_a_stop_as_the_next_attempt_begins_still_ends_with_its_line(tmp_path, monkeypatch):
    """A zero-delay restart's wait is over, and the stop lands before the next attempt's
    supervisor exists: that attempt never starts, and the run ends with the same line and
    status as a stop in the delay (it ended with no line at all)."""
    config = tmp_path / "quick.aurora"
    config.write_text(SERVICE)
    out = io.StringIO()
    run = local_run.LocalRun(
        RunSettings(config=str(config), sandbox=str(tmp_path / "sandbox"), restart_backoff_secs=0.0),
        out=out, environ=dict(os.environ, STOKER_PLAN_CACHE="off"),
        registry=RegistrySettings(registry_root=str(tmp_path / "registry")))
    real_owner_for = local_run.owner_for
    made = []

    def owner_for(*args, **kwargs):
        made.append(None)
        if len(made) == 2:  # the second attempt: the stop comes before its owner is known
            run.stop("stopped by the test")
        return real_owner_for(*args, **kwargs)

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    assert run.run() == 0
    last = out.getvalue().rstrip("\n").splitlines()[-1]
    assert last.endswith("stopped by `stoker kill` during the restart delay (exit 0)"), out.getvalue()
    assert len(made) == 2


def test_a_failing_service_keeps_the_first_and_the_last_attempts_logs(tmp_path, monkeypatch):
    """--keep-attempts: each attempt's logs were kept for ever (1,440 a day at the default
    back-off); now the first attempt's and the last N earlier ones'."""
    config = tmp_path / "fails.aurora"
    config.write_text(SERVICE.replace("cmdline='exit 0'", "cmdline='echo attempt; exit 1'"))
    sandbox = tmp_path / "sandbox"
    run = local_run.LocalRun(
        RunSettings(config=str(config), sandbox=str(sandbox), restart_backoff_secs=0.0, keep_attempts=2),
        out=io.StringIO(), environ=dict(os.environ, STOKER_PLAN_CACHE="off"),
        registry=RegistrySettings(registry_root=str(tmp_path / "registry")))
    real_owner_for = local_run.owner_for
    made = []

    def owner_for(*args, **kwargs):
        made.append(None)
        if len(made) == 7:  # six attempts ended; the seventh is stopped before it starts
            run.stop("stopped by the test")
        return real_owner_for(*args, **kwargs)

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    assert run.run() == 1
    archived = sorted(name for name in os.listdir(sandbox) if name.startswith(".logs"))
    assert archived == [".logs.attempt-0", ".logs.attempt-4", ".logs.attempt-5"]
    assert (sandbox / ".logs.attempt-5/p/0/stdout").read_text() == "attempt\n"
