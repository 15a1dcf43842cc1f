"""The shell health check: `/bin/bash -c COMMAND`, exit 0 passes, past timeout_secs the
whole process group is killed.

The command runs through the `RunCommand` it is given: inside Stoker, the supervisor's,
which spawns it in the sandbox with the task's environment and reaps it with every other
child (no other code in the Stoker process may wait for children). This module never
starts a process itself and never raises out of check().
"""
from __future__ import annotations

from collections.abc import Callable

import attrs

from healthcheck.base import never_raises, secs, signal_name, tail_quote
from healthcheck.policy import Attempt


@attrs.frozen(slots=True)
class CommandResult:
    """How one health command ended. `error` is set only when it could not be started."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    output: str = ""  # the tail of stdout and stderr together
    error: str | None = None


# run_command(command, timeout_secs) runs `/bin/bash -c command`, kills its process group
# past the timeout, and never raises: every outcome is a CommandResult.
RunCommand = Callable[[str, float], CommandResult]


@attrs.frozen(slots=True)
class ShellChecker:
    """`/bin/bash -c COMMAND`: exit status 0 passes. Spawning is injected (`run_command`)."""

    command: str
    timeout_secs: float
    run_command: RunCommand

    def describe(self) -> str:
        return f"shell: {self.command}"

    @never_raises
    def check(self) -> Attempt:
        result = self.run_command(self.command, self.timeout_secs)
        output = tail_quote(result.output)
        if result.error is not None:
            return Attempt.failed(f"health command could not be started: {result.error}")
        if result.timed_out:
            reason = (
                f"health command timed out after {secs(self.timeout_secs)} s "
                f"(process group killed)"
            )
            return Attempt.failed(reason if not result.output.strip() else f"{reason}: {output}")
        if result.signal is not None:
            return Attempt.failed(
                f"health command was killed by {signal_name(result.signal)}: {output}"
            )
        if result.exit_code == 0:
            return Attempt.passed("health command exited with status 0")
        return Attempt.failed(f"health command exited with status {result.exit_code}: {output}")
