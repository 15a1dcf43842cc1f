"""What the supervisor hands the watchdog (`executor/procs/handover.py`): every orphan a look
found and every kept daemon, handed over only when that changed; and when to look again
after a run starts."""
from __future__ import annotations

import pytest

from executor.procs.daemons import KeptDaemons
from executor.procs.handover import LOOKS_AFTER_SPAWN_SECS, Handover, next_look_in
from executor.procs.proctree import ProcInfo


def test_the_sink_gets_the_orphans_and_the_kept_daemons_each_time_they_change():
    daemons = KeptDaemons()
    handover = Handover(daemons)
    given: list[dict[int, int]] = []
    handover.to(given.append)
    assert given == []  # nothing held yet: nothing written
    handover.saw({10: 100})
    handover.saw({10: 100})  # the same: not handed again
    assert handover.orphans() == {10: 100}
    daemons.add(ProcInfo(pid=20, ppid=1, pgrp=20, environ=b"", start=200))
    handover.changed()
    handover.saw({})  # the orphan gone (a look no longer finds it); the daemon stays
    assert given == [{10: 100}, {10: 100, 20: 200}, {20: 200}]
    assert handover.handed() == {20: 200}


def test_looks_follow_a_run_s_start_then_stop():
    assert next_look_in(None, 5.0) is None  # no run started: no look is due
    assert next_look_in(10.0, 10.0) == pytest.approx(LOOKS_AFTER_SPAWN_SECS[0])
    assert next_look_in(10.0, 10.1) == pytest.approx(LOOKS_AFTER_SPAWN_SECS[1] - 0.1)
    assert next_look_in(10.0, 10.0 + LOOKS_AFTER_SPAWN_SECS[-1]) is None
    first = LOOKS_AFTER_SPAWN_SECS[0]
    assert next_look_in(0.0, first) == pytest.approx(LOOKS_AFTER_SPAWN_SECS[1] - first)  # at a look: the next


def test_what_is_seen_before_a_sink_is_given_is_handed_to_it_when_it_is():
    daemons = KeptDaemons()
    handover = Handover(daemons)
    handover.saw({10: 100})  # no sink yet: nothing handed, nothing raised
    assert handover.handed() == {}
    given: list[dict[int, int]] = []
    handover.to(given.append)
    assert given == [{10: 100}]
