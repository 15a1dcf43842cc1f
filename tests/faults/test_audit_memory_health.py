"""The health loop when memory cannot be had (a MemoryError where an allocation is refused,
made in a child Python, `python_child`): a MemoryError in it outside its check (the snooze
file's look, the failed attempt's words) ended its thread, and a task waiting for its first
passed check stayed STARTING for good. That attempt fails, as one whose check raised, and
the loop goes on; so it does after one as it hands a result on. A snoozed attempt stays
snoozed whatever its words could not be made.

The limits and the owner's MemoryError: test_audit_memory.py; the supervisor's threads:
test_audit_memory_supervisor.py.
"""
from __future__ import annotations

import pytest

from tests.support.limits import python_child
from tests.support.stoker_proc import REPO

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


# The health loop, whose look for the snooze file cannot be made once (a MemoryError, and
# none left to word the failed attempt): before, the thread ended, and a task waiting for
# its first passed check stayed STARTING for good. The attempt fails (as one whose check
# raised), and the next one runs.
# The health loop tests' child: a check that always passes, the loop's module, a sandbox
# (argv[1]) and this checkout (argv[2]).
HEALTH_LOOP_PREAMBLE = r"""
import sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from executor.logs import start_thread
from healthcheck import loop as loopmod
from healthcheck.policy import Attempt

class Passing:
    def check(self):
        return Attempt.passed()
    def describe(self):
        return "passing"
"""
HEALTH_CHILD = HEALTH_LOOP_PREAMBLE + r"""
results, latencies, two = [], [], threading.Event()
def on_result(attempt, latency):
    results.append(attempt.reason or "passed")
    latencies.append(latency)
    if len(results) == 2:
        two.set()
loop = loopmod.HealthLoop(Passing(), 0.05, Path(sys.argv[1]) / ".healthchecksnooze", on_result,
                          start_thread=start_thread)
real_snoozed, refused = loop._is_snoozed, []
def snoozed():
    if not refused:
        refused.append(True)
        raise MemoryError
    return real_snoozed()
loop._is_snoozed = snoozed
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", latencies[0], flush=True)
loop.stop()
"""


def test_a_memory_error_in_the_health_loop_fails_that_attempt_and_the_loop_goes_on(
        tmp_path) -> None:
    done = python_child(HEALTH_CHILD, str(tmp_path), str(REPO))
    assert done.stdout.strip() == ("['internal health check error: MemoryError (no memory could "
                                   "be had)', 'passed'] 0.0"), (done.stdout, done.stderr[-2000:])  # (no time measured)


# The same loop while `.healthchecksnooze` is there: its look for the file cannot be made once,
# or the line saying the checks are snoozed (argv[3]). Before, that attempt failed as above,
# though the check was not run: a snoozed attempt counts as a pass (docs/aurora.md §1).
HEALTH_SNOOZED_CHILD = HEALTH_LOOP_PREAMBLE + r"""
(Path(sys.argv[1]) / ".healthchecksnooze").write_bytes(b"")
results, two, refused = [], threading.Event(), []
def on_result(attempt, latency):
    results.append(attempt.outcome.value)
    if len(results) == 2:
        two.set()
loop = loopmod.HealthLoop(Passing(), 0.05, Path(sys.argv[1]) / ".healthchecksnooze", on_result,
                          start_thread=start_thread)
def refusing(real):
    def once(*args, **kwargs):
        if not refused:
            refused.append(True)
            raise MemoryError
        return real(*args, **kwargs)
    return once
if sys.argv[3] == "look":
    loop._is_snoozed = refusing(loop._is_snoozed)
else:
    loopmod.log_event = refusing(loopmod.log_event)
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", refused, flush=True)
loop.stop()
"""


@pytest.mark.parametrize("refused", ["look", "line"])
def test_a_memory_error_in_a_snoozed_attempt_is_a_snoozed_attempt_not_a_failure(tmp_path, refused) -> None:
    done = python_child(HEALTH_SNOOZED_CHILD, str(tmp_path), str(REPO), refused)
    assert done.stdout.strip() == "['snoozed', 'snoozed'] [True]", (done.stdout, done.stderr[-2000:])


