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
