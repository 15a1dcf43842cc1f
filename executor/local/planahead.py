"""A first run's plan, made while `stoker run` loads: the handle on the process making it.

A config run for the first time (or edited since) is planned in a child process
(`executor/local/planning.py`: pystachio and the config modules, the config's own code,
about 50 ms). Forked where `LocalRun` needs the plan, that child starts after the
supervisor's 200 ms of imports. The entry point (`executor/cli/launch.py`) forks it early
instead, for `stoker run CONFIG` with no kept plan, and the two load side by side: the plan
is usually ready when the supervisor asks for it. Early, but not first: once attrs, `typing`
and the other modules the child and the supervisor both use are loaded (`executor.cli.main`
and what it imports; `executor.local.planning` with the plan's classes and the plan cache;
`socket`), so that the child has them from the fork. Forked at the entry
point's first line, the child imported them again beside its parent (attrs with `typing`,
`pathlib`, logging, the config settings; `inspect` and `ast`, which only the child runs now,
`executor/deferred.py`): CPU paid twice, which on a
busy 2-core host is wall time too (an interleaved A/B of a new config's launch, N=1:
whole-tree CPU 528 → 400 ms, exec → running 812 → 606 ms, medians of 20 on a loaded VM).

Where a first run waits, measured with probes on the shared 2-core VM under a load of 5
(12 interleaved launches each, medians, ms from the interpreter's first line): forked at the
first line, the child's own imports of attrs and the rest competed with the parent's, its
plan was ready at 932 and the supervisor waited for it in 5 of 12 runs (first spawn at
1155); forked after them (317), it plans by 507, about 150 before the supervisor has loaded
(704), which waited for it in none (first spawn at 785: 61 after taking the plan, for the
plan cache, the host session, the cgroup, the watchdog and the checkpoint). Those 61 are off
the path now: once loaded and its settings read, `stoker run` starts the plan's first runs
from the child's answer as the early start does a kept plan's (`launchfirst.start_first`), and
the supervisor adopts them. Probed again so (the shared VM at a load of 3.5 to 8, N=1), the
child's answer came before the end of the supervisor's imports in some runs and after in
others, each 70 to 240 ms after the fork as the load went: the child's own work is on the
path as much as the supervisor's imports. In one process, for hello_world: the config
language's imports 20-25 ms (pystachio's schema classes the most, `config.schema.aurora`,
halved since: `config/schema/shared.py`), the plan 6; `inspect` and `pprint` no longer load
for pystachio (`executor/deferred.py`), nor are the language's attrs classes compiled again
(`executor/codecache.py`, `plan`), nor does the child load the plan cache's `logging` and
settings (`executor/local/planform.py`). `bench/firstrun_timeline.py` gives both processes'
phases, wall and CPU. Probed
after those (load 4.4, 3 runs): fork at 117-130, the answer at 171-173, the supervisor's
settings read and the lease taken at 192-213, its first run spawned 3.5 later. Since, the
runs start as the answer arrives: `stoker run` reads its settings before it imports the
supervisor, and the supervisor's modules load while the child plans, with a check for the
answer between them (`launchfirst.start_first`; `answered` never waits). Forked at the
entry point's first lines again, right after the kept-plan miss (the child importing attrs,
pystachio's schema first, beside the parent's imports), it was slower (A/B on the busy VM,
30 launches each: exec → 1 ran +106 ms, slower in 27 of 30 pairs): the child needs what the
parent loads before the fork but for five modules, so an earlier fork only makes both pay.

`PlanAhead` is that child: its pid, the pipe its answer comes through (the same answer as
`planning.plan_apart`'s child gives, after the plan alone, which the early start starts the
runs from: `early_plan`), and what it planned for (config as given, no job key,
`--bind`, `--instance` or `--port`, this host and user). `LocalRun` takes the answer when
its own settings are those (`inputs`), and cancels the child otherwise: it is killed and
reaped, and the job is planned as ever. Nothing is lost either way; the child only plans.

Whichever waits for a planning child's answer, this one's or `planning.plan_apart`'s own
child's or `stoker inspect`'s, says once that it still waits, SLOW_SECS after the fork
(`Slow`): a config whose code never ends is stopped only at the child's bound (60 s).

The child dies with the process that forked it (PR_SET_PDEATHSIG): a `stoker run` that
ends before it plans (a usage error), or is killed, leaves no planning child. Standard
library only: it is loaded before anything else.
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's: `signal` adds enums for nothing here
import os
import sys
import time  # (built in)

__all__ = ["EARLY", "INPUT_NAMES", "PlanAhead", "Slow", "collect", "inputs_of", "read_answer"]

Inputs = tuple[str, "str | None", tuple[tuple[str, str], ...], int, tuple[tuple[str, int], ...], str, str]
INPUT_NAMES = ("config", "jobkey", "bindings", "instance", "ports", "host", "user")  # Inputs' parts
# What begins the child's plan sent alone before its answer (`planning.plan_ahead`), then its
# size in 4 bytes: a NUL, which no `marshal` data (the answer) begins with
EARLY = b"\0"
SLOW_SECS = 5.0  # a child's answer waited for this long after its fork: a line says so (`Slow`), once


class Slow:
    """The line a wait for a planning child's answer says once, SLOW_SECS after the child was
    forked: a config's code that never ends (`while True`, a FIFO nobody writes to) is
    stopped only at the child's bound (60 s), and the command was silent until then. `late`
    says what is late ("'job.aurora': the job is still not planned"), `doing` what is stopped
    at `bound_secs`; it goes out as `stoker: warning: ...` on stderr (with `--log-format
    json`, the `stoker_warning` event: `logsetup.say`)."""

    __slots__ = ("_at", "message")

    def __init__(self, late: str, doing: str, bound_secs: float) -> None:
        self._at: float | None = time.monotonic() + SLOW_SECS  # None once said
        self.message = f"{late} after {SLOW_SECS:g} s; {doing} is stopped at {bound_secs:g} s (Ctrl-C stops it now)"

    def wait_ms(self) -> int | None:
        """How long a wait may last before the line is due, for `poll` (None: no bound, it
        was said)."""
        if self._at is None:
            return None
        return max(0, int((self._at - time.monotonic()) * 1000) + 1)

    def say(self) -> None:
        """The line, the first time; nothing after. Said by the command line's `logsetup.say`
        (not imported: executor.local is below executor.cli), which every command loads; in
        a program that plans without it (`LocalRun` embedded), the `plan_slow` event."""
        if self._at is None:
            return
        self._at = None
        logsetup = sys.modules.get("executor.cli.logsetup")
        if logsetup is not None:
            logsetup.say("warning", self.message)
            return
        import logging  # (loaded wherever a program logs)

        from executor.logs import log_event

        log_event(logging.getLogger(__name__), logging.WARNING, "plan_slow", reason=self.message)


def read_answer(read_end: int, pid: int, size: int = -1, slow: Slow | None = None) -> bytes:
    """Up to `size` bytes (all, when -1) that the child `pid` writes to the pipe `read_end`:
    read until the pipe ends or the child has ended, whichever comes first. The child writes
    its whole answer before it ends, so by then it is in the pipe; a process the config's
    code forked (a daemon started from a `.aurora` file) holds the pipe's write end too, and
    reading to the pipe's end waited for it (for ever, for a daemon). Where the child's end
    cannot be watched (no pidfd: a kernel before 5.3, or no descriptor left), to the pipe's
    end, as before. Anything raised meanwhile (Ctrl-C) is raised again; the caller kills.
    `slow`: its line is said when its time comes before the answer."""
    import select  # the supervisor's control socket loads it too (`selectors`)

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = -1
    try:
        poller = select.poll()  # poll, not select: the descriptors may be past FD_SETSIZE
        poller.register(read_end, select.POLLIN)
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        chunks: list[bytes] = []
        left = size if size >= 0 else 1 << 62
        while left > 0:
            ready = poller.poll(None if slow is None else slow.wait_ms())
            if not ready and slow is not None:  # its time came (a wait without `slow` has no bound)
                slow.say()
                continue
            if read_end not in {fd for fd, _ in ready}:  # the child ended, its pipe empty
                break
            chunk = os.read(read_end, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def collect(pid: int, read_end: int, mask: set[int], slow: Slow | None = None) -> tuple[bytes, int]:
    """The answer of the child `pid` forked with its stop signals blocked (`mask`: the mask
    to put back) and its wait status; anything raised meanwhile (a Ctrl-C held since the fork
    lands here) kills and reaps the child first. Closes `read_end`. `stoker run`'s planning
    child's and `stoker inspect`'s (`executor/cli/apart.py`); `slow`: `read_answer`'s."""
    try:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)  # a signal held since the fork lands here
        data = read_answer(read_end, pid, slow=slow)  # not held by a process the config forked
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(read_end)
    return data, status


