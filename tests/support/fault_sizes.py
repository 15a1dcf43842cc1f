"""The fault suite's size switch: short sizes in CI (`make test`), full ones under `make faults`.

Owns `FULL` (true when STOKER_FAULTS_FULL is set to anything but "" or "0") and `size(short,
full)`. Reads that one environment variable at import; nothing else.
"""
from __future__ import annotations

import os

FULL = os.environ.get("STOKER_FAULTS_FULL", "") not in ("", "0")


def size(short: int, full: int) -> int:
    """The short size in CI, the full one under `make faults` (STOKER_FAULTS_FULL=1)."""
    return full if FULL else short
