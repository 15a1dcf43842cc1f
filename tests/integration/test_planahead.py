"""`executor.local.planahead.PlanAhead`, the parent's handle on a planning child, against real
forked children that write to its pipe what `planning.plan_ahead` writes (the plan first:
EARLY, its size in 4 bytes, the plan; then the answer), in pieces held on a gate: what
`answered` says and when, what `early_plan` and `answer` give in either order, a plan cut
short or 16 MiB long, a child that ends after its plan, the wait for the child's exit, a
cancel, and the slow line (`Slow`) said once by whichever wait reaches its time. The
planning itself is `test_planning.py`'s; the slow line's text, `test_slow_planning.py`'s."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from executor.cli import logsetup
from executor.local import planahead
from executor.local.planahead import EARLY, PlanAhead, Slow
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

PLAN = b"the plan, as marshal data"
ANSWER = b"the answer, as marshal data"
INPUTS = ("job.aurora", None, (), 0, (), "host", "user")  # what it planned for (read by no test here)
GATE = "gate"  # a step: the child waits until the test opens its gate
CLOSE = "close"  # a step: the child closes its end of the pipe (and says so on `told`)
FORK = "fork"  # a step: the child forks a process that holds the pipe until the gate opens


def framed(plan: bytes) -> bytes:
    return EARLY + len(plan).to_bytes(4, "big") + plan


class Child:
    """A forked child that takes `steps` (bytes written to the pipe, GATE, CLOSE) and ends with
    `code`, and the PlanAhead on its pipe."""

    def __init__(self, *steps: bytes | str, code: int = 0, slow: Slow | None = None) -> None:
        read_end, write_end = os.pipe()
        self._gate, gate = os.pipe()[::-1]
        told, self._told = os.pipe()
        pid = os.fork()
        if pid == 0:  # writes, waits and ends; never returns
            try:
                for fd in (read_end, self._gate, told):
                    os.close(fd)
                for step in steps:
                    if step == GATE:
                        os.read(gate, 1)
                    elif step == FORK:
                        if os.fork() == 0:  # as a config's daemon: the pipe inherited
                            os.read(gate, 1)
                            os._exit(0)
                    elif step == CLOSE:
                        os.close(write_end)
                        os.write(self._told, b"x")
                    else:
                        os.write(write_end, step)  # (blocks while the parent has not read)
            finally:
                os._exit(code)
        for fd in (write_end, gate, self._told):
            os.close(fd)
        self.told = told
        self.pid = pid
        try:
            self.ahead = PlanAhead(pid, read_end, INPUTS, slow)
        except BaseException:  # (mutmut's forced failure): the child is still the test's to end
            self._reap()
            for fd in (read_end, self._gate, told):
                os.close(fd)
            raise

    def open_gate(self) -> None:
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1

    def end(self) -> None:
        self.open_gate()
        os.close(self.told)
        try:
            self.ahead.cancel()
        finally:
            if self.ahead.pid > 0:  # the cancel failed: the child is still the test's to end
                self._reap()

    def _reap(self) -> None:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


@pytest.fixture
def child():
    made: list[Child] = []

    def make(*steps: bytes | str, code: int = 0, slow: Slow | None = None) -> Child:
        made.append(Child(*steps, code=code, slow=slow))
        return made[-1]

    yield make
    for one in made:
        one.end()


def at_once(call: Callable[[], Any], child: Child) -> Any:
    """What `call` returns, while the child waits on its gate (it must not wait for the child's
    next step): failed after 10 s, the gate then opened so that it ends."""
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(call()), daemon=True)
    thread.start()
    thread.join(10)
    done = not thread.is_alive()
    child.open_gate()
    thread.join(10)
    assert done, "it waited for the child's next step"
    return got[0]


def exited(code: int) -> Callable[[tuple[bytes, int]], bool]:
    return lambda answer: os.waitstatus_to_exitcode(answer[1]) == code


def test_a_plan_sent_first_is_seen_and_read_while_the_child_plans_on(child):
    planning = child(framed(PLAN), GATE, ANSWER)
    assert wait_for(planning.ahead.answered, 10, message="the plan sent first is seen")
    assert planning.ahead.early_plan() == PLAN
    assert at_once(planning.ahead.early_plan, planning) == PLAN  # read once: the pipe not read again
    data, status = planning.ahead.answer()
    assert (data, os.waitstatus_to_exitcode(status)) == (ANSWER, 0)
    assert planning.ahead.answered() and planning.ahead.pid == -1
    assert planning.ahead.answer() == (data, status) and planning.ahead.early_plan() == PLAN


def test_nothing_written_yet_is_not_answered(child):
    planning = child(GATE, framed(PLAN), ANSWER)
    assert not planning.ahead.answered()
    planning.open_gate()
    assert planning.ahead.answer()[0] == ANSWER


def test_the_answer_read_first_still_gives_the_plan_sent_before_it(child):
    planning = child(framed(PLAN) + ANSWER)
    assert planning.ahead.answer()[0] == ANSWER
    assert planning.ahead.early_plan() == PLAN


@pytest.mark.parametrize("plan_first", [True, False])
def test_a_child_that_ends_right_after_its_plan_leaves_the_plan_and_an_empty_answer(child, plan_first):
    planning = child(framed(PLAN), code=1)
    if plan_first:
        assert planning.ahead.early_plan() == PLAN
    assert exited(1)(planning.ahead.answer()) and planning.ahead.answer()[0] == b""
    assert planning.ahead.early_plan() == PLAN


def test_an_answer_sent_without_a_plan_is_no_plan_seen_at_its_first_bytes(child):
    # (a config that failed to load): early_plan does not wait for the rest of the answer
    planning = child(ANSWER[:8], GATE, ANSWER[8:])
    assert at_once(planning.ahead.early_plan, planning) is None
    assert planning.ahead.answer()[0] == ANSWER and planning.ahead.early_plan() is None


@pytest.mark.parametrize("plan_first", [True, False])
def test_a_plan_cut_short_by_the_child_s_end_is_no_plan(child, plan_first):
    planning = child(EARLY + (100).to_bytes(4, "big") + PLAN, code=1)
    if plan_first:
        assert planning.ahead.early_plan() is None
    assert planning.ahead.answer()[0] == b"" and planning.ahead.early_plan() is None


@pytest.mark.parametrize("plan_first", [True, False])
def test_a_plan_of_16_mib_and_more_comes_whole(child, plan_first):
    # its size's first byte is not 0; the pipe gives it in many reads
    big = bytes(range(256)) * (1 << 16) + b"!"
    planning = child(framed(big) + ANSWER)
    if plan_first:
        assert planning.ahead.early_plan() == big
    assert planning.ahead.answer()[0] == ANSWER and planning.ahead.early_plan() == big


def _waiting_in(thread: threading.Thread, kernel_function: str) -> bool:
    """Whether `thread` sleeps in the kernel in a function whose name holds `kernel_function`
    (its wchan: `do_wait` for a child's exit, `do_sys_poll` for a pipe or the child's end)."""
    return kernel_function in Path(f"/proc/self/task/{thread.native_id}/wchan").read_text()


def test_a_plan_that_comes_in_two_writes_is_waited_for_whole(child):
    # its last byte held on the gate: read once the rest was, not left out
    planning = child(framed(PLAN)[:-1], GATE, PLAN[-1:] + ANSWER)
    got: list[bytes | None] = []
    reading = threading.Thread(target=lambda: got.append(planning.ahead.early_plan()), daemon=True)
    reading.start()
    try:
        wait_for(lambda: not reading.is_alive() or _waiting_in(reading, "poll"), 10,
                 message="the plan's last byte is waited for")
    finally:
        planning.open_gate()
        reading.join(10)
    assert got == [PLAN] and planning.ahead.answer()[0] == ANSWER


def test_the_answer_waits_for_the_child_s_exit_after_its_pipe_closed(child):
    planning = child(ANSWER, CLOSE, GATE, code=3)
    got: list[tuple[bytes, int]] = []
    answering = threading.Thread(target=lambda: got.append(planning.ahead.answer()), daemon=True)
    answering.start()
    try:
        assert os.read(planning.told, 1) == b"x"  # the pipe closed, the child not ended
        wait_for(lambda: not answering.is_alive() or _waiting_in(answering, "do_wait"), 10,
                 message="the answer waits for the child")
    finally:
        planning.open_gate()
        answering.join(10)
    assert got and got[0][0] == ANSWER and exited(3)(got[0])


@pytest.mark.parametrize("sent", [(), (framed(PLAN), ANSWER)], ids=["nothing", "plan-and-answer"])
def test_a_process_the_child_forked_holding_the_pipe_is_not_waited_for(child, sent):
    """Was: read to the pipe's end, which that process (a daemon the config's code started)
    held, for ever."""
    planning = child(FORK, *sent, code=3)
    answer = at_once(planning.ahead.answer, planning)  # (the gate open since: that process gone)
    assert answer[0] == (ANSWER if sent else b"") and exited(3)(answer)
    assert planning.ahead.early_plan() == (PLAN if sent else None)


def test_the_plan_sent_first_is_not_waited_for_past_a_child_that_forked_and_ended(child):
    planning = child(FORK, code=3)
    assert at_once(planning.ahead.early_plan, planning) is None


def test_a_cancel_kills_and_reaps_the_child_and_leaves_it_answered_without_a_plan(child):
    planning = child(GATE)
    planning.ahead.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(planning.pid, os.WNOHANG)
    assert planning.ahead.pid == -1 and planning.ahead.answered() and planning.ahead.early_plan() is None
    planning.ahead.cancel()  # nothing more


def test_a_cancel_after_another_wait_reaped_the_child_is_no_error(child):
    planning = child(code=0)
    os.waitpid(planning.pid, 0)
    planning.ahead.cancel()
    assert planning.ahead.pid == -1 and planning.ahead.answered()


@pytest.fixture
def slow_lines(monkeypatch):
    """The slow lines said (`Slow`, its time lowered to 50 ms), each opening `planning`'s gate
    (the test's child, set on the list): a wait it never ends is opened after 10 s instead."""
    said: list[tuple[str, str]] = []
    monkeypatch.setattr(planahead, "SLOW_SECS", 0.05)

    def say(kind: str, message: str) -> None:
        said.append((kind, message))
        said_to.open_gate()

    monkeypatch.setattr(logsetup, "say", say)
    said_to: Any = None

    def made_for(planning: Child) -> list[tuple[str, str]]:
        nonlocal said_to
        said_to = planning
        timer = threading.Timer(10, planning.open_gate)
        timer.daemon = True
        timer.start()
        return said

    return made_for


SLOW = ("warning", "late after 0.05 s; planning is stopped at 60 s (Ctrl-C stops it now)")


@pytest.mark.parametrize("steps", [(GATE, framed(PLAN), ANSWER), (framed(PLAN), GATE, ANSWER)],
                         ids=["waiting for the plan", "waiting for the answer after it"])
def test_a_child_that_does_not_answer_in_time_has_its_line_said_once(child, slow_lines, steps):
    planning = child(*steps, slow=Slow("late", "planning", 60))
    said = slow_lines(planning)
    assert planning.ahead.early_plan() == PLAN
    data, status = planning.ahead.answer()
    assert (data, os.waitstatus_to_exitcode(status)) == (ANSWER, 0)
    assert said == [SLOW]


def test_a_child_that_answers_in_time_has_nothing_said(child, slow_lines, monkeypatch):
    monkeypatch.setattr(planahead, "SLOW_SECS", 30.0)
    planning = child(framed(PLAN), ANSWER, slow=Slow("late", "planning", 60))
    said = slow_lines(planning)
    assert planning.ahead.early_plan() == PLAN and planning.ahead.answer()[0] == ANSWER
    assert said == []
