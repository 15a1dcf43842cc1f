"""The observer's follow mode, one step at a time (`reader._follow`), on a run's log files
made here: which file the page's next look reads once the file it held was rotated, kept
among the backups or rotated past the last of them. The end-to-end tests of the page's
script (tests/e2e/test_observe_follow.py) run a real task; here each rotation is the test's."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.observe import logread, reader
from executor.observe.logrange import LogQuery
from executor.procs import rotation, saferead

pytestmark = pytest.mark.timeout(30)


def _ident(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


def _rotate(run_dir: Path, text: bytes, keep: int) -> None:
    """The log pump's rotation, keeping `keep` backups: the one shifted past them is dropped."""
    for number in range(keep, 0, -1):
        backup = run_dir / f"stdout.{number}"
        if backup.exists():
            if number == keep:
                backup.unlink()
            else:
                os.replace(backup, run_dir / f"stdout.{number + 1}")
    os.replace(run_dir / "stdout", run_dir / "stdout.1")
    (run_dir / "stdout").write_bytes(text)


def _look(logs: Path, runs: tuple[int, ...], query: LogQuery) -> tuple[int, int, bytes, bool, bool]:
    """The next look of a follower holding `query`'s file and offset, with the process's runs
    `runs`: (its run, its offset, its file's bytes from there, `continues`, `whole`)."""
    pdir = saferead.open_dir(str(logs))
    try:
        step = reader._follow(pdir, runs, query)
    finally:
        os.close(pdir)
    try:
        os.lseek(step.fd, step.offset or 0, os.SEEK_SET)
        return step.run, step.offset or 0, os.read(step.fd, 1 << 16), step.continues, step.whole
    finally:
        os.close(step.fd)
        os.close(step.rdir)


def _step(logs: Path, held: str, offset: int) -> tuple[bytes, bool, bool]:
    """The next look's file in run 0 (its bytes from the step's offset), `continues` and `whole`."""
    run, _, data, continues, whole = _look(logs, (0,), LogQuery(run=0, offset=offset, file=held))
    assert run == 0
    return data, continues, whole


@pytest.fixture
def run_dir(tmp_path) -> Path:
    path = tmp_path / "web" / "0"
    path.mkdir(parents=True)
    (path / "stdout").write_bytes(b"held\n")
    return path


def test_a_held_file_kept_as_a_backup_is_read_to_its_end_then_the_one_after_it(run_dir):
    held = _ident(run_dir / "stdout")
    with open(run_dir / "stdout", "ab") as f:
        f.write(b"more\n")
    _rotate(run_dir, b"c\n", keep=2)
    _rotate(run_dir, b"d\n", keep=2)
    assert _step(run_dir.parent, held, 5) == (b"more\n", True, True)
    assert _step(run_dir.parent, held, 10) == (b"c\n", True, True)  # stdout.1 now


@pytest.mark.parametrize("rotations, first", [
    (3, b"c\n"),  # the held file dropped: the one written after it is the oldest backup
    (5, b"e\n"),  # two more dropped before the look: the oldest still there
])
def test_a_held_file_rotated_past_the_last_backup_goes_on_at_the_oldest_backup(run_dir, rotations, first):
    """The page's file rotated away between two looks (a burst wrote more than the logger
    keeps): the look read the newest file, `stdout`, and the backups still there between
    them were never shown. Now the oldest backup, from its start, after the page's marker."""
    held = _ident(run_dir / "stdout")
    keeping = os.open(run_dir / "stdout", os.O_RDONLY)  # its inode not given to a newer file (ext4 would)
    try:
        for text in (b"c\n", b"d\n", b"e\n", b"f\n", b"g\n")[:rotations]:
            _rotate(run_dir, text, keep=2)
        assert _step(run_dir.parent, held, 5) == (first, False, True)
    finally:
        os.close(keeping)


def test_a_held_file_gone_with_no_backup_left_goes_on_at_the_current_file(run_dir):
    held = _ident(run_dir / "stdout")
    keeping = os.open(run_dir / "stdout", os.O_RDONLY)
    try:
        os.unlink(run_dir / "stdout")
        (run_dir / "stdout").write_bytes(b"new\n")
        assert _step(run_dir.parent, held, 5) == (b"new\n", False, False)
    finally:
        os.close(keeping)


def test_a_newer_file_given_the_held_one_s_inode_is_not_taken_for_it(run_dir):
    """ext4 gives a dropped backup's inode to the next file made: here the new `stdout`
    of the rotation that dropped the held file. By `DEVICE:INODE` alone the look took it
    for the held file, shorter than the offset: truncated, shown from its start, and the
    two backups between never shown. The inode's generation tells them apart."""
    fd = os.open(run_dir / "stdout", os.O_RDONLY)
    try:
        held = logread.file_text(fd, os.fstat(fd))
    finally:
        os.close(fd)
    if held.count(":") != 2:
        pytest.skip("this file system keeps no inode generation")
    for text in (b"c\n", b"d\n", b"e\n"):
        _rotate(run_dir, text, keep=2)
    if _ident(run_dir / "stdout") != held.rsplit(":", 1)[0]:
        pytest.skip("this file system gave the dropped inode to no newer file")
    assert _step(run_dir.parent, held, 5) == (b"c\n", False, True)