def inputs_of(config: str, jobkey: str | None, bindings: tuple[tuple[str, str], ...], instance: int,
              ports: tuple[tuple[str, int], ...], host: str, user: str) -> Inputs:
    """What a plan of `stoker run` depends on besides the files' text (config as given)."""
    return (config, jobkey, bindings, instance, ports, host, user)


class PlanAhead:
    __slots__ = ("pid", "inputs", "_read_end", "_answer", "plan", "_head", "_early", "_slow")

    def __init__(self, pid: int, read_end: int, inputs: Inputs, slow: Slow | None = None) -> None:
        self.pid = pid  # -1 once answered or cancelled: reaped
        self.inputs = inputs
        self._slow = slow  # the line said once, whichever wait (`early_plan`, `answer`) reaches its time
        self._read_end = read_end
        self._answer: tuple[bytes, int] | None = None
        # the plan its answer holds, once decoded (the early start decodes it first, and the
        # run plans with that one: decoded twice, the first one's objects were garbage left
        # as holes under the supervisor's state)
        self.plan: object = None
        self._head = b""  # what `early_plan` read of the pipe: the plan sent first, or the answer's start
        self._early: bytes | None = None  # that plan (marshal data), when it was one

    def answered(self) -> bool:
        """Whether the child wrote to its pipe (the plan sent first, `early_plan`, or its
        answer) or ended, or it was answered or cancelled already: `early_plan` would return
        at once (`answer` may still wait for the rest). Never waits."""
        if self._answer is not None or self._read_end < 0:
            return True
        import select  # the supervisor's control socket loads it too (`selectors`)

        # poll, not select: the pipe may be past select's FD_SETSIZE (1024), when `stoker run`
        # inherited that many descriptors (ValueError: a first run's crash)
        poller = select.poll()
        poller.register(self._read_end, select.POLLIN)
        return bool(poller.poll(0))

    def early_plan(self) -> bytes | None:
        """The plan the child sent before its answer (`planning.plan_ahead`: `planform.encode`d,
        in marshal form), waited for; None when it sent its answer without one (the config
        failed to load, ...) or ended before it; once `answer` has read the pipe, what it
        found there (`planning.plan_apart` plans with it when no plan answer came). Kills and reaps the
        child when the wait is interrupted (Ctrl-C), and raises that again."""
        if self._head or self._answer is not None or self._read_end < 0:
            return self._early
        try:
            self._head = self._read(5)
            if self._head[:1] == EARLY and len(self._head) == 5:
                size = int.from_bytes(self._head[1:], "big")
                plan = self._read(size)
                self._head += plan
                self._early = plan if len(plan) == size else None
        except BaseException:
            self.cancel()
            raise
        return self._early

    def answer(self) -> tuple[bytes, int]:
        """(what the child sent, its wait status) once it ended, the same at every call (the
        early start reads it first, `planning.plan_apart` again); kills and reaps the child
        first when the wait is interrupted (Ctrl-C), and raises that again. What it sent is
        its answer, without the plan it sent before it (`early_plan`)."""
        if self._answer is not None:
            return self._answer
        try:
            data = self._head + read_answer(self._read_end, self.pid, slow=self._slow)
            _, status = os.waitpid(self.pid, 0)
        except BaseException:
            self.cancel()
            raise
        self._done()
        if data[:1] == EARLY:  # the plan sent first: the answer holds it too
            end = 5 + int.from_bytes(data[1:5], "big")
            if len(data) >= end:  # (the same plan when `early_plan` read it)
                self._early = data[5:end]
            data = data[end:]
        self._answer = (data, status)
        return self._answer

    def _read(self, size: int) -> bytes:
        """`size` bytes of the pipe, or fewer at its end or the child's."""
        return read_answer(self._read_end, self.pid, size, self._slow)

    def cancel(self) -> None:
        """Kill and reap the child (nothing when it was answered or cancelled)."""
        if self.pid < 0:
            return
        try:
            os.kill(self.pid, _signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            """Reaped by another wait: nothing left to kill (`_done` says so)."""
        self._done()

    def _done(self) -> None:
        self.pid = -1
        if self._read_end >= 0:
            os.close(self._read_end)
            self._read_end = -1
