"""The supervisor's kills with real processes: staged kills of whole trees, daemonized
grandchildren, leftovers, signal_all, close, and the watchdog. Every process a test learns
about is tracked and SIGKILLed at teardown if still alive; zombies count as gone."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from config.spec import LoggerSpec, LogMode, ProcessSpec
from executor.procs.supervisor import SpawnError
from tests.support import proc_scan
from tests.support.supervision import HANG_GUARD_SECS, Harness, Tracker, alive, all_gone, fake, read_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


# ---- kills ----


def test_staged_kill_of_a_tree_whose_grandchild_ignores_sigterm(harness, tmp_path):
    kids, daemon = tmp_path / "kids", tmp_path / "daemon"
    top = harness.spawn("tree", fake("--ignore-sigterm", "--children", 2, "--children-pid-file",
                                     kids, "--daemonize-child", "--daemon-ignore-sigterm",
                                     "--daemon-pid-file", daemon))
    pids = [top, *read_pids(kids), *read_pids(daemon)]
    harness.tracker.add(*pids)
    assert harness.sup.task_pids() == set(pids)
    assert harness.sup.signal_run("tree", 0, signal.SIGTERM) == 4
    time.sleep(0.1)  # this test is about time: SIGTERM is ignored for a while
    assert all(alive(p) for p in pids)
    assert harness.events.empty()
    assert harness.sup.signal_run("tree", 0, signal.SIGKILL) == 4
    event = harness.next_exit()
    assert event.status.signal == signal.SIGKILL
    wait_for(lambda: all_gone(pids), 10)
    assert harness.sup.task_pids() == set()


def test_daemonized_grandchild_is_reached_by_signal_run(harness, tmp_path):
    daemon = tmp_path / "daemon"
    top = harness.spawn("d", fake("--daemonize-child", "--daemon-pid-file", daemon))
    (dpid,) = read_pids(daemon)
    harness.tracker.add(dpid)
    assert os.getsid(dpid) != os.getsid(top)  # it left the run's session and group
    assert harness.sup.signal_run("d", 0, signal.SIGTERM) == 2
    assert harness.next_exit().status.signal == signal.SIGTERM
    wait_for(lambda: not alive(dpid), 10)


def test_leftovers_of_a_finished_run_are_killed_before_its_exit_is_posted(harness, tmp_path):
    kids, daemon = tmp_path / "kids", tmp_path / "daemon"
    harness.spawn("leaky", fake("--children", 2, "--children-pid-file", kids,
                                "--daemonize-child", "--daemon-ignore-sigterm",
                                "--daemon-pid-file", daemon, "--exit-after", 0.2, "--exit-code", 1))
    leftovers = [*read_pids(kids), *read_pids(daemon)]
    harness.tracker.add(*leftovers)
    event = harness.next_exit()
    assert event.status.exit_code == 1
    # SIGKILLed before the post (gone, a SIGKILL pending or exiting); a loaded host may take
    # a while to schedule their exits (a 0.5 s bound on that was the expected time, not a bound).
    assert all(proc_scan.is_killed(p) for p in leftovers), proc_scan.describe(leftovers)
    wait_for(lambda: all_gone(leftovers), 10, message="the leftovers gone")


def test_a_sigtermed_run_whose_top_exits_first_drains_until_sigkill_which_leaves_nothing(harness, tmp_path):
    """bash exits at SIGTERM; the fork-hopper it did not exec ignores SIGTERM. Its run drains
    (no exit posted, the hopper lives on), and the SIGKILL at the end of the grace ends it
    all, the hopper's next generations included, before the exit is posted."""
    hop, stop = tmp_path / "hop.pid", tmp_path / "hop.stop"
    harness.spawn("wrapped", fake("--ignore-sigterm", "--fork-hop", 30, "--hop-pid-file", hop,
                                  "--hop-stop-file", stop) + "; true")
    try:
        wait_for(hop.exists, 10, message="the hopper's first generation")
        harness.sup.signal_run("wrapped", 0, signal.SIGTERM)
        # the run drains, its hopper hops on: new generations (a fixed quiet time, 0.5 s, called
        # a live hopper a loaded host did not schedule meanwhile stopped)
        assert proc_scan.hopper_hops(hop), "the hopper stopped at its run's SIGTERM"
        assert harness.events.empty()
        harness.sup.signal_run("wrapped", 0, signal.SIGKILL)
        assert harness.next_exit().status.signal == signal.SIGTERM  # bash's own end
        assert proc_scan.hopper_quiet(hop, 0.2, within_secs=10), "the hopper outlived its run's SIGKILL"
    finally:
        proc_scan.stop_hopper(hop, stop)


def test_a_sigtermed_runs_exit_walks_no_other_runs_tree_and_the_orphans_once(harness, monkeypatch):
    """Whether a SIGTERMed run left anything is asked of the orphans alone (whatever its
    top left is reparented to the supervisor): a stop of N runs that walked every run's
    tree at each exit took N times as long (100 runs: 257 ms against 68). With nothing
    left, that one look is also the leftover kill's first pass (it was walked twice), and the
    orphans' list, with no process of the run on it, is walked no more (none was its root)."""
    from executor.procs import proctree

    others = {harness.spawn(f"other{i}", fake()) for i in range(3)}
    harness.spawn("stopped", fake())
    walks: list[list[int]] = []
    real_walk = proctree.walk

    def recording(roots, *args, **kwargs):
        roots = list(roots)
        if threading.current_thread() is not threading.main_thread():  # the reaper's, at the exit
            walks.append(roots)
        return real_walk(roots, *args, **kwargs)

    monkeypatch.setattr(proctree, "walk", recording)
    harness.sup.signal_run("stopped", 0, signal.SIGTERM)
    assert harness.next_exit().process == "stopped"
    assert not others & {pid for roots in walks for pid in roots}, "the exit walked the trees of runs still running"
    assert walks == [], f"an exit that left nothing walked {walks}"
    assert all(alive(pid) for pid in others)


