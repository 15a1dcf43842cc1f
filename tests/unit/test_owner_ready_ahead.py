"""The owner has the log files of its first step's runs made before it writes its first record
(`ProcessPort.ready_ahead`): while it waits for the task's containment, not after. Fake ports,
fake clock."""
from __future__ import annotations

import pytest

from config.spec import ProcessSpec
from executor.events import KillRequested
from tests.support.owner_rig import OwnerRig, job

pytestmark = pytest.mark.timeout(10)


def _proc(name: str) -> ProcessSpec:
    return ProcessSpec(name=name, cmdline="serve", min_duration_secs=0.0)


def test_the_first_steps_runs_are_readied_before_the_checkpoint_is_opened_and_spawned_after():
    rig = OwnerRig()
    owner = rig.own(job(_proc("a"), _proc("b"), _proc("c")))
    owner.start()
    assert rig.procs.readied == [("a", 0), ("b", 0), ("c", 0)]
    assert rig.procs.readied_after == []  # before any report and any spawn
    rig.step()
    spawned = [line.split(" ", 1)[1] for line in rig.effects.lines if " spawn " in line]
    assert spawned == ["spawn a[0]", "spawn b[0]", "spawn c[0]"]


def test_a_kill_before_the_first_step_still_readies_and_starts_nothing():
    rig = OwnerRig()
    owner = rig.own(job(_proc("a")))
    owner.start()
    owner.post(KillRequested("stop"))
    rig.step()
    assert rig.procs.readied == [("a", 0)]
    assert not any("spawn" in line for line in rig.effects.lines)


def test_a_kill_queued_before_the_start_readies_nothing():
    rig = OwnerRig()
    owner = rig.own(job(_proc("a")))
    owner.post(KillRequested("stop"))
    owner.start()
    rig.step()
    assert rig.procs.readied == []


def test_an_early_starts_runs_are_not_readied():
    """They run already (the first step adopts them): there is nothing to make for them."""
    rig = OwnerRig()
    owner = rig.own(job(_proc("a"), _proc("b")), running_early=True)
    owner.start()
    rig.step()
    assert rig.procs.readied == []