def test_a_file_s_generation_is_the_same_at_each_look_and_a_pipe_has_none(run_dir):
    first, again = (os.open(run_dir / "stdout", os.O_RDONLY) for _ in range(2))
    reading, writing = os.pipe()
    try:
        assert rotation.generation(first) == rotation.generation(again)
        assert rotation.generation(reading) is None
    finally:
        for fd in (first, again, reading, writing):
            os.close(fd)


# ---- from one run to the next ----


def _held(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return logread.file_text(fd, os.fstat(fd))
    finally:
        os.close(fd)


def _dir(path: Path) -> str:
    return logread.ident_text(path.stat())


def _run(logs: Path, number: int, *files: tuple[str, bytes]) -> Path:
    path = logs / str(number)
    path.mkdir()
    for name, text in files:
        (path / name).write_bytes(text)
    return path


def test_a_held_file_with_more_is_read_on_from_the_offset(run_dir):
    held = _held(run_dir / "stdout")
    with open(run_dir / "stdout", "ab") as f:
        f.write(b"more\n")
    _run(run_dir.parent, 1, ("stdout", b"next run\n"))
    query = LogQuery(run=0, offset=5, file=held, dir=_dir(run_dir))
    assert _look(run_dir.parent, (0, 1), query) == (0, 5, b"more\n", True, False)


def test_a_held_file_read_to_its_end_goes_on_at_the_next_run_s_log(run_dir):
    held = _held(run_dir / "stdout")
    logs = run_dir.parent
    _run(logs, 3, ("stdout", b"third\n"))
    _run(logs, 5, ("stdout", b"fifth\n"))
    query = LogQuery(run=0, offset=5, file=held, dir=_dir(run_dir))
    assert _look(logs, (0, 3, 5), query) == (3, 0, b"third\n", True, False)  # the next one, not the last


def test_the_next_run_s_log_from_its_oldest_file(run_dir):
    held = _held(run_dir / "stdout")
    logs = run_dir.parent
    _run(logs, 1, ("stdout", b"newest\n"), ("stdout.1", b"older\n"), ("stdout.2", b"oldest\n"))
    query = LogQuery(run=0, offset=5, file=held, dir=_dir(run_dir))
    assert _look(logs, (0, 1), query) == (1, 0, b"oldest\n", True, True)  # a backup: complete


@pytest.mark.parametrize("later", [(), (1,)], ids=["no-later-run", "its-log-not-yet"])
def test_a_held_file_at_its_end_stays_held_while_no_next_log_is_there(run_dir, later):
    held = _held(run_dir / "stdout")
    for number in later:
        _run(run_dir.parent, number)  # the run's directory, made before its log
    query = LogQuery(run=0, offset=5, file=held, dir=_dir(run_dir))
    assert _look(run_dir.parent, (0, *later), query) == (0, 5, b"", True, False)


def test_a_held_file_shorter_than_the_offset_was_truncated_and_is_read_from_its_start(run_dir):
    held = _held(run_dir / "stdout")
    os.truncate(run_dir / "stdout", 0)
    with open(run_dir / "stdout", "ab") as f:
        f.write(b"ab\n")
    query = LogQuery(run=0, offset=5, file=held, dir=_dir(run_dir))
    assert _look(run_dir.parent, (0,), query) == (0, 0, b"ab\n", False, False)


@pytest.mark.parametrize("how", ["moved", "gone"])
def test_a_run_directory_moved_or_gone_goes_on_at_the_first_run_s_log(run_dir, tmp_path, how):
    """`stoker run` kept the attempt's logs as `.logs.attempt-N`: the run's directory the page
    held is another one now (or none), and the new `.logs`' first run is read from its start."""
    held, held_dir = _held(run_dir / "stdout"), _dir(run_dir)
    logs = run_dir.parent
    os.rename(run_dir, tmp_path / "kept")
    if how == "moved":
        _run(logs, 0, ("stdout", b"new attempt\n"))
        runs: tuple[int, ...] = (0,)
    else:
        _run(logs, 2, ("stdout", b"new attempt\n"))
        runs = (2,)
    assert _look(logs, runs, LogQuery(run=0, offset=5, file=held, dir=held_dir)) == (
        runs[0], 0, b"new attempt\n", True, False)
    with pytest.raises(FileNotFoundError, match="the run's directory was moved and no run has a log yet"):
        _look(logs, (), LogQuery(run=7, offset=5, file=held, dir=held_dir))


def test_a_held_file_between_a_rotation_s_rename_and_its_new_file_is_read_on_as_the_backup(run_dir):
    held = _held(run_dir / "stdout")
    with open(run_dir / "stdout", "ab") as f:
        f.write(b"more\n")
    os.replace(run_dir / "stdout", run_dir / "stdout.1")  # no new `stdout` yet
    query = LogQuery(run=0, offset=5, file=held, dir=_dir(run_dir))
    assert _look(run_dir.parent, (0,), query) == (0, 5, b"more\n", True, True)


def test_a_look_that_names_no_file_reads_the_current_one_from_its_start(run_dir):
    assert _look(run_dir.parent, (0,), LogQuery(run=0, offset=5, file="", dir=_dir(run_dir))) == (
        0, 0, b"held\n", False, False)


def test_a_held_file_of_a_later_run_is_read_on_in_that_run(run_dir):
    later = _run(run_dir.parent, 3, ("stdout", b"third\n"))
    held = _held(later / "stdout")
    with open(later / "stdout", "ab") as f:
        f.write(b"more\n")
    query = LogQuery(run=3, offset=6, file=held, dir=_dir(later))
    assert _look(run_dir.parent, (0, 3), query) == (3, 6, b"more\n", True, False)
