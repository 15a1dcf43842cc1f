"""`.stoker/held.json` that the supervisor cannot write, provoked for real: a directory where
the file goes (as the task may put one: the sandbox is its to change), so that each rename
of a new list over it fails (EISDIR), in a `stoker run` without a cgroup, whose task leaves
daemons the watchdog holds by pid (docs/contract.md §4, `held.json`).

The supervisor says so once (`held_unwritten`) and the task runs on. Should the supervisor
and its watchdog both die meanwhile, `stoker status` and a re-run find the task's leftovers
by marker only: a daemon that kept the marker is listed and killed, one that cleared its
environment is neither (what the WARNING's consequence says). Once the directory is gone,
the next list is written (`held_written`), naming what was held while it could not be, and a
re-run kills those daemons though neither carries the marker.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import proc_scan
from tests.support.lostrun import kill_with_watchdog
from tests.support.sandbox_runs import job_config, process
from tests.support.stoker_proc import StokerProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

HIDE = "env -i "  # a daemon that clears its environment, the task's marker with it


def launcher(name: str, hide: str = "") -> str:
    """A process that, once the file `go-NAME` is there, leaves a daemon (its pid in
    `NAME.pid`) and exits 0: its exit walks the task's processes, and the daemon, an orphan of
    the supervisor, is kept as the task's and handed to the watchdog (a new list to write).
    With `hide`, the daemon then clears its environment once `NAME.hide` is there (one that
    cleared it before its run's exit would be no daemon of the run's, but a leftover). The
    run exits once its daemon has written its pid, so that the daemon's `sh` is exec'd by
    the exit's walk (a walk that read it mid-exec killed it: tests/integration/test_proc_environ_exec.py)."""
    wait = f"until [ -e {name}.hide ]; do sleep 0.01; done; " if hide else ""
    daemon = f"(setsid sh -c 'echo $$ > {name}.pid; {wait}exec {hide}sleep 60' &)"
    return process(f"until [ -e go-{name} ]; do sleep 0.01; done; {daemon}; "
                   f"until [ -s {name}.pid ]; do sleep 0.01; done").replace("name='p'", f"name={name!r}")


class HeldRun:
    """`stoker run` (no cgroup: the watchdog and a re-run find the task by marker and by its
    list) of a task with a `launcher` per entry of `names` (name → its daemon's `hide`) and a
    process that keeps it running; every daemon it left killed at `close`."""

    def __init__(self, tmp_path: Path, names: dict[str, str]) -> None:
        self.tmp, self.sandbox = tmp_path, tmp_path / "sb"
        config = job_config(tmp_path, "held", ", ".join([*(launcher(n, h) for n, h in names.items()),
                                                        process("exec sleep 600").replace("'p'", "'keep'")]))
        self.args = ["run", str(config), "--sandbox", str(self.sandbox), "--root", str(tmp_path / "root"),
                     "--cgroups", "off", "--log-format", "json", "--log-level", "INFO"]
        self.daemons: set[int] = set()
        self.marker = ""
        self.proc = StokerProcess(self.args, tmp_path)

    def started(self) -> HeldRun:
        self.proc.wait_output("keep[0]          WAITING → RUNNING")
        self.marker = json.loads((self.sandbox / ".stoker/checkpoint.jsonl").read_text().splitlines()[0])["marker"]
        wait_for((self.sandbox / ".stoker/held.json").is_file, 5, message="the first list (the watchdog's pid)")
        return self

    def close(self) -> None:
        self.proc.close()
        proc_scan.kill_carrying(f"{proc_scan.TASK_MARKER}={self.marker or 'none'}", self.daemons)

    def plant_directory(self) -> None:
        """A directory, not empty, where the list goes: a rename of a file over it fails."""
        held = self.sandbox / ".stoker/held.json"
        held.unlink()
        (held / "planted").mkdir(parents=True)

    def held_daemon(self, name: str, hide: str = "") -> int:
        """Once `go-NAME` is there, its launcher's daemon (as its pid file names it), once the
        supervisor keeps it as the task's (handed to the watchdog with it); with `hide`, once
        it has cleared its environment."""
        (self.sandbox / f"go-{name}").touch()
        pid_file = self.sandbox / f"{name}.pid"
        wait_for(lambda: proc_scan.read_pid_files([pid_file]), 5, message=f"{name}'s daemon")
        (pid,) = proc_scan.read_pid_files([pid_file])
        self.daemons.add(pid)
        wait_for(lambda: any(str(pid) in e["pids"].split() for e in self.proc.events("daemons_kept")), 5,
                 message=f"{name}'s daemon {pid} kept")
        if hide:
            (self.sandbox / f"{name}.hide").touch()
            wait_for(lambda: proc_scan.read_bytes(f"/proc/{pid}/cmdline") == b"sleep\x0060\x00", 5,
                     message=f"{name}'s daemon {pid} without its environment")
            assert proc_scan.task_marker_of(pid) is None and proc_scan.is_live(pid), pid
        return pid

    def lost_then_rerun(self) -> tuple[set[int], set[int], list[str]]:
        """The supervisor and its watchdog killed: the pids `stoker status` lists as the LOST
        attempt's leftovers, those a re-run in the sandbox says it killed, and the events that
        re-run logged (its launchers leave nothing: it is stopped once running)."""
        kill_with_watchdog(self.proc.pid)
        self.proc.wait(5)
        for go in self.sandbox.glob("go-*"):
            go.unlink()
        (self.tmp / "status").mkdir()
        said = StokerProcess(["status", "--json", str(self.sandbox)], self.tmp / "status").exited(0)
        listed = {left["pid"] for left in json.loads(said.stdout())["leftovers"]}
        (self.tmp / "again").mkdir()
        again = StokerProcess(self.args, self.tmp / "again")
        try:
            out = again.wait_output("keep[0]          WAITING → RUNNING")
        finally:
            again.sigterm_and_close()
        warning = next(line for line in out.splitlines() if "recorded no end" in line)
        killed = {int(pid) for pid in warning.split("it left running: ", 1)[1].split(";")[0].split()}
        return listed, killed, [e["event"] for e in again.events()]


