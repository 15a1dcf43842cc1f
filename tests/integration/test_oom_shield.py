"""The supervisor's oom_score_adj (`executor/procs/oomcount.py`; `oomkill.py` says why):
lowered when it may be, and every child forked at the adj the supervisor started with, with
real processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor.procs import oomcount
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


# Whether a process of this one may lower its adj: tried before any supervisor's reaper
# runs (it would reap the child first, and subprocess reads that as exit status 0).
LOWER = "import os; os.write(os.open('/proc/self/oom_score_adj', os.O_WRONLY), b'-999')"
MAY_LOWER = subprocess.run([sys.executable, "-c", LOWER], stderr=subprocess.DEVNULL, check=False).returncode == 0


def own_adj() -> int:
    return int(Path("/proc/self/oom_score_adj").read_text())


def test_a_run_is_forked_at_the_adj_the_supervisor_started_with(harness, tmp_path):
    """As a lowered supervisor's runs are: here with a shield whose `started` is above this
    process's adj (raising needs no privilege), and `own` this process's, to which it may go
    back: the run reads `started`, this process is `own` again once it is forked."""
    before = own_adj()
    started = min(before + 100, 1000)
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
    harness.sup._reaper.shield = oomcount.Shield(started=started, own=before, fd=fd)
    try:
        out = tmp_path / "adj"
        harness.spawn("p", f"cat /proc/self/oom_score_adj > {out}")
        assert harness.next_exit().status.exit_code == 0
        assert own_adj() == before
    finally:
        harness.sup._reaper.shield = None
        os.close(fd)
    wait_for(lambda: out.exists() and out.read_text().strip(), 5, message="the run's adj")
    assert int(out.read_text()) == started


def test_the_supervisor_lowers_its_adj_only_when_it_may(harness):
    """Lowering needs CAP_SYS_RESOURCE (the kernel's: in the host's user namespace, which
    CapEff does not tell in a container's): with it, this (test) process is at
    PROTECTED_ADJ once a supervisor started; without it, as it was."""
    shield = oomcount.shield()  # made once per process, by the harness's supervisor's start
    if MAY_LOWER:
        assert shield is not None and own_adj() == oomcount.PROTECTED_ADJ <= shield.started
    else:
        assert shield is None and own_adj() > oomcount.PROTECTED_ADJ



def test_a_shield_made_afresh_lowers_the_adj_once_when_it_may_and_lifts_it_to_where_it_began(monkeypatch):
    """`shield()` as a process's first supervisor calls it (its once-per-process flags set
    afresh), from an adj of 100: with the privilege, PROTECTED_ADJ, and `lift` puts 100 back
    for a fork, `restore` PROTECTED_ADJ again; without, no Shield and the adj as it was. A
    second call is the first's answer; from PROTECTED_ADJ or below there is no Shield."""
    before = own_adj()
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
    made: list[oomcount.Shield] = []
    try:
        for adj in (100, *((oomcount.PROTECTED_ADJ, -1000) if MAY_LOWER else ())):
            os.pwrite(fd, str(adj).encode(), 0)
            monkeypatch.setattr(oomcount, "_shield_tried", False)
            monkeypatch.setattr(oomcount, "_shield", None)
            shield = oomcount.shield()
            assert oomcount.shield() is shield and oomcount._shield_tried is True, adj
            if not MAY_LOWER or adj != 100:
                assert shield is None and own_adj() == adj, (adj, shield)
                continue
            assert shield is not None
            made.append(shield)
            assert (shield.started, shield.own, own_adj()) == (100, oomcount.PROTECTED_ADJ, oomcount.PROTECTED_ADJ)
            shield.lift()
            assert own_adj() == 100
            shield.restore()
            assert own_adj() == oomcount.PROTECTED_ADJ
    finally:
        os.pwrite(fd, str(before).encode(), 0)
        os.close(fd)
        for shield in made:
            os.close(shield.fd)
