"""`executor/procs/rotation.py` on a run's log files made here: which backup is the file held,
which file was written after it, the oldest one, and what each does when a rotation comes
between its look and its open (made to come there, by the test). Each file holds its own
name, so what a call opened is read back."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from executor.procs import rotation, saferead
from tests.support import rundir

pytestmark = pytest.mark.timeout(30)
run_dir, rdir = rundir.run_dir, rundir.rdir  # the fixtures: a run's directory and its descriptor


def _files(run_dir: Path, *names: str) -> None:
    for name in names:
        (run_dir / name).write_text(name)


def _rotate(run_dir: Path) -> None:
    """The log pump's rotation, every backup kept: `.N` → `.N+1` .. `stdout` → `.1`, a new `stdout`."""
    numbers = sorted((int(p.name.split(".")[1]) for p in run_dir.glob("stdout.*")), reverse=True)
    for number in numbers:
        os.replace(run_dir / f"stdout.{number}", run_dir / f"stdout.{number + 1}")
    os.replace(run_dir / "stdout", run_dir / "stdout.1")
    (run_dir / "stdout").write_text("stdout, after a rotation")


def _held(path: Path) -> rotation.Ident:
    return rotation.ident(path.stat())


def _text(fd: int | None) -> str | None:
    if fd is None:
        return None
    try:
        return os.read(fd, 1024).decode()
    finally:
        os.close(fd)


def _generation(path: Path) -> int:
    """The inode's generation as e2fsprogs' `lsattr -v` reads it; skips where there is none."""
    found = subprocess.run(["lsattr", "-vd", str(path)], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"no inode generation here: {found.stderr.strip()}")
    return int(found.stdout.split()[0])


def test_an_inode_s_generation_is_the_one_lsattr_reads(run_dir):
    _files(run_dir, "stdout")
    expected = _generation(run_dir / "stdout")
    fd = os.open(run_dir / "stdout", os.O_RDONLY)
    try:
        assert rotation.generation(fd) == expected
    finally:
        os.close(fd)


def test_a_link_among_the_backups_is_not_the_file_it_points_to(run_dir, rdir):
    _files(run_dir, "stdout", "target")
    (run_dir / "stdout.1").symlink_to("target")
    assert rotation.ident_at("stdout.1", rdir) == rotation.ident(os.lstat(run_dir / "stdout.1"))
    assert rotation.ident_at("stdout.1", rdir) != _held(run_dir / "target")
    assert rotation.ident_at("stdout.9", rdir) is None
    assert rotation.backup_number(rdir, "stdout", _held(run_dir / "target")) is None


@pytest.mark.parametrize(("present", "held", "number"), [
    (("stdout.1", "stdout.2"), "stdout.1", 1),
    (("stdout.1", "stdout.2", "stdout.3"), "stdout.3", 3),
    (("stdout.2",), "stdout.2", 2),  # one missing (mid-rotation) is looked past
    (("stdout.1", "stdout.3"), "stdout.3", 3),
    (("stdout.1", "stdout.3", "stdout.5"), "stdout.5", 5),  # a present one starts the count again
    (("stdout.3",), "stdout.3", None),  # two missing in a row end the search
    (("stdout.1", "stdout.4"), "stdout.4", None),
])
def test_the_held_file_s_backup_number(run_dir, rdir, present, held, number):
    _files(run_dir, "stdout", *present)
    assert rotation.backup_number(rdir, "stdout", _held(run_dir / held)) == number


def test_a_backup_on_the_held_inode_of_another_generation_is_another_file(run_dir, rdir):
    _files(run_dir, "stdout", "stdout.1", "stdout.2")
    held, generation = _held(run_dir / "stdout.2"), _generation(run_dir / "stdout.2")
    assert rotation.backup_number(rdir, "stdout", held, generation) == 2
    assert rotation.backup_number(rdir, "stdout", held, generation + 1) is None
    assert _text(rotation.open_backup(rdir, "stdout", held, generation)) == "stdout.2"
    assert rotation.open_backup(rdir, "stdout", held, generation + 1) is None
    assert _text(rotation.open_successor(rdir, "stdout", held, held_generation=generation)) == "stdout.1"
    # not among the backups as held (and not dropped): the newest file comes next
    assert _text(rotation.open_successor(rdir, "stdout", held, held_generation=generation + 1)) == "stdout"


