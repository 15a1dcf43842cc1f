"""The OOM killer's explanation (`executor/procs/oomkill.py`) is loaded late, on the reaper
thread, when a run ends by a SIGKILL nobody in the task sent: a module that cannot be
loaded then (an upgrade in place replaced it with one that does not fit) costs the run's
end its OOM wording, never the end itself. Real runs, a counter on a file the test grows."""
from __future__ import annotations

import sys
import threading

import pytest

import executor.procs
from executor.procs import oomcount, oomkill
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def counter_on(directory) -> oomcount.OomCounter:  # type: ignore[no-untyped-def]
    (directory / "memory.events").write_text("oom 0\noom_kill 0\n")
    return oomcount.OomCounter(str(directory), "/t", v2=True, top=str(directory))


def test_a_sigkilled_run_whose_explanation_cannot_be_loaded_still_ends(harness, tmp_path, monkeypatch, caplog):
    events = tmp_path / "memcg"
    events.mkdir()
    harness.sup._post_exit.oom = counter_on(events)
    monkeypatch.delattr(executor.procs, "oomkill", raising=False)
    monkeypatch.setitem(sys.modules, "executor.procs.oomkill", None)  # import fails
    harness.spawn("greedy", f"printf 'oom 1\\noom_kill 1\\n' > {events}/memory.events; kill -9 $$")
    ended = harness.next_exit()
    assert ended.process == "greedy" and ended.status.signal == 9
    assert ended.status.describe() == "killed by SIGKILL"
    assert "oom_kill_unexplained" in caplog.text and "ModuleNotFoundError" in caplog.text
    assert 'reason="the run\'s end reads without the OOM killer\'s part"' in caplog.text, caplog.text
    assert any(r.name == "executor.procs.oomcount" for r in caplog.records if "oom_kill_unexplained" in r.getMessage())


def test_a_sigkilled_run_during_which_the_count_grew_is_named_the_oom_killer_s(harness, tmp_path):
    events = tmp_path / "memcg"
    events.mkdir()
    harness.sup._post_exit.oom = counter_on(events)
    harness.spawn("greedy", f"printf 'oom 1\\noom_kill 1\\n' > {events}/memory.events; kill -9 $$")
    assert harness.next_exit().status.describe().startswith("killed by the kernel's OOM killer (memory cgroup /t")


class HeldAtTheLook(set):
    """A counter's claimed counts whose first look (`in`) is answered only when the test
    says `go`: the looker holds between what it saw and its claim."""

    def __init__(self) -> None:
        super().__init__()
        self.looked, self.go = threading.Event(), threading.Event()

    def __contains__(self, kill: object) -> bool:
        seen = super().__contains__(kill)
        if not self.looked.is_set():
            self.looked.set()
            self.go.wait(10)
        return seen


class Watched:
    """A counter's claim lock, telling when a second thread asks for it."""

    def __init__(self, lock) -> None:  # type: ignore[no-untyped-def]
        self.lock, self.asked, self.second_waits = lock, 0, threading.Event()

    def __enter__(self) -> bool:
        self.asked += 1
        if self.asked == 2:
            self.second_waits.set()
        return self.lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.lock.__exit__(*exc)


def test_one_oom_kill_names_one_of_two_runs_whose_ends_are_told_at_once(tmp_path):
    """Two runs SIGKILLed together, one by the OOM killer, told on two threads (the reaper,
    and the owner adopting an early run that had ended): the first holds between its look
    at the claimed kills and its claim while the second tells its end; only one is named."""
    counter = counter_on(tmp_path)
    (tmp_path / "memory.events").write_text("oom 1\noom_kill 1\n")
    counter.claimed = HeldAtTheLook()
    counter.claiming = Watched(counter.claiming)
    told: list[str | None] = []
    first = threading.Thread(target=lambda: told.append(oomkill.explain(counter, 0)))
    first.start()
    assert counter.claimed.looked.wait(10), "the first end never looked at the claimed kills"
    second = threading.Thread(target=lambda: told.append(oomkill.explain(counter, 0)))
    second.start()
    wait_for(lambda: not second.is_alive() or counter.claiming.second_waits.is_set(), 10,
             message="the second end told, or waiting for the first's claim")
    counter.claimed.go.set()
    first.join(10)
    second.join(10)
    assert len(told) == 2
    assert sum(words is not None for words in told) == 1, told
