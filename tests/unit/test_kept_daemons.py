"""KeptDaemons, the daemons a task's runs left: which processes it holds, and which of them a
stop waits for, once one refused its signal (EPERM). Pure bookkeeping: no process is signalled."""
from __future__ import annotations

from executor.procs.daemons import KeptDaemons
from executor.procs.proctree import ProcInfo

RUN_MARKER = b"STOKER_RUN_MARKER=r1"


def daemon(pid: int, start: int) -> ProcInfo:
    return ProcInfo(pid=pid, ppid=1, pgrp=pid, environ=b"PATH=/bin\0" + RUN_MARKER + b"\0", start=start)


def test_a_refused_daemon_is_held_but_not_waited_for() -> None:
    daemons = KeptDaemons()
    daemons.keep([daemon(40, 400)], RUN_MARKER)
    daemons.refuse([40])
    assert daemons.holds(daemon(40, 400))
    assert daemons.waited_for([40]) == []
    assert daemons.held() == {40: 400}


def test_a_daemon_at_the_pid_of_a_refused_one_that_is_gone_is_kept_and_waited_for() -> None:
    """Before: the refusal was remembered by pid alone. Once the refused daemon had exited and
    its pid came back to another daemon of the same run (its marker), that one was not kept
    (a leftover to its run's sweep) and no stop signalled or waited for it."""
    daemons = KeptDaemons()
    daemons.keep([daemon(40, 400)], RUN_MARKER)
    daemons.refuse([40])
    assert not daemons.holds(ProcInfo(pid=40, ppid=1, pgrp=40, environ=b"", start=800))  # not the run's
    reused = daemon(40, 900)  # the pid again, another process: its start time differs
    assert daemons.holds(reused)
    assert daemons.waited_for([40]) == [40]
    assert daemons.held() == {40: 900}
