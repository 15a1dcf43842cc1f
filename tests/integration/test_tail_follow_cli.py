"""`stoker tail -f` as the command runs it, in this process (tests/e2e/test_tail_follow_ends.py
runs the real one): it follows into the next run unless a run or an attempt was asked for;
it ends once its sandbox is removed (what was written last printed first, one error line,
exit 1), or at a log it cannot read, the log named by its whole path; a reader gone ends it
(BrokenPipeError, which the command takes as the end, quietly). To a terminal the task's
bytes are written out as text that cannot drive it."""
from __future__ import annotations

import io
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.cli.tail import Follower, ProcessLogs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

REMOVED = ("its sandbox was removed (the agent's garbage collection, an rm -rf): nothing more can be written "
           "to it\n")


def log(sandbox: Path, run: int = 0, text: bytes = b"", name: str = "stdout") -> Path:
    d = sandbox / ".logs" / "web" / str(run)
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(text)
    return d / name


def tail_f(monkeypatch, capfdbinary, args: list[str], then: Callable[[Follower], None]) -> tuple[int, bytes, str]:
    """`stoker tail -f ARGS` run here; `then(follower)` on another thread once it follows."""
    following: list[Follower] = []
    real = Follower.follow

    def follow(self, out, stop, *rest, **named):
        following.append(self)
        return real(self, out, stop, *rest, **named)

    monkeypatch.setattr(Follower, "follow", follow)
    act = threading.Thread(target=lambda: (wait_for(lambda: following, 10), then(following[0])))
    act.start()
    try:
        code = main(["tail", "-f", *args])
    finally:
        act.join(10)
    out, err = capfdbinary.readouterr()
    return code, out, err.decode()


def test_following_ends_once_the_sandbox_is_removed_with_what_was_written_last(tmp_path, monkeypatch, capfdbinary):
    sandbox = tmp_path / "sb"
    path = log(sandbox, text=b"first\n")

    def remove(_follower: Follower) -> None:
        with open(path, "ab") as f:
            f.write(b"last words\n")
        shutil.rmtree(sandbox)

    code, out, err = tail_f(monkeypatch, capfdbinary, [str(sandbox), "web"], remove)
    assert (code, out) == (1, b"first\nlast words\n")
    assert err == f"stoker: error: stopped following {sandbox}/.logs/web/0/stdout: {REMOVED}"


@pytest.mark.parametrize("pinned_by, followed", [
    ([], True), (["--run", "0"], False), (["--attempt", "0"], False)], ids=["latest", "run", "attempt"])
def test_a_run_or_an_attempt_asked_for_is_followed_alone(tmp_path, monkeypatch, capfdbinary, pinned_by, followed):
    sandbox = tmp_path / "sb"
    logs_dir = ".logs" if "--attempt" not in pinned_by else ".logs.attempt-0"
    run_dir = sandbox / logs_dir / "web"
    (run_dir / "0").mkdir(parents=True)
    (run_dir / "0" / "stdout").write_bytes(b"zero\n")

    def next_run(follower: Follower) -> None:
        (run_dir / "1").mkdir()
        (run_dir / "1" / "stdout").write_bytes(b"one\n")
        if followed:
            wait_for(lambda: follower.run == 1, 10)
        else:
            time.sleep(0.5)  # a few idle looks: run 1 is not followed
            assert follower.run == 0
        shutil.rmtree(sandbox)

    code, out, err = tail_f(monkeypatch, capfdbinary, [str(sandbox), "web", *pinned_by], next_run)
    assert code == 1
    assert out == (b"zero\n==> web run 1: stdout <==\none\n" if followed else b"zero\n")
    assert err == f"stoker: error: stopped following {run_dir}/{int(followed)}/stdout: {REMOVED}"


def test_a_log_rotated_into_a_fifo_stops_following_naming_its_path(tmp_path, monkeypatch, capfdbinary):
    path = log(tmp_path, text=b"first\n")

    def plant(_follower: Follower) -> None:
        os.replace(path, path.with_name("stdout.1"))
        os.mkfifo(path)

    code, out, err = tail_f(monkeypatch, capfdbinary, [str(tmp_path), "web"], plant)
    assert (code, out) == (1, b"first\n")
    assert err == f"stoker: error: stopped following {path}: stdout: it is a FIFO, not a regular file\n"


def following(sandbox: Path) -> Follower:
    logs = ProcessLogs(sandbox, "web", "stdout")
    rdir, fd = logs.open(0)
    return Follower(logs, 0, rdir, fd, os.fstat(fd).st_size, pinned=True)


def test_a_removal_between_two_looks_prints_what_came_since_the_first(tmp_path):
    """What the task wrote after the last copy and before its sandbox went (between two of
    the loop's looks) is printed before the line that it was removed."""
    sandbox = tmp_path / "sb"
    path = log(sandbox, text=b"seen\n")
    follower = following(sandbox)
    out = io.BytesIO()
    looks = iter([False, True])  # the second look: after the removal

    def rotated(_out) -> bool:
        if next(looks):
            return False
        with open(path, "ab") as f:
            f.write(b"unseen\n")
        shutil.rmtree(sandbox)
        return False

    follower._rotated = rotated  # type: ignore[method-assign]
    assert follower.follow(out, stop=lambda: False, idle_secs=0.01) == 1
    assert out.getvalue() == b"unseen\n"


def test_a_sandbox_still_there_is_not_removed(tmp_path):
    log(tmp_path)
    follower = following(tmp_path)
    try:
        assert follower._removed(io.BytesIO()) is False
        assert follower._path() == f"{tmp_path}/.logs/web/0/stdout"
    finally:
        os.close(follower._fd)
        os.close(follower._dir)


def test_a_reader_gone_ends_following(tmp_path):
    log(tmp_path, text=b"seen\n")
    follower = following(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "wb") as out, pytest.raises(BrokenPipeError, match="^the reader of stdout is gone$"):
        follower.follow(out, stop=lambda: False, idle_secs=5.0)


class Terminal:
    """sys.stdout as a terminal of `encoding`: what the command writes, in `buffer`."""

    def __init__(self, encoding: str) -> None:
        self.buffer, self.encoding = io.BytesIO(), encoding

    def isatty(self) -> bool:
        return True

    def flush(self) -> None:
        self.buffer.flush()


def test_to_a_terminal_the_task_s_bytes_are_written_out_in_its_encoding(tmp_path, monkeypatch):
    log(tmp_path, text="clear\x1b[2J caf\u00e9 \u2192\n".encode())
    terminal = Terminal("latin-1")
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["tail", str(tmp_path), "web"]) == 0
    assert terminal.buffer.getvalue() == b"clear\\x1b[2J caf\xe9 \\u2192\n"


def test_to_a_terminal_a_followed_log_is_written_out_too(tmp_path, monkeypatch, capfdbinary):
    sandbox = tmp_path / "sb"
    path = log(sandbox, text=b"\x1b[2J\n")
    terminal = Terminal("utf-8")
    monkeypatch.setattr(sys, "stdout", terminal)

    def remove(_follower: Follower) -> None:
        with open(path, "ab") as f:
            f.write(b"\x07bell\n")
        shutil.rmtree(sandbox)

    assert tail_f(monkeypatch, capfdbinary, [str(sandbox), "web"], remove)[0] == 1
    assert terminal.buffer.getvalue() == b"\\x1b[2J\n\\x07bell\n"
