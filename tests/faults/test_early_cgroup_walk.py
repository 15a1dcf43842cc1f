"""An early start's runs taken into the task's cgroup (executor/procs/cgrouplife.py,
`take_in`), against runs that leave the walk's reach: a fork-hopper's generations (each
forks the next and exits, so each next one re-parents to `stoker run`, the subreaper, out
of the early run's subtree), and a run's child that exits as the walk lists it.

The hopper runs in a pids cgroup of its own with pids.max 200 (tests/support/limits.py),
and every process, cgroup and hopper a test starts is gone at its end, failed or not. A pid
the walk listed, reaped and handed to another process before its move, is left alone (a
hand-on the host's other processes keep from the test fails it, naming the holder: no skip)."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import pidnames, proc_scan
from tests.support.earlyjob import early_run, kept_then_hooked, planned, write
from tests.support.importhook import patched_at_load
from tests.support.limits import pids_cgroup
from tests.support.shellwords import fake_sh, in_aurora
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

# The task's cgroup is made (`begin`) once the hopper hops (its generations out of the
# early run's subtree, outside), and the walk (the early start's, which lists the orphans
# too, or the supervisor's) holds its first move of a generation (an orphan of `stoker
# run`'s) until that one has hopped: the move meets a process gone or exiting, and the next
# one is this process's child, outside.
HOLD_A_HOP = """
    def _patch(module):
        begin, real, held = module.begin, module.cgroups.TaskCgroup.take_in, []

        def begin_once_it_hops(*args):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not os.path.exists(HOP):
                time.sleep(0.001)
            begin(*args)

        def take_in(self, pid, *args):
            if not held and _generation(pid):
                held.append(pid)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _stat(pid)[:1] not in ([], ["Z"], ["X"]):
                    time.sleep(0.001)
                with open(HELD, "w") as out:
                    out.write(str(pid))
            return real(self, pid, *args)

        module.begin = begin_once_it_hops
        module.cgroups.TaskCgroup.take_in = take_in

    def _stat(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rpartition(")")[2].split()
        except OSError:
            return []

    def _generation(pid):  # an orphan of this process's: a generation (not the run, its child too)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                hopper = b"\\0--fork-hop\\0" in f.read()
        except OSError:
            return False
        return hopper and _stat(pid)[1:2] == [str(os.getpid())]
"""


def _stoker_lines(pid: int) -> list[str]:
    """The `stoker-*` cgroups /proc/PID/cgroup names (lines), [] when it is gone."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return []
    return [line for line in text.splitlines() if "/stoker-" in line and "/stoker-limits-" not in line]


def _planned(tmp_path: Path, config: Path, enter: tuple[str, ...], hop: Path, stop: Path) -> None:
    """A first `stoker run` of `config` (its plan kept for the early start of the next),
    stopped once running, its hopper stopped and its files gone."""
    try:
        planned(tmp_path, config, launcher=enter)
    finally:
        proc_scan.stop_hopper(hop, stop)
    stop.unlink(missing_ok=True)
    hop.unlink(missing_ok=True)  # `begin` waits for the next hopper's first generation


@contextlib.contextmanager
def _hopper_rerun(tmp_path: Path, config: Path, hop: Path, stop: Path, patch: str, *,
                  killed: bool = False) -> Iterator[StokerProcess]:
    """In a pids cgroup of pids.max 200: `config` run once (its plan kept), then again (an
    early start) with `patch` (`patched_at_load` of cgrouplife's) as its sitecustomize; the
    second run, stopped afterwards (`killed`: closed only, SIGKILLed by the test or held past
    a SIGTERM: the early start's), its leftovers killed and its hopper stopped."""
    with pids_cgroup() as pids:
        (pids / "pids.max").write_text("200")
        enter = ("/bin/sh", "-c", f'echo $$ > {pids}/cgroup.procs && exec "$@"', "sh")
        _planned(tmp_path, config, enter, hop, stop)
        env = _hooked(tmp_path, patched_at_load("executor.procs.cgrouplife", patch))
        proc, sandbox = early_run(tmp_path, config, "again", env=env, launcher=enter)
        try:
            yield proc
        finally:
            if killed:
                proc.close()
            else:
                proc.sigterm_and_close()
            kill_leftovers(task_pids(sandbox))
            proc_scan.stop_hopper(hop, stop)


def _hooked(tmp_path: Path, source: str) -> dict[str, str]:
    """The environment of a `stoker run` with `source` (`patched_at_load`) as its sitecustomize."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(source)
    return {"PYTHONPATH": f"{hook}:{REPO}"}


def _generations(hop: Path, count: int = 10) -> list[tuple[int, list[str]]]:
    """`count` generations of the hopper writing `hop`, alive as read, each with the
    `stoker-*` cgroups it is in (fewer when it does not hop so many within 10 s)."""
    seen: list[tuple[int, list[str]]] = []
    deadline = time.monotonic() + 10
    while len(seen) < count and time.monotonic() < deadline:
        for pid in pidnames.pid_file(hop):  # named before its cgroups are read, judged after
            found = _stoker_lines(pid)
            if pidnames.is_live(pid) and (pid, found) not in seen:
                seen.append((pid, found))
    return seen


def _both(first: str, second: str) -> str:
    """The source of two patches (`patched_at_load`'s, both indented by 4) as one."""
    return (first.replace("def _patch(module):", "def _patch_first(module):")
            + second.replace("def _patch(module):", "def _patch_second(module):")
            + "\n    def _patch(module):\n        _patch_first(module)\n        _patch_second(module)\n")


def _hopper_line(hop: Path, stop: Path, sleep: int) -> str:
    """A run: a shell whose background child starts the hopper (so that the run itself, also
    a child of `stoker run`, is no generation of it), then `exec sleep SLEEP`. Each generation
    lives 50 ms: long enough for a walk's move of one it listed to meet it alive, so that
    these tests tell what the walk lists (which generation it moves, racing a hopper that
    forks at once, is chance: a loaded host left one outside now and then)."""
    return fake_sh("--fork-hop", 60, "--hop-pid-file", hop, "--hop-stop-file", stop,
                   "--hop-every", 0.05) + f" & exec sleep {sleep}"


def test_a_fork_hoppers_generation_that_hops_as_it_is_moved_leaves_the_next_one_to_the_next_pass(tmp_path):
    # Its next generation is this process's child, out of the early run's subtree: a walk
    # from the runs and the orphans listed once found nothing new and left it (and every
    # generation after it) outside the task's cgroup, whose kill it then outlives.
    hop, stop, held = tmp_path / "hop.pid", tmp_path / "hop.stop", tmp_path / "held"
    config = write(tmp_path, f"Process(name='hop', cmdline='{in_aurora(_hopper_line(hop, stop, 1018))}')")
    patch = HOLD_A_HOP.replace("HELD", repr(str(held))).replace("HOP", repr(str(hop)))
    with _hopper_rerun(tmp_path, config, hop, stop, patch) as proc:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
        assert "process_adopted" in proc.stderr(), proc.stderr()
        task = _stoker_lines(proc.pid)
        assert task, proc.stderr()
        wait_for(held.exists, 10, message="the walk's move of a generation that hopped")
        seen = _generations(hop)
        assert len(seen) == 10 and all(found == task for _, found in seen), (task, seen)


# `begin` waits until the hopper hops (its generations orphans of `stoker run`'s, out of the
# early run's subtree), then holds `stoker run` once its move is over, before the supervisor
# loads: a kill -9 then leaves the task's cgroup to the early start's watchdog alone.
HOLD_AFTER_THE_MOVE = """
    def _patch(module):
        begin = module.begin

        def begin_once_it_hops(*args):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not os.path.exists(HOP):
                time.sleep(0.001)
            begin(*args)
            module.wait_moved()
            open(MOVED, "w").close()
            time.sleep(60)  # killed meanwhile

        module.begin = begin_once_it_hops
"""


def test_a_fork_hopper_that_hopped_before_the_early_move_dies_with_a_kill_9_before_the_supervisor_loads(tmp_path):
    # Its generations, orphans of `stoker run`'s, were left out of the early start's move (a
    # walk from the runs alone), and the supervisor's walk, which lists the orphans, never
    # came: the watchdog's kill of the cgroup missed the hopper, which hopped on (the busy-host
    # fault test's kill -9, a hopper's `--fork-hop` started ahead of a loaded `stoker run`).
    hop, stop, moved = tmp_path / "hop.pid", tmp_path / "hop.stop", tmp_path / "moved"
    config = write(tmp_path, f"Process(name='hop', cmdline='{in_aurora(_hopper_line(hop, stop, 1022))}')")
    patch = HOLD_AFTER_THE_MOVE.replace("MOVED", repr(str(moved))).replace("HOP", repr(str(hop)))
    with _hopper_rerun(tmp_path, config, hop, stop, patch, killed=True) as proc:
        wait_for(moved.exists, 30, message="the early move over, the hopper hopping")
        task = _stoker_lines(proc.pid)
        assert task, proc.stderr()
        seen = _generations(hop)
        assert len(seen) == 10 and all(found == task for _, found in seen), (task, seen)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc_scan.hopper_quiet(hop, 0.05, within_secs=15), (
            f"the fork-hopper outlived the kill -9: {proc_scan.describe(proc_scan.read_pid_files([hop]))}")


# The early start's walk lists the orphans (its `adopted`) only once each generation it
# first listed has hopped, at every pass: each generation listed then is one born after the
# pass's read of this process's children.
HOLD_THE_ORPHANS = """
    def _patch(module):
        real = module.EarlyCgroup._orphans

        def orphans(self):
            listed = real(self)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(map(_alive, listed)):
                time.sleep(0.001)
            return real(self)

        module.EarlyCgroup._orphans = orphans

    def _alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False
"""


def test_a_generation_born_between_a_pass_reading_the_children_and_listing_the_orphans_is_moved(tmp_path):
    # Filtered by the pass's read of this process's children, made before, the orphans listed
    # after it were left out when they were born between the two reads (each generation the
    # first read saw had hopped): the pass found nothing new and ended the walk, the hopper
    # outside the task's cgroup.
    hop, stop = tmp_path / "hop.pid", tmp_path / "hop.stop"
    config = write(tmp_path, f"Process(name='hop', cmdline='{in_aurora(_hopper_line(hop, stop, 1023))}')")
    held = HOLD_AFTER_THE_MOVE.replace("MOVED", repr(str(tmp_path / "moved"))).replace("HOP", repr(str(hop)))
    with _hopper_rerun(tmp_path, config, hop, stop, _both(held, HOLD_THE_ORPHANS), killed=True) as proc:
        wait_for((tmp_path / "moved").exists, 30, message="the early move over, the hopper hopping")
        task = _stoker_lines(proc.pid)
        assert task, proc.stderr()
        seen = _generations(hop)
        assert len(seen) == 10 and all(found == task for _, found in seen), (task, seen)


# The walk (the early start's, or the supervisor's) holds its move of the early run's child
# `sleep 1019` until the test says go: meanwhile the test kills that child (the run's shell reaps it) and
# hands its pid to a process of its own (/proc/sys/kernel/ns_last_pid).
HOLD_A_CHILD = """
    def _patch(module):
        real, held = module.cgroups.TaskCgroup.take_in, []

        def take_in(self, pid, *args, **kwargs):
            if not held and _cmdline(pid) == b"sleep\\x001019\\x00":
                held.append(pid)
                with open(LISTED + ".tmp", "w") as out:
                    out.write(str(pid))
                os.rename(LISTED + ".tmp", LISTED)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not os.path.exists(GO):
                    time.sleep(0.001)
            return real(self, pid, *args, **kwargs)

        module.cgroups.TaskCgroup.take_in = take_in

    def _cmdline(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read()
        except OSError:
            return b""
"""


@pytest.mark.serial  # hands a pid on: the host's next pid rewound
def test_a_pid_the_walk_listed_then_handed_to_another_process_is_not_moved_into_the_task_cgroup(tmp_path):
    # The walk lists a run's child, which exits and is reaped before its move; the kernel
    # hands its pid on, here to a process of the test's. Moved into the task's cgroup by
    # that pid, it was killed with the task.
    if os.geteuid() != 0:
        pytest.skip("handing a pid on (ns_last_pid) takes root")
    listed, go = tmp_path / "listed", tmp_path / "go"
    config = write(tmp_path, "Process(name='early', cmdline='sleep 1019 & wait $!; exec sleep 1020')")
    proc, sandbox = kept_then_hooked(tmp_path, config, patched_at_load(
        "executor.procs.cgrouplife", HOLD_A_CHILD.replace("LISTED", repr(str(listed))).replace("GO", repr(str(go)))), {})
    stranger = None
    try:
        wait_for(listed.exists, 30, message="the walk's move of the run's child")
        child = int(listed.read_text())
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{child}").exists(), 10, message=f"{child} reaped by the run's shell")
        stranger = pidnames.hand_on(child, ["sleep", "1021"])
        go.touch()
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
        task = _stoker_lines(proc.pid)
        assert task, proc.stderr()
        assert _stoker_lines(stranger.pid) == [], proc.stderr()
    finally:
        go.touch()
        if stranger is not None:
            stranger.kill()
            stranger.wait()
        proc.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))
