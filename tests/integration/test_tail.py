"""`stoker tail` (executor/cli/tail.py): the last lines of a run's log, read backwards
without loading the file; `-f` across rotations and into the next run; and nothing ever
read through a symlink or a FIFO a task planted in its sandbox."""
from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.cli.tail import Follower, ProcessLogs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)


def log(sandbox, process="web", run=0, stream="stdout", text=b""):
    d = sandbox / ".logs" / process / str(run)
    d.mkdir(parents=True, exist_ok=True)
    (d / stream).write_bytes(text)
    return d / stream


def tail(capfdbinary, *args) -> tuple[int, bytes, str]:
    code = main(["tail", *map(str, args)])
    out, err = capfdbinary.readouterr()
    return code, out, err.decode()


def test_an_earlier_attempts_log_is_read_with_attempt_and_a_removed_one_is_named(tmp_path, capfdbinary):
    log(tmp_path, run=3, stream="stderr", text=b"this attempt\n")
    earlier = tmp_path / ".logs.attempt-7" / "web" / "3"
    earlier.mkdir(parents=True)
    (earlier / "stderr").write_bytes(b"the attempt that failed\n")
    assert tail(capfdbinary, tmp_path, "web", "--stderr", "--run", 3) == (0, b"this attempt\n", "")
    assert tail(capfdbinary, tmp_path, "web", "--stderr", "--run", 3, "--attempt", 7) == (
        0, b"the attempt that failed\n", "")
    code, out, err = tail(capfdbinary, tmp_path, "web", "--attempt", 5)
    assert (code, out) == (1, b"")
    assert err == (f"stoker: error: {tmp_path}/.logs.attempt-5 does not exist: this sandbox keeps --attempt 7 "
                   f"(stoker run keeps the logs of the first attempt and of the last --keep-attempts ones "
                   f"as .logs.attempt-N, N from 0)\n")
    (tmp_path / ".logs.attempt-0" / "web").mkdir(parents=True)  # the first attempt's
    assert "this sandbox keeps --attempt 0, 7 (" in tail(capfdbinary, tmp_path, "web", "--attempt", 5)[2]


def test_attempt_in_a_sandbox_that_kept_none_says_so(tmp_path, capfdbinary):
    """`stoker status` numbers attempts from 1, `.logs.attempt-N` from 0: the error lists
    what there is, so a guess from the status's `attempt=` is put right at once."""
    log(tmp_path, run=0, text=b"only attempt\n")
    code, out, err = tail(capfdbinary, tmp_path, "web", "--attempt", 1)
    assert (code, out) == (1, b"")
    assert "does not exist: this sandbox keeps no earlier attempt's logs (" in err


def test_the_latest_run_is_the_highest(tmp_path):
    for run in (0, 2, 10):
        log(tmp_path, run=run, text=f"run {run}\n".encode())
    (tmp_path / ".logs" / "web" / "not-a-run").mkdir()
    assert ProcessLogs(tmp_path, "web", "stdout").runs() == [0, 2, 10]



@pytest.mark.parametrize("planted", ["\u00b2", "\u0663", "9" * 255, "007"],
                         ids=["superscript two", "arabic-indic three", "255 digits", "leading zeros"])
def test_a_planted_directory_whose_name_only_looks_like_a_run_is_not_one(tmp_path, capfdbinary, planted):
    """str.isdigit() is true of '²' (int() refuses it: tail failed) and of '٣' (int() reads 3,
    whose directory is '3'), and '007' reads 7; 255 digits outnumber every run: none is a
    run, and tail shows the real latest."""
    log(tmp_path, run=1, text=b"the real run\n")
    (tmp_path / ".logs" / "web" / planted).mkdir()
    assert ProcessLogs(tmp_path, "web", "stdout").runs() == [1]
    assert tail(capfdbinary, tmp_path, "web") == (0, b"the real run\n", "")

LINES = b"".join(b"line %d\n" % n for n in range(1, 21))