@pytest.fixture
def held_run(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], HeldRun]]:
    runs: list[HeldRun] = []

    def start(names: dict[str, str]) -> HeldRun:
        runs.append(HeldRun(tmp_path, names))
        return runs[-1].started()

    try:
        yield start
    finally:
        for run in runs:
            run.close()


def test_while_held_json_cannot_be_written_a_lost_task_s_leftovers_are_found_by_marker_only(held_run, figures):
    run = held_run({"marked": "", "hidden": HIDE})
    run.plant_directory()
    marked = run.held_daemon("marked")
    hidden = run.held_daemon("hidden", HIDE)
    unwritten = run.proc.events("held_unwritten")
    assert len(unwritten) == 1 and unwritten[0]["level"] == "WARNING", unwritten  # once, not at each list
    assert "Is a directory (EISDIR)" in unwritten[0]["reason"], unwritten
    assert run.proc.proc.poll() is None  # the task runs on
    listed, killed, rerun = run.lost_then_rerun()
    assert marked in listed and marked in killed and not proc_scan.is_live(marked), (listed, killed, marked)
    assert hidden not in listed | killed and proc_scan.is_live(hidden), (listed, killed, hidden)
    assert rerun.count("held_unwritten") == 1, rerun  # the directory is still there: the re-run runs anyway
    figures.add("leftovers found by marker, of 2 held", len({marked, hidden} & killed))


def test_once_held_json_can_be_written_again_it_names_what_was_held_meanwhile_and_a_rerun_kills_it(held_run, figures):
    run = held_run({"first": HIDE, "second": HIDE})
    run.plant_directory()
    first = run.held_daemon("first", HIDE)
    wait_for(lambda: run.proc.events("held_unwritten"), 5, message="held_unwritten")
    shutil.rmtree(run.sandbox / ".stoker/held.json")
    second = run.held_daemon("second", HIDE)  # a new list: written
    (written,) = wait_for(lambda: run.proc.events("held_written"), 5, message="held_written")
    assert written["level"] == "INFO" and "could be written again" in written["reason"], written
    assert len(run.proc.events("held_unwritten")) == 1
    in_file = {pid for pid, _start in json.loads((run.sandbox / ".stoker/held.json").read_text())["held"]}
    assert {first, second} <= in_file, in_file  # (with what else was an orphan at that step)
    listed, killed, _ = run.lost_then_rerun()
    assert {first, second} <= listed and {first, second} <= killed, (listed, killed, first, second)
    assert not proc_scan.live({first, second})
    figures.add("leftovers found by the list alone", len({first, second} & killed))
