"""The earlier attempts' logs `stoker run` keeps (`executor/local/attempts.py`): the first
and the last K, numbered on from the highest, removed without following a symlink."""
from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path

from executor.local import attempts
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


def _logged(caplog) -> list[tuple[str, str, dict]]:
    return [(r.levelname, r.stoker_event, r.stoker_fields) for r in caplog.records
            if r.name == attempts.__name__ and hasattr(r, "stoker_event")]


def test_each_attempt_removed_past_the_bound_is_said_and_one_that_cannot_be_is_left(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger=attempts.__name__)
    for n in range(3):
        attempt(tmp_path, f"attempt {n}")
        archive_logs(tmp_path, keep=1)
    assert _logged(caplog) == [("INFO", "attempt_logs_removed", {
        "name": ".logs.attempt-1",
        "reason": "only the first attempt's logs and the last --keep-attempts ones are kept"})]
    caplog.clear()

    def failing(name, *args, **kwargs):
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(shutil, "rmtree", failing)
    attempt(tmp_path, "attempt 3")
    archive_logs(tmp_path, keep=1)
    assert _logged(caplog) == [("ERROR", "attempt_logs_not_removed", {
        "name": ".logs.attempt-2", "error": "[Errno 13] Permission denied: '.logs.attempt-2'",
        "reason": "an earlier attempt's logs past --keep-attempts could not be removed"})]
    assert kept(tmp_path) == {0: "attempt 0", 2: "attempt 2", 3: "attempt 3"}


def test_the_next_attempt_s_number_is_one_past_the_highest_name_taken(tmp_path):
    assert attempts.next_number(tmp_path) == 0 and attempts.kept_numbers(tmp_path) == []
    (tmp_path / ".logs.attempt-7").write_text("a file, planted")
    assert attempts.next_number(tmp_path) == 8 and attempts.kept_numbers(tmp_path) == []
    assert attempts.next_number(tmp_path / "no-such") is None and attempts.kept_numbers(tmp_path / "no-such") is None


def test_one_port_another_program_took_is_said_as_one():
    with socket.create_server(("127.0.0.1", 0)) as held:
        number = held.getsockname()[1]
        assert attempts.ports_taken_warning({"http": number}) == (
            f"port http={number} in use by another program; every attempt of this run keeps its ports "
            "(a new `stoker run` chooses free ones)")
    assert attempts.ports_taken_warning({}) is None
