"""The supervisor with real processes: spawn, exits, spawn errors, run_command, and what
happens when the supervising process dies. Kills and the watchdog are in
test_supervisor_kills.py, logs in test_supervisor_logs.py.

Every process a test learns about is tracked by (pid, start time) and SIGKILLed at teardown
if it is somehow still alive, so a failing test leaks nothing. Zombies count as gone.
Nothing here waits for children itself while a Supervisor is alive (its reaper reaps every
child of this process)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from executor.procs import proctree
from executor.procs.reaper import Reaper
from executor.procs.supervisor import SpawnError
from tests.support.supervision import HANG_GUARD_SECS, SUPPORT, Harness, alive, all_gone, fake, read_pids
from tests.support.waiting import readline_within, wait_for

pytestmark = pytest.mark.timeout(30)


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


def test_run_command_reads_output_past_what_the_pipe_holds_as_it_comes(harness):
    """More output than a pipe holds (64 KiB): read while the command runs, or the command
    would block on its write until the timeout killed it."""
    result = harness.sup.run_command("head -c 300000 /dev/zero | tr '\\0' a; printf END", 10)
    assert (result.exit_code, result.timed_out) == (0, False), result
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
    wait_for(lambda: all_gone(pids), 10)


def test_run_command_timeout_counts_from_the_command_start_not_the_wait_to_fork(harness):
    # Another thread holds the fork (as the supervisor's own fork does while its container
    # is throttled) for longer than the command's timeout, counted from the call: that wait is
    # not the command's time, so `exit 0` is not timed out. The timeout is a generous bound (a
    # loaded host once took more than the 0.4 s it was to run `exit 0`), and the hold outlasts
    # it by construction (it was a fixed 0.5 s from before the call: a test thread the host
    # scheduled late saw less than the timeout of it).
    timeout_secs = 5.0
    reaper = Reaper.acquire()
    held, calling = threading.Event(), threading.Event()
    started = [0.0]

    def hold() -> None:
        with reaper.forking():
            held.set()
            calling.wait(10)
            time.sleep(max(0.0, started[0] + timeout_secs + 0.1 - time.monotonic()))  # about time

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        started[0] = time.monotonic()
        calling.set()
        result = harness.sup.run_command("exit 0", timeout_secs)
        assert time.monotonic() - started[0] > timeout_secs  # it waited past its timeout for the fork
        assert not result.timed_out and result.exit_code == 0, result
    finally:
        calling.set()
        holder.join(20)
        reaper.release()


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
        line = readline_within(child, 15)
        info = json.loads(line)
        pids, watchdog = info["pids"], info["watchdog"]
        tracker.add(*pids, watchdog)
        assert len(pids) == 6 and all(alive(p) for p in pids)
        child.kill()
        child.wait(5)
        wait_for(lambda: all_gone(pids), 10, message="every task process gone")
        wait_for(lambda: not alive(watchdog), 10, message="the watchdog exited")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        child.stdout.close()



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


def test_a_command_forked_as_the_checks_stop_is_gone_when_the_stop_returns(harness, monkeypatch):
    """`stop_commands` (the task's end) came while a health command was being forked: it
    saw no command yet and returned at once, and the command, killed a moment later by the
    thread that forked it, was still alive when the owner went on to report the task's end.
    Now a stop waits for a fork under way, then kills and waits for what it made."""
    from executor.procs import spawn

    forked, stop_returned = threading.Event(), threading.Event()
    pids: list[int] = []
    real = spawn.fork_exec

    def slow_fork_exec(*args, **kw):  # type: ignore[no-untyped-def]
        popen = real(*args, **kw)
        pids.append(popen.pid)
        harness.tracker.add(popen.pid)
        forked.set()
        stop_returned.wait(0.2)  # the stop's moment: between the fork and its registration
        return popen

    monkeypatch.setattr(spawn, "fork_exec", slow_fork_exec)
    results = []
    thread = threading.Thread(target=lambda: results.append(harness.sup.run_command("sleep 30", 30)))
    thread.start()
    try:
        assert forked.wait(HANG_GUARD_SECS)
        assert harness.sup.stop_commands(HANG_GUARD_SECS)  # a bound: it returns once the command is reaped
        assert not alive(pids[0]), "the command outlived the stop"
    finally:
        stop_returned.set()
        thread.join(HANG_GUARD_SECS)
    assert results[0].signal == signal.SIGKILL
    after = harness.sup.run_command("echo started", 5)  # none starts after the stop
    assert (after.exit_code, after.output) == (None, "") and after.error, after