@pytest.mark.parametrize(("held", "successor"), [
    ("stdout.3", "stdout.2"), ("stdout.2", "stdout.1"), ("stdout.1", "stdout")])
def test_the_file_after_a_backup_is_the_next_newer_one(run_dir, rdir, held, successor):
    _files(run_dir, "stdout", "stdout.1", "stdout.2", "stdout.3")
    assert _text(rotation.open_successor(rdir, "stdout", _held(run_dir / held))) == successor


def test_the_file_after_one_moved_away_is_the_newest_unless_it_was_dropped(run_dir, rdir, tmp_path):
    # moved by another tool: it still has a name, elsewhere; dropped: rotated past the last
    # backup, so every file there now came after it, the oldest first
    _files(run_dir, "stdout", "stdout.1", "stdout.2", "gone")
    held = _held(run_dir / "gone")
    os.replace(run_dir / "gone", tmp_path / "gone")
    assert _text(rotation.open_successor(rdir, "stdout", held)) == "stdout"
    assert _text(rotation.open_successor(rdir, "stdout", held, dropped=True)) == "stdout.2"


def test_a_directory_among_the_backups_is_passed_over_for_the_next_newer_file(run_dir, rdir):
    _files(run_dir, "stdout", "stdout.1", "stdout.3")
    (run_dir / "stdout.2").mkdir()
    assert _text(rotation.open_successor(rdir, "stdout", _held(run_dir / "stdout.3"))) == "stdout.1"


@pytest.mark.parametrize(("present", "directory", "oldest"), [
    (("stdout",), None, "stdout"),
    (("stdout", "stdout.1"), None, "stdout.1"),
    (("stdout", "stdout.1", "stdout.2", "stdout.3"), None, "stdout.3"),
    (("stdout", "stdout.1", "stdout.3"), None, "stdout.1"),  # a missing one ends the backups
    (("stdout", "stdout.1", "stdout.3"), "stdout.2", "stdout.1"),  # so does a directory
    (("stdout", "stdout.2"), "stdout.1", "stdout"),
])
def test_the_oldest_file_of_a_run_s_log(run_dir, rdir, present, directory, oldest):
    _files(run_dir, *present)
    if directory:
        (run_dir / directory).mkdir()
    assert _text(rotation.open_first(rdir, "stdout")) == oldest


def test_the_oldest_file_is_looked_for_among_the_most_backups_a_logger_keeps(run_dir, rdir, monkeypatch):
    monkeypatch.setattr(rotation, "MAX_BACKUPS", 3)
    _files(run_dir, "stdout", "stdout.1", "stdout.2", "stdout.3", "stdout.4")
    assert _text(rotation.open_first(rdir, "stdout")) == "stdout.3"


def test_a_run_s_log_with_no_file_is_said_so(rdir):
    with pytest.raises(FileNotFoundError, match="no stdout log"):
        rotation.open_first(rdir, "stdout")


def _rotating_after_the_look(monkeypatch, run_dir: Path, times: int) -> list[int | None]:
    """`backup_number` as it is, but the first `times` looks are followed by a rotation,
    before the caller's open; the numbers the looks found."""
    real, found = rotation.backup_number, []

    def look(*args: object, **kwargs: object) -> int | None:
        number = real(*args, **kwargs)  # type: ignore[arg-type]
        found.append(number)
        if len(found) <= times:
            _rotate(run_dir)
        return number

    monkeypatch.setattr(rotation, "backup_number", look)
    return found


