"""Fakes for the TaskOwner's ports (`executor/task/ports.py`), for the owner's tests; and
`HeardReporter`, the reporter that keeps what it heard, for any test that wraps or drives one.

Each fake records what the owner asked of it into one shared `Effects` log, stamped with
the fake clock's time relative to the start, so a test can compare the whole story
("0 spawn web[0]", "1 lifecycle start", "6 SIGTERM web[0]") with one table row. Nothing
here starts a process, a thread or a socket; exits, health results and the end of the
lifecycle endpoints are events the test posts itself.
"""
from __future__ import annotations

import signal
from collections.abc import Callable

from config.spec import ProcessSpec
from config.words import number
from executor.events import (
    DiskSampled,
    HealthTransition,
    KillStep,
    PhaseTransition,
    ProcessTransition,
    TaskTransition,
)
from executor.procs.spawn import SpawnError
from executor.task.disklimit import DiskLimit
from healthcheck.checkers import CommandResult
from healthcheck.policy import Attempt
from tests.support.fake_clock import FakeClock


class Effects:
    """What the owner did, in order: "TIME what" with TIME in seconds since `origin`."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._origin = clock.now
        self.lines: list[str] = []

    def note(self, what: str) -> None:
        self.lines.append(f"{number(self._clock.now - self._origin)} {what}")


class FakeProcs:
    """A ProcessPort: spawns get pids 101, 102, ...; a name in `fail_spawns` cannot start."""

    def __init__(self, effects: Effects, fail_spawns: tuple[str, ...] = ()) -> None:
        self._effects = effects
        self._fail = fail_spawns
        self._next_pid = 100
        self.started = self.closed = False
        self.marker = "fake-marker"
        self.containment = "fake processes"
        self.run_uid = 1000  # the user its processes run as
        self.cgroup: str | None = None  # no cgroup of its own
        self.idles = 0  # how often the owner said it had nothing to do
        self.stops_begun: list[int] = []  # each time the owner said the stop began: the transitions reported by then
        self.transitions_reported: Callable[[], int] = lambda: 0  # (the rig points it at its reporter)
        # each stop_commands: its within_secs, and what the owner had done by then
        self.commands_stopped: list[tuple[float, list[str]]] = []
        self.daemons_alive = False  # daemons the runs left, as a test sets them
        self.readied: list[tuple[str, int]] = []  # the runs the owner had readied ahead
        self.readied_after: list[str] = []  # what the owner had done when it readied them

    def start(self) -> None:
        self.started = True

    def ready_ahead(self, runs: list[tuple[ProcessSpec, int]]) -> None:
        self.readied += [(spec.name, run) for spec, run in runs]
        self.readied_after = list(self._effects.lines)

    def spawn_many(self, runs: list[tuple[ProcessSpec, int]]) -> list[int | SpawnError]:
        results: list[int | SpawnError] = []
        for spec, run in runs:
            if spec.name in self._fail:
                self._effects.note(f"spawn {spec.name}[{run}] failed")
                results.append(SpawnError("cannot start /bin/bash: Resource temporarily unavailable (EAGAIN)"))
                continue
            self._next_pid += 1
            self._effects.note(f"spawn {spec.name}[{run}]")
            results.append(self._next_pid)
        return results

    def signal_runs(self, runs: list[tuple[str, int]], sig: int) -> int:
        for process, run in runs:
            self._effects.note(f"{signal.Signals(sig).name} {process}[{run}]")
        return len(runs)

    def daemons(self) -> bool:
        return self.daemons_alive

    def signal_daemons(self, sig: int) -> int:
        self._effects.note(f"{signal.Signals(sig).name} daemons")
        return 1

    def idle(self) -> float | None:
        self.idles += 1
        return None

    watchdog_pid: int | None = None

    def held(self) -> dict[int, int]:
        return {}

    left = ""  # what of the task lives at its end, as a test sets it (`left_running`)

    def left_running(self) -> str:
        return self.left

    def run_command(self, command: str, timeout_secs: float) -> CommandResult:
        raise AssertionError("the owner never runs commands itself")

    def stop_commands(self, within_secs: float) -> bool:
        self.commands_stopped.append((within_secs, list(self._effects.lines)))
        return True

    def stop_begun(self) -> None:
        self.stops_begun.append(self.transitions_reported())

    def close(self) -> None:
        self.closed = True
        self._effects.note("procs close")


class FakeCheckpoint:
    """A CheckpointSink keeping the JSON objects it was given, and how many writes."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.writes = 0
        self.closed = self.closed_ended = False  # closed, and told the task's end is written
        self.beside: dict[str, bytes] = {}  # the files kept beside it, as last replaced

    def append_many(self, records) -> None:
        self.writes += 1
        self.records.extend(dict(r) for r in records)

    def replace_beside(self, name: str, data: bytes) -> None:
        self.beside[name] = data

    def close(self, ended: bool = False) -> None:
        self.closed, self.closed_ended = True, ended


class HeardReporter:
    """A Reporter that keeps what it heard, transitions and updates in one list, in order."""

    def __init__(self) -> None:
        self.heard: list[object] = []

    def on_transition(self, t: object) -> None:
        self.heard.append(t)

    def on_update(self, u: object) -> None:
        self.heard.append(u)


class RecordingReporter:
    """The owner's Reporter: every transition and update, the updates also as effects."""

    def __init__(self, effects: Effects) -> None:
        self._effects = effects
        self.transitions: list = []
        self.updates: list = []

    def on_transition(self, t) -> None:
        assert isinstance(t, ProcessTransition | PhaseTransition | TaskTransition | HealthTransition
                          | KillStep)
        self.transitions.append(t)

    def on_update(self, u) -> None:
        self.updates.append(u)
        self._effects.note(f"update {u.state.value}")


class FakeChecker:
    def describe(self) -> str:
        return "fake check"

    def check(self) -> Attempt:
        raise AssertionError("the fake health loop never checks")


class FakeHealthLoop:
    def __init__(self, effects: Effects) -> None:
        self._effects = effects
        self.stopping = False
        effects.note("health start")

    def stop_async(self) -> None:
        if not self.stopping:
            self._effects.note("health stop")
        self.stopping = True

    def stop(self, timeout_secs: float = 2.0) -> bool:
        self.stop_async()
        return True


class FakeLifecycle:
    def __init__(self, effects: Effects, within_secs: float | None) -> None:
        self._effects = effects
        self.over = False
        bound = "" if within_secs is None else f" (within {number(within_secs)} s)"
        effects.note(f"lifecycle start{bound}")

    def regular_processes_gone(self) -> None:
        if not self.over:
            self._effects.note("lifecycle: regular processes gone")
        self.over = True

    def cancel(self) -> None:
        if not self.over:
            self._effects.note("lifecycle cancel")
        self.over = True


class FakeDisk:
    """The DiskChecks port over the real pure check (`limit_bytes`, a sample a minute): a
    sample "starts" as an effect; its result is an event the test posts."""

    def __init__(self, clock: FakeClock, effects: Effects, limit_bytes: int) -> None:
        self._clock, self._effects = clock, effects
        self.limit = DiskLimit(limit_bytes, 60.0)

    def start(self) -> None:
        self.limit.start(self._clock.now)
        self.tick()

    def tick(self) -> None:
        if self.limit.take(self._clock.now):
            self._effects.note("disk sample")

    def sampled(self, sample: DiskSampled) -> str | None:
        return self.limit.sampled(sample, self._clock.now)

    def deadline_at(self) -> float | None:
        return self.limit.deadline_at()

    def stop(self) -> None:
        self.limit.stop()
