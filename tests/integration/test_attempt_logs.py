"""The earlier attempts' logs `stoker run` keeps (`executor/local/attempts.py`): the first
and the last K, numbered on from the highest, removed without following a symlink."""
from __future__ import annotations

import os
from pathlib import Path

from executor.local.attempts import archive_logs


def attempt(sandbox: Path, text: str) -> None:
    """One attempt's logs in `.logs`, as its supervisor leaves them."""
    run = sandbox / ".logs" / "p" / "0"
    run.mkdir(parents=True)
    (run / "stderr").write_text(text)


def kept(sandbox: Path) -> dict[int, str]:
    return {int(name.rsplit("-", 1)[1]): (sandbox / name / "p/0/stderr").read_text()
            for name in os.listdir(sandbox) if name.startswith(".logs.attempt-")}


def test_a_failing_service_keeps_the_first_attempt_and_the_last_ones(tmp_path):
    """Every attempt's logs were kept for ever: 1,440 directories a day at the default back-off."""
    for n in range(30):
        attempt(tmp_path, f"attempt {n}")
        archive_logs(tmp_path, keep=3)
    assert kept(tmp_path) == {0: "attempt 0", 27: "attempt 27", 28: "attempt 28", 29: "attempt 29"}
    assert not (tmp_path / ".logs").exists()


def test_numbers_go_on_from_the_highest_so_a_higher_one_is_later(tmp_path):
    """With the first number not taken, a removed one's number came back for a later attempt."""
    for n in range(5):
        attempt(tmp_path, f"attempt {n}")
        archive_logs(tmp_path, keep=1)
    assert kept(tmp_path) == {0: "attempt 0", 4: "attempt 4"}
    attempt(tmp_path, "a later run's attempt")
    archive_logs(tmp_path, keep=20)
    assert kept(tmp_path)[5] == "a later run's attempt"


def test_keep_zero_keeps_the_first_attempt_only(tmp_path):
    for n in range(3):
        attempt(tmp_path, f"attempt {n}")
        archive_logs(tmp_path, keep=0)
    assert kept(tmp_path) == {0: "attempt 0"}


def test_nothing_is_followed_out_of_the_sandbox_nor_a_planted_name_removed(tmp_path):
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    sandbox.mkdir()
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    (sandbox / ".logs.attempt-1").symlink_to(outside)  # the task's, planted
    (sandbox / ".logs.attempt-2").write_text("a file, not an attempt")
    for n in range(4):
        attempt(sandbox, f"attempt {n}")
        (sandbox / ".logs" / "p" / "0" / "link").symlink_to(outside)  # below: unlinked, not followed
        (sandbox / ".logs" / "p" / "escape").symlink_to(outside / "precious")
        archive_logs(sandbox, keep=1)
    assert sorted(os.listdir(outside)) == ["precious"] and (outside / "precious").read_text() == "keep me"
    assert (sandbox / ".logs.attempt-1").is_symlink() and (sandbox / ".logs.attempt-2").is_file()
    # the planted names are not taken again: the first attempt kept is 3
    assert sorted(os.listdir(sandbox)) == [".logs.attempt-1", ".logs.attempt-2", ".logs.attempt-3", ".logs.attempt-6"]


def test_a_logs_symlink_is_left_alone(tmp_path):
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    sandbox.mkdir()
    (outside / "p").mkdir(parents=True)
    (sandbox / ".logs").symlink_to(outside)
    archive_logs(sandbox, keep=0)
    assert (sandbox / ".logs").is_symlink() and os.listdir(outside) == ["p"]
