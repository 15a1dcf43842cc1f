"""The supervisor's process logs with real processes: big output, rotation, destinations, and
SANDBOX/.logs kept open between spawns (more in test_log_root.py)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from config.spec import LogDestination, LoggerSpec, LogMode
from executor.local.attempts import archive_logs
from executor.procs.supervisor import SpawnError
from tests.support.supervision import Harness, MiB, fake, fds_on
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


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
    wait_for(lambda: harness.log("r", stream="stderr").read_bytes() == b"oops", 10)
    wait_for(lambda: harness.log("r").read_bytes() == b"XYZ", 10)
    assert (harness.log("r").parent / "stdout.1").read_bytes() == b"abcdefghij"
    assert (harness.log("r").parent / "stdout.2").read_bytes() == b"0123456789"


def test_console_and_both_destinations_copy_to_the_supervisor_output(harness, capfd):
    harness.spawn("c", "echo to-console", logger=LoggerSpec(destination=LogDestination.CONSOLE))
    harness.next_exit()
    harness.spawn("b", "echo to-both", logger=LoggerSpec(destination=LogDestination.BOTH))
    harness.next_exit()
    wait_for(lambda: harness.log("b").exists() and harness.log("b").read_text() == "to-both\n", 10)
    harness.spawn("n", "echo to-nowhere", logger=LoggerSpec(destination=LogDestination.NONE))
    harness.next_exit()
    harness.sup.close()  # drains the pump
    out = capfd.readouterr().out
    assert "to-console" in out and "to-both" in out and "to-nowhere" not in out
    assert not harness.log("c").exists() and not harness.log("n").exists()


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
