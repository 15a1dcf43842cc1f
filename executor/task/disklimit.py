"""The disk-limit check as a state machine: samples of the sandbox's usage in, the verdict and
the time of the next sample out (Thermos' `ResourceManager`, docs/aurora.md §5).

A task whose sandbox holds more than its `Resources.disk` is failed with Aurora's message
(`exceeded_reason`): `Disk limit exceeded.  Reserved N bytes vs used M bytes.` (two spaces
after the first period; N and M whole bytes). More than, not as much as: a task exactly at
its reservation runs on.

    IDLE --start(now)--> WAITING (next sample due now: the first one at once, as Thermos)
    WAITING --take(now), due--> SAMPLING
    SAMPLING --sampled(used <= limit, or no measure)--> WAITING (due `interval_secs` after
                                                          the sample ENDED)
    SAMPLING --sampled(used > limit)--> EXCEEDED (the reason, once; no more samples)
    any --stop--> STOPPED (the task stops: its outcome is decided elsewhere)

A sample is never started while one runs (Thermos: the collector starts no thread while
one is collecting), and a slow one pushes the next one back instead of causing a burst: the
next is due `interval_secs` after it ended, or 9 times as long as it took if that is later,
so that the walks of a huge sandbox (millions of files, a minute each) take a tenth of the
time at most. How long a walk took is the sampler's measure (`diskwatch.WalkTime`), which
leaves out a pause of the supervisor during it.
A sample that could not be made (its thread could not start) decides nothing; the next
one is due an interval later.

`DiskSampled` (`executor/events.py`) is the fact the sampler (`executor/task/diskwatch.py`)
posts to the task's owner; `DiskCheck` is how a front-end asks for the check (its interval, and the top-level
names of the sandbox that are Stoker's or the agent's and not the task's).

Pure: no I/O, threads, clocks or logging; `now` is the caller's monotonic time.
"""
from __future__ import annotations

import attrs

from config.words import quoted
from executor.events import DiskSampled

DEFAULT_INTERVAL_SECS = 60.0  # Thermos' DISK_COLLECTION_INTERVAL
BUSY_SHARE = 0.1  # of the time, spent walking at most
ATTEMPT_LOGS_PREFIX = ".logs.attempt-"  # `stoker run`'s kept logs of earlier attempts


def exceeded_reason(limit_bytes: int, used_bytes: int) -> str:
    """Aurora's message, to the space."""
    return f"Disk limit exceeded.  Reserved {limit_bytes} bytes vs used {used_bytes} bytes."


@attrs.frozen(slots=True)
class DiskCheck:
    """A front-end's request for the check: sample every `interval_secs`, and leave out the
    sandbox's top-level entries named in `skipped` and, with `attempt_logs`, `stoker run`'s
    `.logs.attempt-N` (the logs of earlier attempts, which Stoker keeps and prunes), each
    only when `owner` owns it (the supervisor's uid; None: whoever does): a root supervisor's
    task runs as its role, whose processes may replace any of them with their own."""

    interval_secs: float = DEFAULT_INTERVAL_SECS
    skipped: frozenset[str] = frozenset()
    attempt_logs: bool = False
    owner: int | None = None

    def counts(self, name: str) -> bool:
        """Whether the sandbox's top-level entry `name` is the task's."""
        if name in self.skipped:
            return False
        return not (self.attempt_logs and name.startswith(ATTEMPT_LOGS_PREFIX))


class DiskLimit:
    """See the module docstring. `limit_bytes`: the task's `Resources.disk`."""

    def __init__(self, limit_bytes: int, interval_secs: float) -> None:
        if not interval_secs > 0:
            raise ValueError(f"the disk check's interval must be more than 0 s, not {quoted(interval_secs)}")
        self.limit_bytes = limit_bytes
        self.interval_secs = interval_secs
        self.last: DiskSampled | None = None  # the last sample made
        self.sampling = False
        self._next_at: float | None = None  # None: not started, sampling, or over
        self._over = False  # stopped, or exceeded

    def start(self, now: float) -> None:
        """The task's processes started: the first sample is due now."""
        if not self._over and self._next_at is None and not self.sampling:
            self._next_at = now

    def take(self, now: float) -> bool:
        """True: start a sample now (and the check counts it as under way)."""
        if self._next_at is None or now < self._next_at:  # None while one runs, or over
            return False
        self.sampling = True
        self._next_at = None
        return True

    def sampled(self, sample: DiskSampled, now: float) -> str | None:
        """A sample ended at `now`: the reason to fail the task, once, when the sandbox holds
        more than the limit; else None, and the next sample is due an interval later."""
        self.sampling = False
        if self._over:
            return None
        self._next_at = now + max(self.interval_secs, sample.secs * (1 / BUSY_SHARE - 1))
        if sample.used_bytes is None:
            return None
        self.last = sample
        if sample.used_bytes <= self.limit_bytes:
            return None
        self._over = True
        self._next_at = None
        return exceeded_reason(self.limit_bytes, sample.used_bytes)

    def deadline_at(self) -> float | None:
        """When `take` will next say yes (None: not before some other event)."""
        return self._next_at

    def stop(self) -> None:
        """The task stops: no sample starts after this, and a result still coming decides
        nothing."""
        self._over = True
        self._next_at = None