@pytest.mark.parametrize("args, expected", [
    ([], b"".join(b"line %d\n" % n for n in range(11, 21))),
    (["-n", "3"], b"line 18\nline 19\nline 20\n"),
    (["-n", "0"], b""),
    (["-n", "100"], LINES),
    (["-n", "+1"], LINES),
    (["-n", "+19"], b"line 19\nline 20\n"),
    (["-n", "+25"], b""),
    (["--run", "0", "-n", "1"], b"first run\n"),
    (["--stderr"], b"oops\n"),
])
def test_the_last_lines(tmp_path, capfdbinary, args, expected):
    log(tmp_path, run=0, text=b"first run\n")
    log(tmp_path, run=1, text=LINES)
    log(tmp_path, run=1, stream="stderr", text=b"oops\n")
    code, out, err = tail(capfdbinary, tmp_path, "web", *args)
    assert (code, out, err) == (0, expected, "")


def test_to_a_pipe_or_a_file_the_bytes_are_copied_exactly(tmp_path, capfdbinary):
    """Escape sequences and bytes that are not UTF-8 too: only a terminal gets them written
    out (tests/e2e/test_terminal.py)."""
    text = b"\x1b[2J\x1b]52;c;aGVsbG8=\x07 \xff\xfe \xc2\x9b \xe6\x97\xa5\r\n\tend\xe6\x97"
    log(tmp_path, text=text)
    assert tail(capfdbinary, tmp_path, "web", "-n", "+1") == (0, text, "")


def test_a_last_line_without_its_newline_is_a_line(tmp_path, capfdbinary):
    log(tmp_path, text=b"a\nb\nc")
    assert tail(capfdbinary, tmp_path, "web", "-n", "2")[1] == b"b\nc"


