"""`stoker run`'s console: each state change as one readable line, and a live view.

Owns what `stoker run` prints while a task runs: one line per transition (time, task,
subject, old → new, reason) and, on a terminal, a one-line live view of the task under the
log. Never decides anything and never touches task state: it is the owner's reporter.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import TextIO, assert_never

from executor.events import HealthTransition, PhaseTransition, ProcessTransition, TaskTransition, Transition
from executor.task.status import Update


class ConsoleReporter:
    """Prints each state change as one readable line: time, subject, old → new, reason.

    On a terminal it also keeps a one-line live view under the log (task state, each
    process's state and run, the last health check), redrawn on every change — never on a
    timer, so an idle task costs no wakeups.
    """

    def __init__(self, out: TextIO, label: str, live: bool | None = None) -> None:
        self._out = out
        self._label = label
        self._live = _isatty(out) if live is None else live
        self._task_state = "NEW"
        self._processes: dict[str, str] = {}
        self._health = ""

    def line(self, subject: str, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        clear = "\r\x1b[2K" if self._live else ""
        self._out.write(f"{clear}{stamp}  {self._label:<12} {subject:<16} {text}\n")
        self._redraw()

    def _redraw(self) -> None:
        if self._live:
            procs = " ".join(f"{name}:{state}" for name, state in self._processes.items())
            view = f"[{self._label} {self._task_state}] {procs}"
            if self._health:
                view += f" | health {self._health}"
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self._out.write("\x1b[7m" + view[:width] + "\x1b[0m")
        self._out.flush()

    def on_transition(self, t: Transition) -> None:
        match t:
            case TaskTransition():
                self._task_state = t.to.value
                self.line("task", f"{t.from_.value} → {t.to.value}  {t.reason}")
            case ProcessTransition():
                self._processes[t.process] = f"{t.to.value}[{t.run}]"
                self.line(f"{t.process}[{t.run}]", f"{t.from_.value} → {t.to.value}  {t.reason}")
            case PhaseTransition():
                self.line("supervisor", f"{t.from_.value} → {t.to.value}  {t.reason}")
            case HealthTransition():  # every attempt: the live view only, not a line
                self._health = f"{t.to.value} #{t.attempt} {t.outcome.value}"
                if self._live:
                    self._out.write("\r\x1b[2K")
                    self._redraw()
            case _:
                assert_never(t)

    def on_update(self, u: Update) -> None:
        pass  # task transitions already carry every update's state and reason

    def close(self) -> None:
        if self._live:
            self._out.write("\r\x1b[2K")
            self._out.flush()


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty() and os.environ.get("TERM", "dumb") != "dumb"
    except (AttributeError, ValueError):
        return False
