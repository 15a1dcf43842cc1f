"""`stoker run`'s live view stood in for in the test's process: `MarkedView`, a view whose
hide and show put a mark in the process's spool where the view's own escape sequences would
go, so that a test reads where the console copies landed around it."""
from __future__ import annotations

from typing import TextIO, cast

from executor.procs.consolecopy import RawConsole
from executor.spool import spool


class MarkedView:
    """Kept with `executor.logs.keep_screen_line(MarkedView(fd))`: `[hide]` and `[show]`
    written to console `fd` through the spool."""

    def __init__(self, fd: int) -> None:
        self.stream = RawConsole(fd)

    def hide(self) -> None:
        spool().put(cast(TextIO, self.stream), "[hide]", lambda e: None)

    def show(self) -> None:
        spool().put(cast(TextIO, self.stream), "[show]", lambda e: None)