def bytes_read_by_this_process() -> int:
    """What this process has read so far, through every read system call (Linux's rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no rchar line")


def test_five_lines_of_a_200_mb_log_read_from_its_end(tmp_path, capfdbinary):
    # What it reads, not how long it takes (a loaded machine decides that; bench/bench_ops.py
    # measures it): the last lines come from the last blocks, never the 200 MB before them.
    path = log(tmp_path)
    with open(path, "r+b") as f:  # sparse: 200 MB of zeros cost nothing to write
        f.truncate(200 * 1024 * 1024)
        f.seek(0, os.SEEK_END)
        f.write(b"".join(b"last %d\n" % n for n in range(1, 11)))
    before = bytes_read_by_this_process()
    code = main(["tail", str(tmp_path), "web", "-n", "5"])
    read = bytes_read_by_this_process() - before
    out, _ = capfdbinary.readouterr()
    assert code == 0 and out == b"last 6\nlast 7\nlast 8\nlast 9\nlast 10\n"
    assert read < 4 * 1024 * 1024, f"tail -n 5 of a 200 MB log read {read} bytes"


def test_what_is_missing_is_said_and_exits_1_or_2_for_a_sandbox_that_is_not_one(tmp_path, capfdbinary):
    code, _, err = tail(capfdbinary, tmp_path, "db")
    assert code == 1 and err == f"stoker: error: process 'db' has no log of any run in {tmp_path}/.logs\n"
    log(tmp_path, run=0)
    code, _, err = tail(capfdbinary, tmp_path, "web", "--run", "3")
    assert code == 1 and "has no log of run 3" in err
    code, _, err = tail(capfdbinary, tmp_path, "wbe")  # a misspelt name: the ones there are named
    assert code == 1 and err == (f"stoker: error: process 'wbe' has no log of any run in {tmp_path}/.logs "
                                 "(its processes with logs: 'web')\n")
    code, _, err = tail(capfdbinary, tmp_path, "../etc")
    assert code == 1 and err == "stoker: error: '../etc' is not a plain file name\n"
    code, _, err = tail(capfdbinary, tmp_path / "nowhere", "web")
    assert (code, err) == (2, f"stoker: error: sandbox '{tmp_path}/nowhere' does not exist\n")
    code, _, err = tail(capfdbinary, "web-0-nope", "web")
    assert code == 2 and err.startswith("stoker: error: sandbox 'web-0-nope' does not exist, and no "
                                        "task in the registry ")


@pytest.mark.parametrize("plant", ["file", "run directory", "process directory", ".logs"])
def test_a_symlink_anywhere_below_the_sandbox_is_never_followed(tmp_path, capfdbinary, plant):
    secret = tmp_path / "outside"
    log(secret, text=b"root:$6$secret-hash:19000:0:99999:7:::\n")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    if plant == ".logs":
        os.symlink(secret / ".logs", sandbox / ".logs")
    elif plant == "process directory":
        (sandbox / ".logs").mkdir()
        os.symlink(secret / ".logs" / "web", sandbox / ".logs" / "web")
    elif plant == "run directory":
        (sandbox / ".logs" / "web").mkdir(parents=True)
        os.symlink(secret / ".logs" / "web" / "0", sandbox / ".logs" / "web" / "0")
    else:
        (sandbox / ".logs" / "web" / "0").mkdir(parents=True)
        os.symlink(secret / ".logs" / "web" / "0" / "stdout", sandbox / ".logs" / "web" / "0" / "stdout")
    code, out, err = tail(capfdbinary, sandbox, "web", "-n", "5")
    assert code == 1 and out == b"" and b"secret" not in out
    assert err.startswith("stoker: error:")



def test_a_log_hard_linked_to_a_file_outside_is_refused(tmp_path, capfdbinary):
    """Where hard links are not protected, a task may link a file it cannot read (say
    /etc/shadow, on the sandbox's file system) as its log; `stoker tail` as root printed it."""
    secret = tmp_path / "outside"
    secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    sandbox = tmp_path / "sandbox"
    (sandbox / ".logs" / "web" / "0").mkdir(parents=True)
    os.link(secret, sandbox / ".logs" / "web" / "0" / "stdout")
    code, out, err = tail(capfdbinary, sandbox, "web")
    assert code == 1 and out == b"" and "stdout: it is a regular file with 2 hard links" in err

def test_a_fifo_log_is_refused_at_once(tmp_path, capfdbinary):
    (tmp_path / ".logs" / "web" / "0").mkdir(parents=True)
    os.mkfifo(tmp_path / ".logs" / "web" / "0" / "stdout")
    started = time.monotonic()
    code, out, err = tail(capfdbinary, tmp_path, "web")
    assert code == 1 and out == b"" and "stdout: it is a FIFO, not a regular file" in err
    assert time.monotonic() - started < 5


@contextlib.contextmanager
def following(sandbox: Path, run: int) -> Iterator[io.BytesIO]:
    """`stoker tail -f` of web's stdout from `run`, on a thread, into the BytesIO yielded;
    stopped and joined on the way out."""
    logs = ProcessLogs(sandbox, "web", "stdout")
    rdir, fd = logs.open(run)
    out = io.BytesIO()
    done = threading.Event()
    follower = Follower(logs, run, rdir, fd, os.fstat(fd).st_size, pinned=False)
    thread = threading.Thread(target=follower.follow, args=(out, done.is_set, 0.01))
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join(5)


def test_follow_prints_what_is_appended_across_a_rotation(tmp_path):
    path = log(tmp_path, text=b"old\n")
    with following(tmp_path, 0) as out:
        with open(path, "ab") as f:
            f.write(b"new-1\n")
        os.replace(path, path.with_name("stdout.1"))  # rotation: a fresh file appears
        path.write_bytes(b"new-2\n")
        wait_for(lambda: b"new-2\n" in out.getvalue(), 5)
    assert out.getvalue() == b"new-1\nnew-2\n"


def test_follow_goes_on_into_the_next_run_after_a_marker_line(tmp_path):
    log(tmp_path, run=0, text=b"zero\n")
    with following(tmp_path, 0) as out:
        with open(tmp_path / ".logs/web/0/stdout", "ab") as f:
            f.write(b"last words of run 0\n")
        (tmp_path / ".logs/web/1").mkdir()  # the directory first, its log a moment later
        log(tmp_path, run=1, text=b"one\n")
        wait_for(lambda: b"one\n" in out.getvalue(), 5)
    assert out.getvalue() == b"last words of run 0\n==> web run 1: stdout <==\none\n"


def test_follow_starts_a_next_run_already_rotated_at_its_oldest_file(tmp_path):
    log(tmp_path, run=0, text=b"zero\n")
    with following(tmp_path, 0) as out:
        (tmp_path / ".logs/web/1").mkdir()
        (tmp_path / ".logs/web/1/stdout.1").write_bytes(b"one, first file\n")
        log(tmp_path, run=1, text=b"one, second file\n")
        wait_for(lambda: b"second file\n" in out.getvalue(), 5)
    assert out.getvalue() == b"==> web run 1: stdout <==\none, first file\none, second file\n"


def test_a_pinned_run_is_followed_alone_and_following_stops_when_asked(tmp_path):
    logs = ProcessLogs(tmp_path, "web", "stdout")
    log(tmp_path, run=0, text=b"zero\n")
    rdir, fd = logs.open(0)
    log(tmp_path, run=1, text=b"one\n")
    idle = iter(range(10))
    out = io.BytesIO()
    follower = Follower(logs, 0, rdir, fd, os.fstat(fd).st_size, pinned=True)
    assert follower.follow(out, stop=lambda: next(idle) >= 5, idle_secs=0.001) == 0
    assert out.getvalue() == b""  # five idle looks, and run 1 was never followed


def test_a_run_without_its_log_file_is_named_with_the_reason(tmp_path, capfdbinary):
    """A process logged to the console or nowhere has a run directory and no files: tail
    said `[Errno 2] No such file or directory: 'stdout'`, naming neither run nor path."""
    (tmp_path / ".logs" / "web" / "0").mkdir(parents=True)
    code, out, err = tail(capfdbinary, tmp_path, "web")
    assert (code, out) == (1, b"")
    assert err == (f"stoker: error: run 0 of process 'web' has no stdout log ({tmp_path}/.logs/web/0/"
                   "stdout does not exist: a process whose Logger destination is 'console' or "
                   "'none' keeps none)\n")


def rotate(path: Path, text: bytes, keep: int | None = None) -> None:
    """The log pump's rotation: `.1` .. `.N` shift up one, the name becomes `.1`, a new file;
    with `keep`, the backup shifted past `.keep` is dropped."""
    backups = sorted((p for p in path.parent.glob(path.name + ".*")),
                     key=lambda p: int(p.suffix[1:]), reverse=True)
    for p in backups:
        number = int(p.suffix[1:]) + 1
        if keep is not None and number > keep:
            p.unlink()
        else:
            os.replace(p, path.with_name(f"{path.name}.{number}"))
    os.replace(path, path.with_name(path.name + ".1"))
    path.write_bytes(text)


def _followed_burst(sandbox: Path, texts: tuple[bytes, ...], keep: int | None = None) -> bytes:
    """What `-f` prints of web's run 0 when, at its first look, `b` is appended and the log
    is then rotated once for each of `texts` (a new file holding it), `keep` backups kept."""
    path = log(sandbox, text=b"old\n")
    logs = ProcessLogs(sandbox, "web", "stdout")
    rdir, fd = logs.open(0)
    out = io.BytesIO()
    looks = 0

    def burst_then_stop() -> bool:
        nonlocal looks
        looks += 1
        if looks == 1:
            with open(path, "ab") as f:
                f.write(b"b\n")
            for text in texts:
                rotate(path, text, keep)
        return looks > 100 or out.getvalue().endswith(texts[-1])

    follower = Follower(logs, 0, rdir, fd, os.fstat(fd).st_size, pinned=True)
    assert follower.follow(out, stop=burst_then_stop, idle_secs=0.001) == 0
    return out.getvalue()


def test_follow_prints_every_file_of_a_burst_of_rotations_between_two_looks(tmp_path):
    """Three rotations between two looks (a burst faster than FOLLOW_IDLE_SECS): `-f`
    jumped from the file it held to the newest, and what the two between held was never
    printed (here 31,217 lines of 200,000 came through)."""
    assert _followed_burst(tmp_path, (b"c\n", b"d\n", b"e\n")) == b"b\nc\nd\ne\n"


@pytest.mark.parametrize("rotations, expected", [
    (3, b"b\nc\nd\ne\n"),  # the held file dropped, and the one after it is the oldest backup
    (5, b"b\ne\nf\ng\n"),  # two more dropped too before they were read: gone for any reader
])
def test_follow_goes_on_from_the_oldest_backup_once_the_file_held_is_rotated_past_the_last(
        tmp_path, rotations, expected):
    """A logger that keeps 2 backups, rotated 3 or 5 times between two looks: the file `-f`
    held is gone, and it jumped to the newest file, never printing the backups still there
    (a shell writing 10 KB bursts into 10 KB files lost 3 files in 5 here)."""
    texts = (b"c\n", b"d\n", b"e\n", b"f\n", b"g\n")[:rotations]
    assert _followed_burst(tmp_path, texts, keep=2) == expected


def test_follow_goes_on_into_the_next_attempts_runs(tmp_path):
    """`stoker run` restarting a service keeps the attempt's logs as `.logs.attempt-N` and
    starts a new `.logs`, its runs from 0 again: `-f` stayed on the moved file for good."""
    log(tmp_path, run=1, text=b"first attempt\n")
    with following(tmp_path, 1) as out:
        os.rename(tmp_path / ".logs", tmp_path / ".logs.attempt-0")
        log(tmp_path, run=0, text=b"second attempt\n")
        wait_for(lambda: b"second attempt\n" in out.getvalue(), 5)
    assert out.getvalue() == b"==> web run 0: stdout <==\nsecond attempt\n"


@pytest.mark.parametrize("args, expected", [
    (["-n", "2"], b"3\n4\n"),  # right after a rotation the file holds nothing
    (["-n", "4"], b"1\n2\n3\n4\n"),
    (["-n", "+1"], b"0\n1\n2\n3\n4\n"),
    (["-n", "+3"], b"2\n3\n4\n"),
    (["-n", "+9"], b""),
], ids=["last 2", "last 4", "+1", "+3", "past the end"])
def test_a_rotated_logs_lines_reach_into_its_backups(tmp_path, capfdbinary, args, expected):
    """Right after a rotation `stoker tail` printed nothing, and `-n +1` (the command printed
    under a failed run for "all of it") only what the last file held."""
    path = log(tmp_path, text=b"")
    path.with_name("stdout.2").write_bytes(b"0\n1\n")
    path.with_name("stdout.1").write_bytes(b"2\n3\n4\n")
    assert tail(capfdbinary, tmp_path, "web", *args) == (0, expected, "")


def test_a_line_cut_by_a_rotation_is_one_line(tmp_path, capfdbinary):
    path = log(tmp_path, text=b"cd\nlast")  # the pump cuts at log_size, even mid-line
    path.with_name("stdout.1").write_bytes(b"a\nb")
    assert tail(capfdbinary, tmp_path, "web", "-n", "2") == (0, b"bcd\nlast", "")
    assert tail(capfdbinary, tmp_path, "web", "-n", "1") == (0, b"last", "")
    assert tail(capfdbinary, tmp_path, "web", "-n", "+2") == (0, b"bcd\nlast", "")


def test_a_removed_run_says_so_and_which_runs_are_kept(tmp_path, capfdbinary):
    for run in [0, *range(30, 50)]:
        log(tmp_path, run=run, text=f"run {run}\n".encode())
    code, _, err = tail(capfdbinary, tmp_path, "web", "--run", "5")
    assert code == 1 and err == (
        f"stoker: error: the log of run 5 of process 'web' was removed: a process keeps its first "
        f"run's logs and its last 20 runs' (in {tmp_path}/.logs: runs 0, 30–49)\n")
    assert tail(capfdbinary, tmp_path, "web", "--run", "0")[1] == b"run 0\n"
    code, _, err = tail(capfdbinary, tmp_path, "web", "--run", "50")  # not there yet
    assert code == 1 and "has no log of run 50" in err


@pytest.mark.parametrize("runs, asked, words", [
    ([0, 5], 1, "was removed: a process keeps its first run's logs and its last 20 runs' (in {logs}: runs 0, 5)"),
    ([0, 5, 6], 1, "was removed: a process keeps its first run's logs and its last 20 runs' (in {logs}: runs 0, 5–6)"),
    ([3], 1, "was removed: a process keeps its first run's logs and its last 20 runs' (in {logs}: runs 3)"),
    ([1, 5], 0, "has no log of run 0 in {logs}"),  # the first run's are never removed
    ([0, 5], 5, ""),
])
def test_a_run_between_the_first_and_the_last_is_the_one_said_removed(tmp_path, capfdbinary, runs, asked, words):
    """Only a run after the first and before the last kept one was removed by the pruning
    (its first run's logs and its last 20 are kept); the runs shown are all when two or fewer."""
    for run in runs:
        log(tmp_path, run=run, text=b"x\n")
    code, _, err = tail(capfdbinary, tmp_path, "web", "--run", asked)
    subject = f"the log of run {asked} of process 'web' " if "removed" in words else "process 'web' "
    expected = f"stoker: error: {subject}{words.format(logs=f'{tmp_path}/.logs')}\n" if words else ""
    assert (code, err) == (1 if words else 0, expected)


def test_a_misspelt_process_lists_the_directories_with_logs_only(tmp_path, capfdbinary):
    for process in ("web", "db"):
        log(tmp_path, process=process)
    (tmp_path / ".logs" / ".hidden").mkdir()
    (tmp_path / ".logs" / "notes").write_bytes(b"")
    (tmp_path / ".logs" / "link").symlink_to(tmp_path / ".logs" / "web")
    code, _, err = tail(capfdbinary, tmp_path, "wbe")
    assert (code, err) == (1, f"stoker: error: process 'wbe' has no log of any run in {tmp_path}/.logs "
                              "(its processes with logs: 'db', 'web')\n")
    code, _, err = tail(capfdbinary, tmp_path, "web", "--run", 3)  # a process that is there: none listed
    assert (code, err) == (1, f"stoker: error: process 'web' has no log of run 3 in {tmp_path}/.logs\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".logs").mkdir()
    code, _, err = tail(capfdbinary, tmp_path / "empty", "web")  # no process has logs: none listed
    assert (code, err) == (1, f"stoker: error: process 'web' has no log of any run in {tmp_path}/empty/.logs\n")


def test_an_attempt_in_a_sandbox_that_cannot_be_listed_says_so(tmp_path, capfdbinary, monkeypatch):
    from executor.local import attempts

    assert attempts.kept_numbers(tmp_path / "nowhere") is None
    log(tmp_path, run=0)
    monkeypatch.setattr(attempts, "kept_numbers", lambda sandbox: None)
    code, _, err = tail(capfdbinary, tmp_path, "web", "--attempt", 1)
    assert (code, err) == (1, f"stoker: error: {tmp_path}/.logs.attempt-1 does not exist: this sandbox cannot be "
                              "listed (stoker run keeps the logs of the first attempt and of the last "
                              "--keep-attempts ones as .logs.attempt-N, N from 0)\n")


@pytest.mark.parametrize(("plant", "named", "why"), [
    ("directory", ".logs/web/0/stdout", "stdout: it is a directory, not a regular file"),
    ("process symlink", ".logs/web", "web: it is a symlink, not a directory (Stoker follows no symlink inside a sandbox)"),
])
def test_a_log_that_cannot_be_read_is_named_by_its_path(tmp_path, capfdbinary, plant, named, why):
    """The error named the last part alone (`stdout: it is a directory`): which sandbox, which
    run? It names the log's path, then the part that failed."""
    if plant == "directory":
        (tmp_path / ".logs" / "web" / "0" / "stdout").mkdir(parents=True)
    else:
        (tmp_path / ".logs").mkdir()
        os.symlink("/etc", tmp_path / ".logs" / "web")
    code, out, err = tail(capfdbinary, tmp_path, "web")
    assert (code, out) == (1, b"")
    assert err == f"stoker: error: cannot read the log of 'web' ({tmp_path}/{named}): {why}\n"


def test_follow_waits_for_the_next_attempt_when_the_ended_ones_logs_are_not_kept(tmp_path):
    """`stoker run --keep-attempts 0`: the attempt followed had its `.logs` renamed, then
    removed, before the next attempt's first run made its own. The sandbox is still there:
    it is followed into that run, not taken for a sandbox deleted."""
    import shutil

    log(tmp_path, run=0, text=b"zero\n")
    with following(tmp_path, 0) as out:
        os.rename(tmp_path / ".logs", tmp_path / ".logs.attempt-1")
        shutil.rmtree(tmp_path / ".logs.attempt-1")
        time.sleep(0.1)  # a few idle looks with no run to go on to
        log(tmp_path, run=0, text=b"next attempt\n")
        wait_for(lambda: b"next attempt\n" in out.getvalue(), 5)
    assert out.getvalue() == b"==> web run 0: stdout <==\nnext attempt\n"


def test_a_gone_task_s_sandbox_another_task_holds_is_refused_in_words(tmp_path, capfdbinary, monkeypatch):
    """Whose the sandbox is now is `_another_task_s`' (tests/e2e/test_gone.py makes one)."""
    from executor.cli import tail as tail_cli

    log(tmp_path, text=b"the later task's\n")
    monkeypatch.setattr(tail_cli, "_another_task_s", lambda target: "now task web-0-2's")
    monkeypatch.chdir(tmp_path)  # (the target as given, the sandbox as resolved)
    assert tail(capfdbinary, ".", "web") == (
        1, b"", f"stoker: error: task '.' is GONE: the logs in '{tmp_path}' are another task's (now task "
                "web-0-2's)\n")