def test_a_runs_exit_that_left_nothing_reads_no_other_runs_marker(harness, monkeypatch):
    """The exit of one run with nothing left behind (a stop's usual case) costs the same
    whatever the task's size: it built the marker of every live run to judge the orphans it
    had not found, so a stop of N runs was O(N^2) (500: 125,250 markers, a third of the
    reaper's time)."""
    from executor.procs.spawn import RunChild

    for i in range(20):
        harness.spawn(f"other{i}", "sleep 30")
    harness.spawn("stopped", "sleep 30")
    built: list[str] = []
    real = RunChild.marker_entry

    def counting(child):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not threading.main_thread():  # the reaper's, at the exit
            built.append(child.process)
        return real.fget(child)

    monkeypatch.setattr(RunChild, "marker_entry", property(counting))
    harness.sup.signal_run("stopped", 0, signal.SIGTERM)
    assert harness.next_exit().process == "stopped"
    assert not [name for name in built if name != "stopped"], built


def test_signal_all_reaches_every_run_and_no_other_task(harness, tmp_path, tracker):
    other = Harness(tmp_path / "other", tracker)
    try:
        stranger = other.spawn("s", fake())
        a = harness.spawn("a", fake())
        b = harness.spawn("b", fake())
        assert harness.sup.signal_all(signal.SIGKILL) == 2
        assert {harness.next_exit().pid, harness.next_exit().pid} == {a, b}
        assert alive(stranger)
        assert other.sup.task_pids() == {stranger}
    finally:
        other.sup.close()
    assert not alive(stranger)


def test_signal_of_a_finished_or_unknown_run_signals_nothing(harness):
    harness.spawn("done", "exit 0")
    harness.next_exit()
    survivor = harness.spawn("alive", fake())
    assert harness.sup.signal_run("done", 0, signal.SIGKILL) == 0
    assert harness.sup.signal_run("nope", 7, signal.SIGKILL) == 0
    assert alive(survivor)


def test_close_leaves_nothing(tmp_path, tracker):
    h = Harness(tmp_path / "sandbox", tracker)
    kids, daemon = tmp_path / "kids", tmp_path / "daemon"
    pids = [h.spawn("t", fake("--ignore-sigterm", "--children", 3, "--children-pid-file", kids)),
            h.spawn("d", fake("--daemonize-child", "--daemon-ignore-sigterm",
                              "--daemon-pid-file", daemon)),
            h.spawn("r", fake("--stdout-bytes", 1000), logger=LoggerSpec(mode=LogMode.ROTATE))]
    pids += read_pids(kids) + read_pids(daemon)
    tracker.add(*pids)
    watchdog = h.sup.watchdog_pid
    started = time.monotonic()
    h.sup.close()
    assert time.monotonic() - started < HANG_GUARD_SECS  # it never waits out a process
    assert all_gone(pids)
    assert not alive(watchdog)
    names = {t.name for t in threading.enumerate()}
    assert "stoker-reaper" not in names
    assert not any(n.startswith("stoker-logpump") for n in names)
    h.sup.close()  # idempotent
    with pytest.raises(SpawnError, match="closed"):
        h.sup.spawn(ProcessSpec("late", "true"), 0)


def test_a_supervisor_a_failed_test_left_open_is_closed_by_its_tracker(tmp_path):
    """A test that failed before its `h.sup.close()` (test_close_leaves_nothing when a pid
    file was late): the tracker killed the pids it was given, but its run's daemonized child,
    the watchdog and the supervisor's threads lived on for the rest of the session, and this
    process stayed in the task's cgroup, so every later supervisor in it ran without one
    ("already keeps another task"). The tracker closes every supervisor made with it."""
    tracker, leftover = Tracker(), Tracker()
    try:
        h = Harness(tmp_path / "sandbox", tracker)
        daemon = tmp_path / "daemon"
        h.spawn("d", fake("--daemonize-child", "--daemon-ignore-sigterm", "--daemon-pid-file", daemon))
        (child,) = read_pids(daemon)
        leftover.add(child)  # not the tracker's: a pid file read after the failure
        watchdog, cgroup = h.sup.watchdog_pid, h.sup.cgroup
    finally:
        tracker.cleanup()  # the test "failed" here, its supervisor open
    try:
        assert not alive(child) and not alive(watchdog)
        assert cgroup is None or not os.path.exists(cgroup)
        assert "stoker-reaper" not in {t.name for t in threading.enumerate()}
    finally:
        h.sup.close()
        leftover.cleanup()


def test_the_watchdog_is_markerless_ignores_polite_signals_and_is_restarted(harness):
    first = harness.sup.watchdog_pid
    entries = Path(f"/proc/{first}/environ").read_bytes().split(b"\0")  # its script among them
    assert not [e for e in entries if e.startswith((b"STOKER_TASK_MARKER=", b"STOKER_RUN_MARKER="))]
    assert os.getsid(first) == first  # its own session: no terminal signal reaches it
    polite = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    wait_for(lambda: all(_ignores(first, sig) for sig in polite), 10,
             message="the watchdog's trap is installed")
    for sig in polite:
        os.kill(first, sig)
    time.sleep(0.1)  # this part is about time: ignored signals leave it running
    assert alive(first) and harness.sup.watchdog_pid == first
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: harness.sup.watchdog_pid != first and alive(harness.sup.watchdog_pid), 10)


def _ignores(pid: int, sig: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False