def test_a_rotation_between_the_look_and_the_open_is_looked_at_again(run_dir, rdir, monkeypatch):
    _files(run_dir, "stdout", "stdout.1", "stdout.2", "stdout.3")
    held = _held(run_dir / "stdout.2")
    found = _rotating_after_the_look(monkeypatch, run_dir, times=2)
    # stdout.1 when looked at: the file after the held one, once two rotations renamed it
    assert _text(rotation.open_successor(rdir, "stdout", held)) == "stdout.1"
    assert found == [2, 3, 4]


def test_a_backup_rotated_on_between_the_look_and_the_open_is_found_again(run_dir, rdir, monkeypatch):
    _files(run_dir, "stdout", "stdout.1", "stdout.2")
    held = _held(run_dir / "stdout.1")
    found = _rotating_after_the_look(monkeypatch, run_dir, times=1)
    assert _text(rotation.open_backup(rdir, "stdout", held)) == "stdout.1"
    assert found == [1, 2]


def test_a_follower_that_sees_a_rotation_at_every_look_gives_up_saying_none(run_dir, rdir, monkeypatch):
    _files(run_dir, "stdout", "stdout.1")
    held = _held(run_dir / "stdout.1")
    found = _rotating_after_the_look(monkeypatch, run_dir, times=rotation.ROTATION_TRIES)
    assert rotation.open_successor(rdir, "stdout", held) is None
    assert found == list(range(1, rotation.ROTATION_TRIES + 1))


def test_a_link_among_the_backups_ends_them_as_a_directory_does(run_dir, rdir):
    _files(run_dir, "stdout", "stdout.1", "stdout.3", "target")
    (run_dir / "stdout.2").symlink_to("target")
    assert _text(rotation.open_first(rdir, "stdout")) == "stdout.1"


def _refused_once(monkeypatch, refusals: dict[str, Exception]) -> None:
    """`saferead.open_file` as it is, but each name of `refusals` raises its error at its
    first open: moved (FileNotFoundError) or replaced (UnsafeEntry) between a look and the open."""
    real, refusals = saferead.open_file, dict(refusals)  # (a parameter's own dict is the next run's too)

    def open_file(name: str, dir_fd: int | None = None) -> int:
        if (error := refusals.pop(name, None)) is not None:
            raise error
        return real(name, dir_fd)

    monkeypatch.setattr(saferead, "open_file", open_file)


@pytest.mark.parametrize(("refusals", "oldest"), [
    ({"stdout.3": FileNotFoundError()}, "stdout.2"),  # rotated on under the look: the next newer one
    ({"stdout.3": FileNotFoundError(), "stdout.2": FileNotFoundError()}, "stdout.1"),
    ({"stdout.3": saferead.UnsafeEntry("stdout.3: a symlink")}, "stdout.2"),  # replaced by what is no log
])
def test_the_oldest_file_gone_or_replaced_under_the_look_is_the_next_newer_one(run_dir, rdir, monkeypatch,
                                                                                refusals, oldest):
    _files(run_dir, "stdout", "stdout.1", "stdout.2", "stdout.3")
    _refused_once(monkeypatch, refusals)
    assert _text(rotation.open_first(rdir, "stdout")) == oldest


def test_the_log_itself_replaced_by_what_is_no_log_is_an_error(run_dir, rdir, monkeypatch):
    _files(run_dir, "stdout")
    _refused_once(monkeypatch, {"stdout": saferead.UnsafeEntry("stdout: a FIFO")})
    with pytest.raises(saferead.UnsafeEntry, match="stdout: a FIFO"):
        rotation.open_first(rdir, "stdout")


def test_a_file_gone_between_the_look_and_the_open_is_looked_for_again(run_dir, rdir, monkeypatch):
    _files(run_dir, "stdout", "stdout.1", "stdout.2")
    _refused_once(monkeypatch, {"stdout.1": FileNotFoundError(), "stdout.2": FileNotFoundError()})
    assert _text(rotation.open_successor(rdir, "stdout", _held(run_dir / "stdout.2"))) == "stdout.1"
    assert _text(rotation.open_backup(rdir, "stdout", _held(run_dir / "stdout.2"))) == "stdout.2"
