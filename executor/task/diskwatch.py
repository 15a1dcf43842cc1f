"""The owner's side of the disk-limit check: when to sample, the sampling thread, the log lines.

Owns, for one task whose `Resources.disk` is set and whose front-end asked for the check
(`DiskCheck`: always under `stoker executor`, with `--disk-limit on` under `stoker run`):
the schedule and verdict (`executor/task/disklimit.py`'s pure `DiskLimit`), one short-lived
thread per sample that walks the sandbox (`executor/task/diskusage.py`, loaded with the
first sample) at the supervisor's own CPU priority and posts the result to the owner's queue as
`DiskSampled`, one DEBUG line per sample with the time it took, and one ERROR line
(`disk_limit_exceeded`) when the sandbox holds more than the limit. The owner then fails the task with Aurora's message, through the
same staged kill as a failed health check; a kill already under way wins.

Called only from the owner's thread: `start` as the processes start, `tick` at every step
(starts the sample that is due), `sampled` with each result, `deadline_at` for the owner's
next wake-up, `stop` once the task stops: a walk under way is told to stop, and ends at the
next directory it would open, posting nothing (a long walk does not outlive its task, nor
run beside the next attempt's under `stoker run`). Nothing ever waits for the sampling
thread (a daemon, never joined): a walk held in a system call cannot hold up the task's
stop nor the supervisor's exit. A task without the check has no DiskWatch and
nothing here is loaded: no thread, no timer, no wake-up.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from executor.events import DiskSampled
from executor.logs import log_event, start_thread
from executor.task.disklimit import DiskCheck, DiskLimit

logger = logging.getLogger(__name__)

OWN_ENTRIES = frozenset({".stoker"})  # Stoker's checkpoint and files beside it
# The most one step of a walk (ENTRIES_PER_ASK entries of a directory's scan, or the open of
# the next directory) counts towards the walk's time, which sets the next sample's delay (9
# times it): a longer gap between two of its questions is this process not running (SIGSTOP,
# a debugger, its cgroup frozen, a VM paused), not the walk's cost (was: a walk an hour's
# pause cut pushed the next sample 9 hours back, the disk limit unchecked meanwhile). The
# steps are that small so that a slow walk is counted whole however its files are laid out
# (one directory of a million on a slow disk too); only a file system taking more than 5 s
# for 64 stat calls is counted short.
STEP_SECS_COUNTED = 5.0
AGENT_ENTRIES = frozenset({"stdout", "stderr"})  # the agent's capture of the executor's output


def disk_check(sandbox: Path, interval_secs: float, *, under_agent: bool) -> DiskCheck:
    """The check a front-end asks for: what it leaves out of the sandbox is Stoker's
    (`.stoker`, and the entry that holds its running code, when it is in the sandbox: the
    fetched `stoker.pyz`, the `.shiv` it unpacked into) and, under a Mesos agent, the
    agent's `stdout` and `stderr` (the executor's own output), or else `stoker run`'s logs of
    earlier attempts (`.logs.attempt-N`); each only while this process's user owns it (the
    agent gives its files to the executor's user): one the role's processes made counts."""
    skipped = set(OWN_ENTRIES | (AGENT_ENTRIES if under_agent else frozenset()))
    base = os.path.realpath(sandbox)
    for path in (sys.argv[0], __file__):
        if not path or not os.path.exists(path):  # `python -c`
            continue
        top = os.path.relpath(os.path.realpath(path), base).split(os.sep)[0]
        if top not in (os.pardir, os.curdir):
            skipped.add(top)
    return DiskCheck(interval_secs, frozenset(skipped), attempt_logs=not under_agent, owner=os.geteuid())


class DiskWatch:
    def __init__(self, label: str, sandbox: Path, limit_bytes: int, check: DiskCheck,
                 post: Callable[[object], None], clock: Callable[[], float] = time.monotonic,
                 record: Callable[[DiskSampled], None] | None = None) -> None:
        self._label = label
        self._record = record  # each sample, handed on for the readers (`executor/task/usagefile.py`)
        self._sandbox = sandbox
        self._check = check
        self._post = post
        self._clock = clock
        self._stopped = threading.Event()  # the task stopped: the walk under way ends early
        self.limit = DiskLimit(limit_bytes, check.interval_secs)

    def start(self) -> None:
        """The task's processes started: the first sample now."""
        self.limit.start(self._clock())
        self.tick()

    def tick(self) -> None:
        """Start the sample that is due, if one is."""
        if not self.limit.take(self._clock()):
            return
        thread = threading.Thread(target=self._sample, name=f"disk-sample {self._label}", daemon=True)
        try:
            start_thread(thread)
        except RuntimeError as exc:  # no thread to be had (a full pids cgroup): the next one may
            self.sampled(DiskSampled(None, error=f"the sampling thread could not start ({exc})"))

    def sampled(self, sample: DiskSampled) -> str | None:
        """A sample's result: the reason to fail the task when the sandbox is over its limit."""
        if sample.used_bytes is None:
            log_event(logger, logging.WARNING, "disk_sample_failed", task=self._label,
                      reason=f"{sample.error}; the next sample in {self.limit.interval_secs:g} s")
        else:
            log_event(logger, logging.DEBUG, "disk_sample", task=self._label, used_bytes=sample.used_bytes,
                      limit_bytes=self.limit.limit_bytes, files=sample.files, unreadable=sample.unreadable,
                      secs=round(sample.secs, 3))
        if self._record is not None:
            self._record(sample)
        reason = self.limit.sampled(sample, self._clock())
        if reason is not None:
            log_event(logger, logging.ERROR, "disk_limit_exceeded", task=self._label, reason=reason)
        return reason

    def deadline_at(self) -> float | None:
        return self.limit.deadline_at()

    def stop(self) -> None:
        """The task stops: no sample after this, and the one under way ends at its next
        directory (not waited for)."""
        self.limit.stop()
        self._stopped.set()

    def _sample(self) -> None:
        """The sampling thread: one walk, its result posted. At the supervisor's own CPU
        priority, not a lower one: a thread the kernel preempts while it holds the GIL stalls
        every other thread of the supervisor until it runs again, and a walk at nice 19 beside
        a task that kept the CPUs busy stalled the owner, the reaper and the health checks for
        2 to 3 s at a time. Its cost is bounded by the schedule (a tenth of the time)."""
        from executor.task.diskusage import Cancelled, measure

        started, took = time.monotonic(), WalkTime(self._stopped.is_set)
        try:
            usage = measure(self._sandbox, self._check.counts, self._check.owner, took.stopped)
            took.stopped()
            sample = DiskSampled(usage.used_bytes, usage.files, usage.unreadable, took.secs)
        except Cancelled:  # the task stopped: nobody waits for this sample
            log_event(logger, logging.DEBUG, "disk_sample_cancelled", task=self._label,
                      secs=round(time.monotonic() - started, 3))
            return
        except OSError as exc:
            sample = DiskSampled(None, error=f"the sandbox {self._sandbox} cannot be read: {exc.strerror or exc}")
        except Exception as exc:  # a bug: said with its traceback, and the check goes on
            log_event(logger, logging.ERROR, "disk_sample_internal_error", task=self._label,
                      error=f"{type(exc).__name__}: {exc}", exc_info=True)
            sample = DiskSampled(None, error=f"internal error: {type(exc).__name__}: {exc}")
        self._post(sample)


class WalkTime:
    """A walk's time, counted step by step: `stopped` (the walk's question, asked between two
    directories; asked once more at its end) adds the time since it was last asked, at most
    STEP_SECS_COUNTED, to `secs`, and answers `stop_asked()`."""

    def __init__(self, stop_asked: Callable[[], bool], clock: Callable[[], float] = time.monotonic) -> None:
        self._stop_asked = stop_asked
        self._clock = clock
        self._last = clock()
        self.secs = 0.0

    def stopped(self) -> bool:
        now = self._clock()
        self.secs += min(max(0.0, now - self._last), STEP_SECS_COUNTED)
        self._last = now
        return self._stop_asked()
