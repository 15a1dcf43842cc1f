"""A Python whose `posix_spawn` cannot start a session, in a process a test starts: as some
platforms' does, it raises NotImplementedError for `setsid=True`, so that Stoker starts a
watchdog (or a run) by `Popen`'s fork instead. Imported by a child script, after the
repository is on its `sys.path`, before it imports Stoker; or in the test's own process, with
`os.posix_spawn` put back by pytest's monkeypatch (tests/integration/test_watchdog_keeper.py)."""
from __future__ import annotations

import os
from typing import Any


def posix_spawn_without_setsid() -> list[bool]:
    """Replace `os.posix_spawn` so; returns the list each call's `setsid` is appended to."""
    tried: list[bool] = []
    real = os.posix_spawn

    def posix_spawn(*args: Any, setsid: bool = False, **kwargs: Any) -> int:
        tried.append(setsid)
        if setsid:
            raise NotImplementedError("setsid is not supported on this platform")
        return real(*args, **kwargs)

    os.posix_spawn = posix_spawn  # type: ignore[assignment]
    return tried
