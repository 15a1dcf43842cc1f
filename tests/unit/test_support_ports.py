"""tests/support/ports.py: each pytest-xdist worker hands out ports from a slice of its own."""
from __future__ import annotations

import pytest

from tests.support import ports


def test_outside_xdist_every_port_of_the_range_may_be_drawn(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert ports._own_range(10000, 32767) == range(10000, 32768)


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_the_workers_slices_are_disjoint_and_inside_the_range(monkeypatch, count):
    slices = []
    for index in range(count):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))
        slices.append(set(ports._own_range(10000, 32767)))
    assert all(len(s) == 22768 // count for s in slices)
    assert set().union(*slices) <= set(range(10000, 32768))
    assert sum(len(s) for s in slices) == len(set().union(*slices))  # no port in two slices


def test_a_worker_draws_its_ports_from_its_own_slice(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    own = ports._own_range(ports.LOWEST, ports._ephemeral_low() - 1)
    drawn = ports.free_ports(5)
    assert len(set(drawn)) == 5
    assert len(own) < 1000 or set(drawn) <= set(own)
