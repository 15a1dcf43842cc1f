"""The integration tests' supervisor fixtures: a Harness on a fresh sandbox, closed at
teardown, and the Tracker that kills whatever its processes left. A module that needs
another harness (tests/integration/test_containment.py) defines its own."""
from __future__ import annotations

import pytest

from tests.support.supervision import Harness, Tracker


@pytest.fixture
def tracker():
    t = Tracker()
    yield t
    t.cleanup()


@pytest.fixture
def harness(tmp_path, tracker):
    h = Harness(tmp_path / "sandbox", tracker)
    try:
        yield h
    finally:
        h.sup.close()
