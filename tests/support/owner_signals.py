"""The owner machine test's signal invariants (tests/unit/test_owner_machine.py): when the
runs, the final runs and the daemons the runs left must have had SIGTERM and SIGKILL, and
when they may not have had SIGKILL yet, from what the test drew (the job, the kills, the
operators' restarts, the front-end's stop bounds) and what the fake process port saw
(`owner_model.World`). Time passes through the owner's deadlines, so a signal's time is
checked, not only that it went out.

Nothing here starts a process, a thread or a socket.
"""
from __future__ import annotations

from config.spec import JobSpec
from tests.support.owner_model import Run, Shape, World
from tests.support.owner_rig import OwnerRig


class SignalChecks:
    """Mixed into the machine, which sets these as it draws and drives."""

    rig: OwnerRig
    shape: Shape
    job: JobSpec
    world: World
    kills: list[tuple[float, float, bool]]  # (at, grace, endpoints first)
    immediate: bool
    stopping_since: float | None
    kill_began: float | None
    kill_all: list[float]  # each kill's `kill_all_at`: SIGKILL to every run, final ones too, then

    def _check_signals(self) -> None:
        """Once the task stops, every regular run is SIGTERMed once the endpoints had their
        waits, and SIGKILLed a grace later; a final run is SIGKILLed once finalization_wait
        is over; after an immediate kill (a second Ctrl-C) every run has had SIGKILL; and no
        run SIGKILLed sooner than a stop allowed (`_check_sigkill`)."""
        if self.rig.done:
            return
        wait = self.job.task.finalization_wait_secs
        for run in self.world.alive():
            if self.immediate:
                assert run.killed_at is not None, f"{run} not SIGKILLed by an immediate kill"
            if self.job.task.process(run.process).final:
                self._by(run.killed_at, run.spawned_at + wait, f"final {run} not SIGKILLed {wait} s after it started")
            else:
                if self.stopping_since is not None:
                    self._check_stopping(run)
                self._check_sigkill(run)
            self._check_bounds(run)
        if self.world.daemons and self.stopping_since is not None:
            self._check_daemons()

    def _check_daemons(self) -> None:
        """The daemons the runs left are stopped with the regular runs: SIGTERM, SIGKILL."""
        world, lifecycle = self.world, self.job.lifecycle
        waits = 0.0 if lifecycle is None else \
            lifecycle.graceful_shutdown_wait_secs + lifecycle.shutdown_wait_secs
        grace = max([self.job.task.finalization_wait_secs] + [g for _, g, _ in self.kills])
        assert self.stopping_since is not None
        signalled = min([t for t in (world.daemons_termed_at, world.daemons_killed_at) if t is not None], default=None)
        self._by(signalled, self.stopping_since + waits, f"the daemons not signalled {waits} s after the stop began")
        if world.daemons_termed_at is not None:
            self._by(world.daemons_killed_at, world.daemons_termed_at + grace,
                     f"the daemons not SIGKILLed {grace} s after SIGTERM")

    def _check_bounds(self, run: Run) -> None:
        """`stoker run --kill-grace`: SIGKILL to the regular runs at most that long after the
        kill began; `--stop-timeout-in-secs`, and a kill's `kill_all_at` (a SHUTDOWN's grace
        end): to every run, final ones included."""
        _, within, timeout = self.shape.stop
        if self.kill_began is None:
            return
        if within is not None and not self.job.task.process(run.process).final:
            self._by(run.killed_at, self.kill_began + within, f"{run} not SIGKILLed {within} s after the kill began")
        if timeout is not None:
            self._by(run.killed_at, self.kill_began + timeout, f"{run} not SIGKILLed by the stop timeout ({timeout} s)")
        for at in self.kill_all:
            self._by(run.killed_at, max(at, run.spawned_at), f"{run} not SIGKILLed at a kill's kill_all_at")

    def _by(self, at: float | None, due: float, broke: str) -> None:
        """Once `due` has come, the signal went out (`at`) by then: time passes through the
        owner's deadlines (`_advance`), so a signal the owner put off shows as late."""
        if self.rig.clock.now >= due:
            assert at is not None and at <= due + 1e-9, f"{broke} (at {at}, due {due})"

    def _default_grace(self) -> float:
        """A kill's grace when it names none, and a restart's (the front-end's default)."""
        return self.shape.stop[0] if self.shape.stop[0] is not None else self.job.task.finalization_wait_secs

    def _check_sigkill(self, run: Run) -> None:
        """A regular run's SIGKILL: not before the soonest any stop gave it (a later stop may
        bring it sooner, never later), after its SIGTERM unless an immediate kill or a stop
        bound cut the grace short, and within the grace of an operator's restart."""
        _, within, timeout = self.shape.stop
        soonest = [at + (0.0 if self.immediate else grace) for at, grace, _ in self.kills]
        if self.stopping_since is not None:  # the processes or the check ended it
            soonest.append(self.stopping_since + min(self._default_grace(), self.job.task.finalization_wait_secs))
        if run.restarted_at is not None:
            soonest.append(run.restarted_at + self._default_grace())
            self._by(run.killed_at, run.restarted_at + self._default_grace(), f"{run} not SIGKILLed its restart's grace after it")
        began = self.kill_began
        bounds = [] if began is None else [began + b for b in (within, timeout) if b is not None]
        bounds += self.kill_all
        if run.killed_at is None:
            return
        assert soonest and run.killed_at >= min(soonest + bounds), f"{run} SIGKILLed before any stop allowed it"
        cut_short = self.immediate or any(run.killed_at >= b for b in bounds)
        assert cut_short or (run.termed_at is not None and run.termed_at <= run.killed_at), \
            f"{run} SIGKILLed, never SIGTERMed"

    def _check_stopping(self, run: Run) -> None:
        lifecycle = self.job.lifecycle
        waits = 0.0 if lifecycle is None else \
            lifecycle.graceful_shutdown_wait_secs + lifecycle.shutdown_wait_secs
        grace = max([self.job.task.finalization_wait_secs] + [g for _, g, _ in self.kills])
        assert self.stopping_since is not None
        signalled = min([t for t in (run.termed_at, run.killed_at) if t is not None], default=None)
        self._by(signalled, max(self.stopping_since, run.spawned_at) + waits, f"{run} not signalled {waits} s after the stop began")
        if run.termed_at is not None:
            self._by(run.killed_at, run.termed_at + grace, f"{run} not SIGKILLed {grace} s after SIGTERM")
