"""The words for what of a task a supervisor may not signal or see end
(`executor/procs/unsignalled.py`), about real processes of the test's: how a process is
named (its command, its real user, its state), at most five and the rest counted; which
this process may not signal (a stranger's, with this process's effective user switched for
the look); a run a debugger traces; what a close left and what becomes of a cgroup it could
not remove or finish."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.procs import unsignalled
from tests.support.logevents import records
from tests.support.users import STRANGER, effective_user, needs_root
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)
GONE = 4194305  # past the kernel's largest pid (PID_MAX_LIMIT, 2**22): never a process
NOT_YET = ("SIGKILLed and not yet gone (a SIGKILLed process runs no code of its own again; one in D state "
           "ends once the kernel lets it go; the close and the watchdog SIGKILL it again): ")
TRACER = ("import ctypes, sys, time; libc = ctypes.CDLL(None); "
          "assert libc.ptrace(16, int(sys.argv[1]), 0, 0) == 0; open('attached', 'w'); time.sleep(30)")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts (`started.append(Popen(...))`), killed and reaped after it."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in reversed(procs):  # a tracer before what it traces
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def sleepers(started: list[subprocess.Popen], count: int, **kw: object) -> list[int]:
    """`count` processes of `sleep 100`, each asleep in it (exec'd, state S) when this returns."""
    procs = [subprocess.Popen(["sleep", "100"], **kw) for _ in range(count)]  # type: ignore[call-overload]
    started.extend(procs)
    for proc in procs:
        wait_for(functools.partial(asleep, proc.pid), 5, message=f"{proc.pid} asleep in sleep 100")
    return [p.pid for p in procs]


def asleep(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    return "\nState:\tS" in status and Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00100\x00"


def test_a_process_is_named_by_its_command_and_real_user_five_at_most_and_the_rest_counted(started):
    pids = sleepers(started, 7)
    named = [f"pid {pid} (sleep 100, uid {os.getuid()})" for pid in pids]
    assert unsignalled.describe(pids[:1]) == named[0]
    assert unsignalled.describe(pids[:5]) == ", ".join(named[:5])
    assert unsignalled.describe(pids) == ", ".join(named[:5]) + " and 2 more"
    assert unsignalled.describe([GONE]) == f"pid {GONE} (?, uid ?)"


@pytest.mark.parametrize(("argv", "said"), [
    (["tab\there", "100"], "tab?here 100"),
    ([b"\xffname", "100"], "\ufffdname 100"),  # not UTF-8: the replacement character
    (["y" * 76, "100"], "y" * 76 + " 100"),  # 80 characters: whole
    (["x" * 100, "100"], "x" * 77 + "..."),
], ids=["unprintable", "undecodable", "80", "long"])
def test_a_command_s_unprintable_characters_are_marked_and_a_long_one_cut(started, argv, said):
    proc = subprocess.Popen(argv, executable=shutil.which("sleep"))  # its argv[0] as the test says
    started.append(proc)
    wait_for(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes().endswith(b"\x00100\x00"), 5, message="the exec")
    assert unsignalled.describe([proc.pid]) == f"pid {proc.pid} ({said}, uid {os.getuid()})"


def test_a_command_line_is_its_arguments_whatever_its_last_character(started):
    proc = subprocess.Popen(["pyX", "-c", "import time; time.sleep(100)", "X"], executable=sys.executable)
    started.append(proc)
    wait_for(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"pyX"), 5, message="the exec")
    assert unsignalled.describe([proc.pid]) == f"pid {proc.pid} (pyX -c import time; time.sleep(100) X, uid {os.getuid()})"


def test_a_process_with_no_command_line_left_is_named_by_its_name(started):
    proc = subprocess.Popen(["true"])
    started.append(proc)
    wait_for(lambda: unsignalled.not_gone([proc.pid]).endswith("state Z)"), 5, message="a zombie")
    assert Path(f"/proc/{proc.pid}/cmdline").read_bytes() == b""
    assert unsignalled.describe([proc.pid]) == f"pid {proc.pid} (true, uid {os.getuid()})"


def test_what_is_not_yet_gone_is_named_with_its_state_five_at_most(started):
    pids = sleepers(started, 7)
    os.kill(pids[1], signal.SIGSTOP)
    wait_for(lambda: unsignalled.not_gone(pids[1:2]).endswith("state T)"), 5, message="stopped")
    states = [f"pid {pid} (sleep 100, state {'T' if pid == pids[1] else 'S'})" for pid in pids]
    assert unsignalled.not_gone(pids[:1]) == "1 process " + NOT_YET + states[0]
    assert unsignalled.not_gone(pids[:2]) == "2 processes " + NOT_YET + ", ".join(states[:2])
    assert unsignalled.not_gone(pids[:5]) == "5 processes " + NOT_YET + ", ".join(states[:5])
    assert unsignalled.not_gone(pids) == "7 processes " + NOT_YET + ", ".join(states[:5]) + " and 2 more"
    assert unsignalled.not_gone([GONE]) == "1 process " + NOT_YET + f"pid {GONE} (?, state ?)"


def test_what_a_close_left_is_one_error_line_with_the_time_since_the_first_sigkill(started, caplog):
    pids = sleepers(started, 2)
    left = unsignalled.close_incomplete("t.0", reversed(pids), time.monotonic() - 2.5)
    assert left == frozenset(pids)
    (line,) = records(caplog, "close_incomplete")
    assert (line.name, line.levelno) == ("executor.procs.containment", logging.ERROR)
    said = re.fullmatch(r'close_incomplete task=t\.0 reason="(2\.5\d*) s after the first SIGKILL, (.*)"',
                        line.getMessage())
    assert said is not None and 2.5 <= float(said[1]) < 5, line.getMessage()
    assert said[2] == unsignalled.not_gone(sorted(pids))


@needs_root
def test_only_a_process_this_user_may_not_signal_is_refused(started):
    mine, theirs = sleepers(started, 1) + sleepers(started, 1, user=STRANGER, group=STRANGER)
    assert unsignalled.refused([GONE, mine, theirs]) == []  # root may signal any
    with effective_user(65534):
        assert unsignalled.refused([GONE, theirs, mine]) == [theirs]
    assert asleep(mine) and asleep(theirs), "a look is no signal"


@needs_root
def test_processes_the_close_may_not_signal_are_one_error_line_and_none_no_line(started, caplog):
    theirs = sleepers(started, 2, user=STRANGER, group=STRANGER)
    unsignalled.report("t.0", theirs)
    assert records(caplog, "close_incomplete") == []
    with effective_user(65534):
        unsignalled.report("t.0", reversed(theirs))
        unsignalled.report_daemons("t.0", signal.SIGTERM, theirs[::-1])
    named = unsignalled.describe(theirs)
    assert f"uid {STRANGER})" in named
    why = "may not be signalled by this user (uid 65534: a setuid program took another user's id)"
    (closed,) = records(caplog, "close_incomplete")
    assert (closed.name, closed.levelno) == ("executor.procs.containment", logging.ERROR)
    assert closed.getMessage() == (f'close_incomplete task=t.0 reason="2 processes of the task {why} and are '
                                   f'left running: {named}"')
    (daemons,) = records(caplog, "daemons_unsignalled")
    assert (daemons.name, daemons.levelno) == ("executor.procs.containment", logging.ERROR)
    assert daemons.getMessage() == (
        f'daemons_unsignalled task=t.0 signal=SIGTERM reason="2 of the daemons the task\'s runs left {why}: '
        f'{named}" consequence="the stop does not wait for them; they are left running"')


@needs_root
def test_one_process_the_close_may_not_signal_is_one_process(started, caplog):
    theirs = sleepers(started, 1, user=STRANGER, group=STRANGER)
    with effective_user(65534):
        unsignalled.report("t.0", theirs)
    (line,) = records(caplog, "close_incomplete")
    assert line.getMessage().startswith('close_incomplete task=t.0 reason="1 process of the task may not')


@needs_root
def test_a_run_whose_top_a_debugger_traces_is_one_warning_naming_the_tracer(started, tmp_path, caplog):
    traced, free = sleepers(started, 2)
    tracer = subprocess.Popen([sys.executable, "-c", TRACER, str(traced)], cwd=tmp_path)
    started.append(tracer)
    wait_for(lambda: (tmp_path / "attached").exists(), 5, message="the tracer attached")
    unsignalled.say_traced("t.0", [("free", 0, free), ("q", 2, traced), ("gone", 1, GONE)])
    (line,) = records(caplog, "run_traced")
    assert (line.name, line.levelno) == ("executor.procs.containment", logging.WARNING)
    command = unsignalled.describe([tracer.pid]).split(" (", 1)[1].rsplit(", uid ", 1)[0]
    assert command.startswith(sys.executable)
    assert line.getMessage() == (
        f'run_traced task=t.0 process=q run=2 pid={traced} tracer="{tracer.pid} ({command})" reason="a debugger '
        'traces it: its end reaches the supervisor only once the tracer has taken it, so the run may be given up '
        'on after its SIGKILL"')


# what each line says of a cgroup: the close could not remove it (EBUSY), or its deadline cut it
SAYS = {"unremoved": (unsignalled.cgroup_left, "EBUSY", "cgroup_remove_failed", "error=EBUSY"),
        "cut": (unsignalled.cgroup_cut, "the deadline came", "cgroup_close_cut", 'reason="the deadline came"')}
BOUND = " once it can, within its own 10 s"  # the watchdog's bound, said of a cgroup it could not remove
THAWS = "thaws it (its SIGKILLed processes die only then), "


@pytest.mark.parametrize(("say", "watchdog", "frozen", "level", "consequence"), [
    ("unremoved", 77, False, logging.WARNING, f"the watchdog (pid 77), let go, kills what is left and removes it{BOUND}"),
    ("unremoved", 77, True, logging.ERROR, f"the watchdog (pid 77), let go, {THAWS}kills what is left and removes "
                                           f"it{BOUND}"),
    ("unremoved", None, False, logging.ERROR, "no watchdog runs to finish it: /cg/t and the processes still in it "
                                              "are left behind"),
    ("unremoved", None, True, logging.ERROR, "no watchdog runs to finish it: /cg/t and the processes still in it "
                                             "are left behind FROZEN, none thaws them"),
    ("cut", 77, False, logging.WARNING, "the watchdog (pid 77), let go, kills what is left and removes it"),
    ("cut", 77, True, logging.ERROR, f"the watchdog (pid 77), let go, {THAWS}kills what is left and removes it"),
    ("cut", None, False, logging.ERROR, "no watchdog runs to finish it (it could not start, or it exited): /cg/t, "
                                        "the cgroups below it and the processes still in them are left behind"),
    ("cut", None, True, logging.ERROR, "no watchdog runs to finish it (it could not start, or it exited): /cg/t, "
                                       "the cgroups below it and the processes still in them are left behind "
                                       "FROZEN, none thaws them"),
])
def test_a_cgroup_the_close_could_not_finish_is_the_watchdog_s_or_left(caplog, say, watchdog, frozen, level,
                                                                       consequence):
    function, problem, event, said = SAYS[say]
    function("t.0", "/cg/t", problem, watchdog, frozen)
    (line,) = records(caplog, event)
    assert (line.name, line.levelno) == ("executor.procs.containment", level)
    assert line.getMessage() == f'{event} task=t.0 cgroup=/cg/t {said} consequence="{consequence}"'
