"""`stoker run`'s supervisor, once running, has Python's cyclic collector on, with Python's
thresholds, and the config's code (in the planning child) runs with it on: an idle
supervisor's garbage cycles are collected, and a config may rely on its own being collected
(files they hold). Issue 14's gcstart took the collector off for the start (branch
`gcstart-off`, docs/benchmarks.md "### gcstart"); whatever start-up change does so again must
put it back. Read in a running supervisor by a thread of its own that a FIFO wakes, started
as the supervisor spawns its first run (an audit hook: a thread there before the plan would
have the config planned in the supervisor, `warnfilters.alone`)."""
from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest

from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)

# the supervisor's own state, written to the answer file once the request FIFO is opened
PROBE = r"""
import gc, json, os, sys, threading

def probe(request, answer):
    while True:
        with open(request) as fifo:
            fifo.read()
        state = {"enabled": gc.isenabled(), "thresholds": gc.get_threshold()}
        with open(answer + ".part", "w") as out:
            json.dump(state, out)
        os.rename(answer + ".part", answer)

def at_the_first_run(event, _args, started=[], paths=sys.argv[1:3]):
    if event in ("os.posix_spawn", "subprocess.Popen") and not started:
        started.append(threading.Thread(target=probe, args=paths, daemon=True))
        started[0].start()

sys.addaudithook(at_the_first_run)
del sys.argv[1:3]
from executor.cli.start import run
sys.exit(run())
"""

CONFIG = """
import gc
collector = 'on' if gc.isenabled() else 'off'
hello = Process(name='hello', cmdline='echo %s > {out} && sleep 300' % collector)
jobs = [Job(cluster='local', role='me', environment='test', name='collected',
            task=Task(processes=[hello], resources=Resources(cpu=0.1, ram=16*MB, disk=1*MB)))]
"""


def _wake(request: str) -> bool:
    """Whether the probe's FIFO could be written (its reader is there: ENXIO until then)."""
    try:
        fd = os.open(request, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.write(fd, b"x")
    os.close(fd)
    return True


def _ask(request: str, answer: Path, proc: StokerProcess) -> dict:
    """The supervisor's collector, as its probe reads it when woken."""
    wait_for(lambda: _wake(request) or proc.proc.poll() is not None, 30, message="the probe's FIFO")
    wait_for(lambda: answer.exists() or proc.proc.poll() is not None, 30, message="the probe's answer")
    assert proc.proc.poll() is None, proc.stderr()
    state = json.loads(answer.read_text())
    answer.unlink()
    return state


def test_a_running_supervisor_has_the_collector_on_as_python_has_it(tmp_path):
    request, answer, seen = tmp_path / "request.fifo", tmp_path / "answer.json", tmp_path / "config-collector"
    os.mkfifo(request, 0o600)
    config, sandbox = tmp_path / "job.aurora", tmp_path / "sb"
    config.write_text(CONFIG.format(out=seen))
    proc = StokerProcess([str(request), str(answer), "run", str(config), "--sandbox", str(sandbox),
                          "--root", str(tmp_path / "root")], tmp_path, entry=("-c", PROBE))
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
        wait_for(lambda: seen.exists() and seen.read_text().strip(), 30, message="the task's line")
        assert seen.read_text().strip() == "on"  # the config's code ran with the collector on
        # once the first step is over (its end may come just after the RUNNING line): asked again until then
        state = wait_for(lambda: (asked := _ask(str(request), answer, proc))["enabled"] and asked, 30,
                         interval_secs=0.05, message="the collector on")
        assert state["enabled"], proc.stderr()  # not left off after the start
        assert tuple(state["thresholds"]) == gc.get_threshold()  # Python's own
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))