# Whether an attempt a MemoryError cut short is snoozed is this attempt's look, made before its
# check (docs/aurora.md §1): "stale", the file removed after a snoozed attempt and the next
# attempt's look (and a look again) finding no memory; "mid-check", the file put there while a
# check that was run failed, its failure's words finding no memory.
HEALTH_LOOK_CHILD = HEALTH_LOOP_PREAMBLE + r"""
snooze = Path(sys.argv[1]) / ".healthchecksnooze"
results, two, armed = [], threading.Event(), []
class Refusing:
    def __fspath__(self):
        if armed:
            raise MemoryError
        return str(snooze)
class SnoozedMeanwhile:
    def check(self):
        snooze.write_bytes(b"")
        raise MemoryError
    def describe(self):
        return "snoozed meanwhile"
def on_result(attempt, latency):
    results.append(attempt.outcome.value)
    armed[:] = [True] if sys.argv[3] == "stale" and len(results) == 1 else []
    if len(results) == 1 and sys.argv[3] == "stale":
        snooze.unlink()
    if len(results) == 2:
        two.set()
if sys.argv[3] == "stale":
    snooze.write_bytes(b"")
    loop = loopmod.HealthLoop(Passing(), 0.05, snooze, on_result, start_thread=start_thread)
    loop._snooze_path = Refusing()
else:
    def refused(*args, **kwargs):
        raise MemoryError
    loopmod.log_event = refused
    loop = loopmod.HealthLoop(SnoozedMeanwhile(), 0.05, snooze, on_result, start_thread=start_thread)
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", flush=True)
loop.stop()
"""


@pytest.mark.parametrize("case, outcomes", [("stale", "['snoozed', 'failed']"), ("mid-check", "['failed', 'snoozed']")])
def test_a_memory_error_is_a_snoozed_attempt_only_when_its_own_look_found_the_snooze_file(
        tmp_path, case, outcomes) -> None:
    """Was: the file looked for again after the MemoryError, and the last attempt's look kept
    when that too found no memory: a check that was run and failed passed as snoozed, and once
    snoozed, attempts whose look finds no memory passed for good after the file was removed."""
    done = python_child(HEALTH_LOOK_CHILD, str(tmp_path), str(REPO), case)
    assert done.stdout.strip() == outcomes, (done.stdout, done.stderr[-2000:])


# The same loop, whose result cannot be handed on (a MemoryError in the callback), nor its
# error line: before, that MemoryError ended the thread; that result is dropped, and the
# next attempt's is delivered.
HEALTH_DELIVERY_CHILD = HEALTH_LOOP_PREAMBLE + r"""
results, two, refused = [], threading.Event(), []
def on_result(attempt, latency):
    if not refused:
        refused.append("the result")
        raise MemoryError
    results.append(attempt.reason or "passed")
    if len(results) == 2:
        two.set()
real_log = loopmod.log_event
def log_event(*args, **kwargs):
    if len(refused) == 1:
        refused.append("its line")
        raise MemoryError
    return real_log(*args, **kwargs)
loopmod.log_event = log_event
loop = loopmod.HealthLoop(Passing(), 0.05, Path(sys.argv[1]) / ".healthchecksnooze", on_result,
                          start_thread=start_thread)
loop.start()
print(results[:2] if two.wait(20) else f"stopped after {results}", refused, flush=True)
loop.stop()
"""


def test_a_memory_error_as_the_health_loop_hands_a_result_on_and_logs_it_does_not_end_it(
        tmp_path) -> None:
    done = python_child(HEALTH_DELIVERY_CHILD, str(tmp_path), str(REPO))
    assert done.stdout.strip() == "['passed', 'passed'] ['the result', 'its line']", (
        done.stdout, done.stderr[-2000:])
