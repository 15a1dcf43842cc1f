"""The supervisor with real processes: spawn, exits, logs, staged kills, leaks, the watchdog.

Every process a test learns about is tracked by (pid, start time) and SIGKILLed at teardown
if it is somehow still alive, so a failing test leaks nothing. Zombies count as gone.
Nothing here waits for children itself while a Supervisor is alive (its reaper reaps every
child of this process).
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from config.spec import LogDestination, LoggerSpec, LogMode, ProcessSpec
from executor.local.attempts import archive_logs
from executor.procs import proctree
from executor.procs.reaper import Reaper
from executor.procs.supervisor import SpawnError
from tests.support.supervision import Harness, fds_on
from tests.support.waiting import wait_for

SUPPORT = Path(__file__).resolve().parents[1] / "support"
FAKE = SUPPORT / "fake_task.py"
# Wall-clock bounds below only guard against a hang (a process waited out: they sleep 30 s);
# a loaded machine can delay any of them by a second or more. bench/ measures the speed.
HANG_GUARD_SECS = 10.0
MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(30)


def fake(*args: object) -> str:
    return shlex.join([sys.executable, str(FAKE), *map(str, args)])


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def all_gone(pids) -> bool:  # type: ignore[no-untyped-def]
    return not any(alive(p) for p in pids)


def read_pids(path: Path, timeout_secs: float = 5) -> list[int]:
    wait_for(path.exists, timeout_secs, message=f"{path} to appear")
    return [int(x) for x in path.read_text().split()]


# ---- spawn and exit status ----


@pytest.mark.parametrize("cmdline, code, sig", [
    ("exit 0", 0, None),
    ("exit 3", 3, None),
    ("kill -TERM $$", None, signal.SIGTERM),
])
def test_exit_status_is_posted(harness, cmdline, code, sig):
    pid = harness.spawn("p", cmdline)
    event = harness.next_exit()
    assert (event.process, event.run, event.pid) == ("p", 0, pid)
    assert (event.status.exit_code, event.status.signal) == (code, sig)


def test_runs_are_forked_off_the_main_thread_whose_children_list_holds_the_orphans(harness, tmp_path):
    """The kernel lists a child under the thread that forked it and gives every orphan to the
    main thread, whose list alone is read at each exit. Forked on the main thread (as `stoker
    run`'s owner asks), each run was read again at each exit: 0.4 ms per exit with 500 runs.
    A run is not on that list now; a daemon a run left is; a run that exits at once is still
    reaped and posted as itself."""
    assert threading.current_thread() is threading.main_thread()
    sleeper = harness.spawn("sleeper", "exec sleep 60")
    daemon_file = tmp_path / "daemon.pid"
    left = harness.spawn("left", fake("--daemonize-child", "--daemon-pid-file", daemon_file, "--exit-after", 0))
    assert harness.next_exit().pid == left
    harness.spawn("quick", "exit 7")
    quick = harness.next_exit()
    assert (quick.process, quick.status.exit_code) == ("quick", 7)
    (daemon,) = read_pids(daemon_file)
    harness.tracker.add(daemon)
    main = threading.main_thread().native_id
    wait_for(lambda: daemon in proctree.children(main, leader_only=True), 5, message="the daemon adopted")
    assert sleeper not in proctree.children(main, leader_only=True)
    assert sleeper in proctree.children(os.getpid())  # another thread's child


def test_a_run_gets_the_signal_mask_of_the_thread_that_asked_for_it(harness):
    """The fork thread takes the asking thread's mask for each fork: a mask it was made with
    (a thread inherits its creator's) reaches no later run."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        held = harness.spawn("held", "exec sleep 60")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    free = harness.spawn("free", "exec sleep 60")

    def blocked(pid: int) -> bool:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        return bool(int(fields["SigBlk"], 16) & (1 << (signal.SIGUSR2 - 1)))

    assert (blocked(held), blocked(free)) == (True, False)


def test_logs_land_in_run_directories(harness):
    harness.spawn("web", "echo out-0; echo err-0 >&2")
    harness.next_exit()
    harness.spawn("web", "echo out-1; echo err-1 >&2", run=1)
    harness.next_exit()
    assert harness.log("web", 0).read_text() == "out-0\n"
    assert harness.log("web", 0, "stderr").read_text() == "err-0\n"
    assert harness.log("web", 1).read_text() == "out-1\n"
    assert harness.log("web", 1, "stderr").read_text() == "err-1\n"


def test_runs_get_sandbox_cwd_home_and_markers(harness):
    harness.spawn("env", fake("--print-env", "HOME", "--print-env", "STOKER_TASK_MARKER",
                              "--print-env", "STOKER_RUN_MARKER", "--exit-after", 0) + "; pwd")
    assert harness.next_exit().status.exit_code == 0
    marker = harness.sup.marker
    assert harness.log("env").read_text().splitlines() == [
        f"HOME={harness.sandbox}", f"STOKER_TASK_MARKER={marker}",
        f"STOKER_RUN_MARKER={marker}/env/0", str(harness.sandbox),
    ]


@pytest.mark.parametrize("cmdline, code, message", [
    ("./not-executable.sh", 126, "Permission denied"),
    ("no-such-command-xyz", 127, "command not found"),
])
def test_exec_failure_reaches_the_stderr_log(harness, cmdline, code, message):
    (harness.sandbox / "not-executable.sh").write_text("echo hi\n")
    harness.spawn("bad", cmdline)
    assert harness.next_exit().status.exit_code == code
    assert message in harness.log("bad", stream="stderr").read_text()


def test_restart_after_immediate_exit_is_fast_and_numbered(harness):
    pids = []
    latencies = []
    for run in range(5):
        pids.append(harness.spawn("quick", "true", run=run))
        event = harness.next_exit()
        assert (event.run, event.pid, event.status.exit_code) == (run, pids[-1], 0)
        latencies.append(time.monotonic() - event.at)
    assert len(set(pids)) == 5
    assert sorted(p.name for p in (harness.sandbox / ".logs" / "quick").iterdir()) == \
        ["0", "1", "2", "3", "4"]
    # Sanity only (the bench measures it): posting an exit takes no sleeps or polling.
    assert min(latencies) < 0.5


def test_spawning_a_live_run_twice_is_refused(harness):
    pid = harness.spawn("twice", fake())
    with pytest.raises(SpawnError, match=f"already running \\(pid {pid}\\)"):
        harness.spawn("twice", fake())


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
    wait_for(lambda: all_gone(pids), 1)
    assert harness.sup.task_pids() == set()


def test_daemonized_grandchild_is_reached_by_signal_run(harness, tmp_path):
    daemon = tmp_path / "daemon"
    top = harness.spawn("d", fake("--daemonize-child", "--daemon-pid-file", daemon))
    (dpid,) = read_pids(daemon)
    harness.tracker.add(dpid)
    assert os.getsid(dpid) != os.getsid(top)  # it left the run's session and group
    assert harness.sup.signal_run("d", 0, signal.SIGTERM) == 2
    assert harness.next_exit().status.signal == signal.SIGTERM
    wait_for(lambda: not alive(dpid), 1)


def test_leftovers_of_a_finished_run_are_killed_before_its_exit_is_posted(harness, tmp_path):
    kids, daemon = tmp_path / "kids", tmp_path / "daemon"
    harness.spawn("leaky", fake("--children", 2, "--children-pid-file", kids,
                                "--daemonize-child", "--daemon-ignore-sigterm",
                                "--daemon-pid-file", daemon, "--exit-after", 0.2, "--exit-code", 1))
    leftovers = [*read_pids(kids), *read_pids(daemon)]
    harness.tracker.add(*leftovers)
    event = harness.next_exit()
    assert event.status.exit_code == 1
    # SIGKILLed before the post; a moment may pass before they are zombies.
    wait_for(lambda: all_gone(leftovers), 0.5)


def test_a_sigtermed_run_whose_top_exits_first_drains_until_sigkill_which_leaves_nothing(harness, tmp_path):
    """bash exits at SIGTERM; the fork-hopper it did not exec ignores SIGTERM. Its run drains
    (no exit posted, the hopper lives on), and the SIGKILL at the end of the grace ends it
    all, the hopper's next generations included, before the exit is posted."""
    from tests.support import proc_scan

    hop, stop = tmp_path / "hop.pid", tmp_path / "hop.stop"
    harness.spawn("wrapped", fake("--ignore-sigterm", "--fork-hop", 30, "--hop-pid-file", hop,
                                  "--hop-stop-file", stop) + "; true")
    try:
        wait_for(hop.exists, 10, message="the hopper's first generation")
        harness.sup.signal_run("wrapped", 0, signal.SIGTERM)
        time.sleep(0.2)  # this test is about time: the run drains, its hopper hops on
        assert harness.events.empty() and not proc_scan.hopper_quiet(hop, 0.5)  # a new generation within 0.5 s
        harness.sup.signal_run("wrapped", 0, signal.SIGKILL)
        assert harness.next_exit().status.signal == signal.SIGTERM  # bash's own end
        assert proc_scan.hopper_quiet(hop, 0.2, within_secs=2), "the hopper outlived its run's SIGKILL"
    finally:
        proc_scan.stop_hopper(hop, stop)


def test_a_sigtermed_runs_exit_walks_no_other_runs_tree_and_the_orphans_once(harness, monkeypatch):
    """Whether a SIGTERMed run left anything is asked of the orphans alone (whatever its
    top left is reparented to the supervisor): a stop of N runs that walked every run's
    tree at each exit took N times as long (100 runs: 257 ms against 68). With nothing
    left, that one walk is also the leftover kill's first pass (it was walked twice)."""
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
    assert len(walks) == 1, f"the orphans were walked {len(walks)} times at one exit"
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


def test_the_watchdog_is_markerless_ignores_polite_signals_and_is_restarted(harness):
    first = harness.sup.watchdog_pid
    assert b"STOKER_" not in Path(f"/proc/{first}/environ").read_bytes()
    assert os.getsid(first) == first  # its own session: no terminal signal reaches it
    polite = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    wait_for(lambda: all(_ignores(first, sig) for sig in polite), 2,
             message="the watchdog's trap is installed")
    for sig in polite:
        os.kill(first, sig)
    time.sleep(0.1)  # this part is about time: ignored signals leave it running
    assert alive(first) and harness.sup.watchdog_pid == first
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: harness.sup.watchdog_pid != first and alive(harness.sup.watchdog_pid), 2)


def _ignores(pid: int, sig: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


# ---- logs: big output, rotation, destinations ----


def test_100_mb_of_stdout_in_file_mode(harness):
    harness.spawn("big", fake("--stdout-bytes", 100_000_000, "--exit-after", 0))
    assert harness.next_exit(20).status.exit_code == 0
    assert harness.log("big").stat().st_size == 100_000_000


def size_of(path: Path) -> int | None:
    """None while the log pump, still draining and rotating, has `path` renamed away."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def test_100_mb_of_stdout_in_rotate_mode(harness):
    spec = LoggerSpec(mode=LogMode.ROTATE, log_size_bytes=MiB, backups=3)
    harness.spawn("big", fake("--stdout-bytes", 100_000_000, "--exit-after", 0), logger=spec)
    assert harness.next_exit(20).status.exit_code == 0
    directory = harness.log("big").parent
    expected_tail = 100_000_000 % MiB
    wait_for(lambda: size_of(harness.log("big")) == expected_tail, 10)
    sizes = {p.name: p.stat().st_size for p in directory.iterdir()}
    assert sizes == {"stdout": expected_tail, "stdout.1": MiB, "stdout.2": MiB,
                     "stdout.3": MiB, "stderr": 0}


def test_rotate_keeps_both_streams_and_the_newest_bytes(harness):
    spec = LoggerSpec(mode=LogMode.ROTATE, log_size_bytes=10, backups=2)
    harness.spawn("r", "printf 0123456789abcdefghijXYZ; printf oops >&2", logger=spec)
    harness.next_exit()
    wait_for(lambda: harness.log("r", stream="stderr").read_bytes() == b"oops", 2)
    wait_for(lambda: harness.log("r").read_bytes() == b"XYZ", 2)
    assert (harness.log("r").parent / "stdout.1").read_bytes() == b"abcdefghij"
    assert (harness.log("r").parent / "stdout.2").read_bytes() == b"0123456789"


def test_console_and_both_destinations_copy_to_the_supervisor_output(harness, capfd):
    harness.spawn("c", "echo to-console", logger=LoggerSpec(destination=LogDestination.CONSOLE))
    harness.next_exit()
    harness.spawn("b", "echo to-both", logger=LoggerSpec(destination=LogDestination.BOTH))
    harness.next_exit()
    wait_for(lambda: harness.log("b").exists() and harness.log("b").read_text() == "to-both\n", 2)
    harness.spawn("n", "echo to-nowhere", logger=LoggerSpec(destination=LogDestination.NONE))
    harness.next_exit()
    harness.sup.close()  # drains the pump
    out = capfd.readouterr().out
    assert "to-console" in out and "to-both" in out and "to-nowhere" not in out
    assert not harness.log("c").exists() and not harness.log("n").exists()


# ---- spawn errors ----


def test_sandbox_that_cannot_be_created(tmp_path, tracker):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    h = Harness(blocker / "sandbox", tracker, create=False)
    try:
        with pytest.raises(SpawnError, match=r"cannot create the log directory .*"
                                             r"Not a directory \(ENOTDIR\)"):
            h.spawn("p", "true")
    finally:
        h.sup.close()


def test_log_file_that_cannot_be_opened(harness):
    harness.log("p").mkdir(parents=True)  # a directory where the stdout file should be
    with pytest.raises(SpawnError, match=r"cannot open the log file .*stdout: "
                                         r"Is a directory \(EISDIR\)"):
        harness.spawn("p", "true")


def test_a_nul_byte_in_a_cmdline_is_a_spawn_error(harness):
    with pytest.raises(SpawnError, match="NUL byte"):
        harness.spawn("p", "echo a\0b")


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "..", "."])
def test_process_name_that_would_escape_the_sandbox_is_refused(harness, name):
    with pytest.raises(SpawnError, match="outside"):
        harness.spawn(name, "true")


def test_symlinked_log_dir_that_leads_outside_is_refused(harness, tmp_path):
    (harness.sandbox / ".logs").mkdir()
    (harness.sandbox / ".logs" / "sneaky").symlink_to(tmp_path)
    with pytest.raises(SpawnError, match="outside"):
        harness.spawn("sneaky", "true")


# ---- log directories: SANDBOX/.logs is kept open between spawns (more in test_log_root.py) ----




def _exited(h: Harness, run: int) -> None:
    event = h.next_exit()
    assert event.run == run and event.status.exit_code == 0


def test_a_process_log_directory_swapped_for_a_symlink_after_a_run(tmp_path, tracker):
    outside = tmp_path / "outside"
    outside.mkdir()
    h = Harness(tmp_path / "sandbox", tracker)
    try:
        h.spawn("p", "echo first", run=0)
        _exited(h, 0)
        process = h.sandbox / ".logs" / "p"
        process.rename(tmp_path / "moved")
        process.symlink_to(outside)
        with pytest.raises(SpawnError, match="outside"):
            h.spawn("p", "echo second", run=1)
        assert not any(outside.iterdir())
        process.unlink()
        h.spawn("p", "echo third", run=2)
        _exited(h, 2)
        wait_for(lambda: h.log("p", 2).read_text() == "third\n", 5, message="run 2's stdout")
        assert (tmp_path / "moved" / "0" / "stdout").read_text() == "first\n"
    finally:
        h.sup.close()
    assert fds_on(h.sandbox / ".logs") == 0  # close() closed the kept fd


def test_each_attempt_writes_to_its_own_logs(tmp_path, tracker):
    """As `stoker run` does between attempts: close the supervisor, archive `.logs`, start
    a new supervisor in the same sandbox; run numbers start again at 0."""
    sandbox = tmp_path / "sandbox"
    for attempt in ("first", "second"):
        h = Harness(sandbox, tracker)
        try:
            h.spawn("p", f"echo {attempt}", run=0)
            _exited(h, 0)
        finally:
            h.sup.close()
        if attempt == "first":
            archive_logs(sandbox)
    assert (sandbox / ".logs.attempt-0" / "p" / "0" / "stdout").read_text() == "first\n"
    assert (sandbox / ".logs" / "p" / "0" / "stdout").read_text() == "second\n"


def test_close_while_spawning_leaves_no_fd_open(tmp_path, tracker):
    """Spawns racing close(): each one either starts or is refused, and no `.logs` fd is
    left open afterwards."""
    h = Harness(tmp_path / "sandbox", tracker)
    results: list[object] = []

    def spawn_many() -> None:
        for run in range(200):
            try:
                results.append(h.spawn("p", "true", run=run))
            except SpawnError as e:
                results.append(e)

    thread = threading.Thread(target=spawn_many)
    thread.start()
    wait_for(lambda: len(results) > 0, 5, message="a first spawn")
    h.sup.close()
    thread.join(10)
    assert not thread.is_alive()
    assert all(isinstance(r, int) or "closed" in str(r) for r in results), results
    assert fds_on(h.sandbox / ".logs") == 0


# ---- run_command ----


def test_run_command_reports_exit_and_output(harness):
    result = harness.sup.run_command("echo hello; echo oops >&2; exit 3", 5)
    assert (result.exit_code, result.signal, result.timed_out, result.error) == (3, None, False, None)
    assert result.output == "hello\noops\n"
    assert harness.events.empty()  # health commands are not runs


def test_run_command_keeps_the_last_kib_of_output(harness):
    result = harness.sup.run_command("head -c 3000 /dev/zero | tr '\\0' a; printf END", 5)
    assert result.exit_code == 0
    assert len(result.output) == 1024 and result.output.endswith("aEND")


def test_run_command_timeout_kills_a_lingering_grandchild(harness, tmp_path):
    bg, daemon = tmp_path / "bg", tmp_path / "daemon"
    command = (f"sleep 30 & echo $! > {bg}; "
               f"{fake('--daemonize-child', '--daemon-pid-file', daemon, '--exit-after', 0)}; "
               f"sleep 30")
    started = time.monotonic()
    result = harness.sup.run_command(command, 0.5)
    assert time.monotonic() - started < HANG_GUARD_SECS  # cut off, not the sleeps' 30 s
    assert result.timed_out and result.signal == signal.SIGKILL
    pids = read_pids(bg) + read_pids(daemon)
    harness.tracker.add(*pids)
    wait_for(lambda: all_gone(pids), 1)


def test_run_command_runs_in_the_sandbox_with_the_task_env(harness):
    result = harness.sup.run_command('pwd; echo "$STOKER_TASK_MARKER"', 5)
    assert result.output.split() == [str(harness.sandbox), harness.sup.marker]


def test_run_command_from_another_thread_while_runs_exit(harness):
    results = []
    thread = threading.Thread(target=lambda: results.extend(
        harness.sup.run_command(f"exit {i}", 5).exit_code for i in range(5)))
    thread.start()
    for run in range(5):
        harness.spawn("p", "exit 0", run=run)
        assert harness.next_exit().run == run
    thread.join(10)
    assert results == [0, 1, 2, 3, 4]


# ---- the supervising process dies ----


def test_kill_9_of_the_supervising_process_leaves_no_survivor(tmp_path, tracker):
    child = subprocess.Popen([sys.executable, str(SUPPORT / "supervise_child.py"),
                              str(tmp_path / "sandbox")], stdout=subprocess.PIPE, text=True)
    try:
        line = _readline_within(child, 15)
        info = json.loads(line)
        pids, watchdog = info["pids"], info["watchdog"]
        tracker.add(*pids, watchdog)
        assert len(pids) == 6 and all(alive(p) for p in pids)
        child.kill()
        child.wait(5)
        wait_for(lambda: all_gone(pids), 1, message="every task process gone")
        wait_for(lambda: not alive(watchdog), 2, message="the watchdog exited")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        child.stdout.close()


def _readline_within(proc: subprocess.Popen, timeout_secs: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_secs)
    assert box and box[0], f"supervise_child printed nothing within {timeout_secs} s"
    return box[0]



def test_a_closed_supervisor_is_let_go_by_the_process_wide_reaper(tmp_path, tracker):
    """Its orphan hook was never removed (a bound method told apart by identity): each
    `stoker run` attempt's supervisor, with its environment, containment and watchdog
    keeper, stayed for the rest of the process (7.5 KiB an attempt) and was called after
    every orphan reaped. Held by another user (a next attempt's supervisor), the reaper's
    fork thread lives on, idle: it kept its last call, a closure on the closed supervisor."""
    import gc
    import weakref

    other = Reaper.acquire()  # the process-wide reaper and its fork thread outlive this supervisor
    try:
        h = Harness(tmp_path / "sandbox", tracker)
        h.spawn("a", "true")
        assert h.next_exit().status.exit_code == 0
        h.sup.close()
        closed = weakref.ref(h.sup)
        del h
        gc.collect()
        assert closed() is None
    finally:
        other.release()
