"""Stoker's own output when the file it writes fails for a while, or reaches the file size
limit it runs under: part of the I/O-error audit (`test_audit_ioerrors.py`).

- Stoker's own log and `stoker run > FILE` went quiet for the rest of the process at the
  first write that failed with EIO, as if their reader had gone (a closed pipe): on a file
  whose disk had a bad moment (`faultyfs.flaky`: writes fail with EIO, then work), they now
  lose and count those lines, and say so on the next, once per recovery (the note was
  tried, and left in the stream's buffer, at each failed line), a JSON log in JSON lines
  only (the note came after an empty line).
- A rotating log under a file size limit below its `log_size` (`ulimit -f`: EFBIG) stayed
  at the limit, its run's output dropped for good; it is now rotated there, unless the
  limit is below 4 KiB (a rotation per byte cost minutes of CPU a megabyte).
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from executor.cli.logsetup import JsonFormatter, QuietHandler
from executor.local.console import Output
from executor.logs import log_event
from executor.spool import Spool
from tests.support import faultyfs
from tests.support.stoker_proc import REPO

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]


# ---- Stoker's own log and `stoker run`'s output in a file whose writes fail for a while ----


def test_output_to_a_file_that_fails_for_a_while_goes_on_once_it_works(tmp_path):
    """`stoker run > FILE` (and Stoker's log, SANDBOX/stderr under Mesos) where FILE's disk
    has a bad moment: its writes fail with EIO (at times ENOSPC first) for a while. A write
    that failed with EIO used to silence the stream for the rest of the process, as a
    closed pipe does; now those lines are lost, counted, and said, and the next ones land."""
    with faultyfs.flaky(tmp_path / "fs") as fs, open(fs.path / "out", "w") as stream:
        spool = Spool()
        out = Output(stream, spool)
        out.write("before\n")
        assert spool.drain(5)
        fs.fail()
        for n in range(16):  # 20 kB lines: each needs blocks the device cannot store (EIO)
            out.write(f"during {n} " + "x" * 20_000 + "\n")
        assert spool.drain(5)
        fs.recover()
        for n in range(3):
            out.write(f"after {n}\n")
            assert spool.drain(5)
        gone = out.gone
        lines = (fs.path / "out").read_text().splitlines()
    assert not gone, "one failed write silenced the output for good"
    notes = [line for line in lines if re.match(r"\[stoker: \d+ lines lost: ", line)]
    assert len(notes) == 1 and ("(EIO)" in notes[0] or "disk was full" in notes[0]), notes
    # (what the file's buffer kept of a lost line may be written after them)
    assert lines.index(notes[0]) < lines.index("after 0") < lines.index("after 2"), lines[:8]


class _FailingFile(io.RawIOBase):
    """A regular file whose writes fail with EIO while `failing` (a disk's bad moment)."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb", buffering=0)  # closed by close()
        self.failing = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def tell(self) -> int:  # as a file's: what its buffer holds is told by it
        return self._raw.tell()

    def write(self, data) -> int:
        if self.failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return self._raw.write(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


@pytest.mark.parametrize("spooled", [False, True], ids=["stderr", "stoker-run"])
def test_a_json_log_says_its_lost_lines_in_json_lines_only(tmp_path, spooled):
    """`--log-format json` to a file whose writes fail for a while: the note on the lost
    lines came after an empty line (the note's own line end first, for a torn line), which
    a JSON-lines reader fails on; a JSON log's records are whole (a failed write leaves its
    rest in the stream's buffer, written first): every line is now one JSON object. And the
    note was tried at each line while the file failed, left in the stream's buffer each
    time: one note per failed line, their counts overlapping; now one, once the file
    takes what the buffer kept."""
    raw = _FailingFile(tmp_path / "log")
    stream = io.TextIOWrapper(io.BufferedWriter(raw), line_buffering=True)  # 8 KiB
    handler = QuietHandler(stream, spooled=Spool() if spooled else None)
    handler.setFormatter(JsonFormatter(False))
    log = logging.getLogger("tests.ioerrors.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        for n in range(42):  # 40 failing: more than the stream's buffer holds
            raw.failing = 0 < n < 41
            log_event(log, logging.WARNING, "step", n=n, pad="y" * 300)
            assert not spooled or handler._spool.drain(5)
    finally:
        log.removeHandler(handler)
        stream.close()
    lines = (tmp_path / "log").read_text().split("\n")
    assert lines[-1] == "", lines[-1]
    docs = [json.loads(line) for line in lines[:-1]]  # an empty line fails here
    notes = [doc for doc in docs if doc["event"] == "log_lines_dropped"]
    steps = [doc["n"] for doc in docs if doc["event"] == "step"]
    assert len(notes) == 1, notes  # once per recovery, not once per failed attempt to say it
    if not spooled:  # (`stoker run`'s: "N lines lost: ...")
        assert notes[0]["reason"] == "lines lost: the file could not be written (EIO)", notes
    assert steps[0] == 0 and steps[-1] == 41 and steps == sorted(steps), steps
    lost = notes[0]["count"] if not spooled else int(notes[0]["reason"].split()[0])  # "N lines lost: ..."
    assert len(steps) + lost == 42, (len(steps), notes)  # those the buffer kept land, uncounted


# ---- a rotating log at the file size limit Stoker runs under (RLIMIT_FSIZE) ----

_AT_THE_LIMIT = """
import json, os, resource, sys
from pathlib import Path
from executor.procs.logpump import LogFile
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))  # `ulimit -f 64`; SIGXFSZ is ignored
directory = Path(sys.argv[1])
dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
log = LogFile(dir_fd, "stdout", directory / "stdout", max_bytes=1 << 20, backups=3)
failed = 0
for n in range(150):
    try:
        log.write(b"%04d " % n + b"x" * 995)
    except OSError:
        failed += 1
log.write(b"last\\n")
log.close()
print(json.dumps({"failed": failed, "sizes": {p.name: p.stat().st_size for p in directory.iterdir()}}))
"""


def test_a_rotating_log_at_the_file_size_limit_is_rotated_there(tmp_path, caplog):
    """Under `ulimit -f` smaller than a rotating logger's `log_size`, a log file stopped at
    the limit (EFBIG) and the rest of the run's output was dropped, the file never rotated.
    It is now rotated where the limit stopped it, and at that size from then on."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _AT_THE_LIMIT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["failed"] == 0, result
    assert (tmp_path / "stdout").read_bytes().endswith(b"last\n")
    sizes = result["sizes"]
    assert set(sizes) == {"stdout", "stdout.1", "stdout.2"} and max(sizes.values()) <= 65536, sizes
    assert "log_rotated_at_size_limit" in done.stderr and "RLIMIT_FSIZE" in done.stderr, done.stderr


_BELOW_A_PAGE = """
import os, resource, sys
from pathlib import Path
from executor.procs.logpump import LogFile
directory = Path(sys.argv[1])
(directory / "stdout").write_bytes(b"o" * 10_000)  # an earlier run's, past the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))  # one byte: a file per byte, were it rotated
dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
log = LogFile(dir_fd, "stdout", directory / "stdout", max_bytes=1 << 20, backups=3)
failed = 0
for n in range(20):
    try:
        log.write(b"x" * 1000 + b"\\n")
    except OSError:
        failed += 1
log.close()
print(failed)
"""


_PAST_THE_LIMIT = """
import os, resource, sys
from pathlib import Path
from executor.procs.logpump import LogFile
directory = Path(sys.argv[1])
(directory / "stdout").write_bytes(b"o" * 100_000)  # an earlier run's, under no limit
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
log = LogFile(dir_fd, "stdout", directory / "stdout", max_bytes=1 << 20, backups=3)
for n in range(100):
    log.write(b"x" * 999 + b"\\n")
log.close()
"""


def test_a_log_already_past_the_file_size_limit_is_rotated_at_the_limit(tmp_path):
    """A log that an earlier run left past the limit: it is rotated at once, and the next
    files at the limit, said once (the size it was rotated at was taken for the limit,
    and said again when the next file met the real one)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _PAST_THE_LIMIT, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert sizes["stdout.2"] == 100_000 and sizes["stdout.1"] <= 65536, sizes
    assert done.stderr.count("log_rotated_at_size_limit") == 1, done.stderr


def test_a_file_size_limit_below_a_page_is_not_rotated_at(tmp_path):
    """Rotated at a limit of a byte, a process's output cost a rotation (four renames and
    an open) per byte: 1 MB took minutes of Stoker's CPU. Below 4 KiB the file is not
    rotated: the output is dropped, as a full disk's (`log_write_failed`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _BELOW_A_PAGE, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "20", done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdout"]
    assert "log_rotated_at_size_limit" not in done.stderr, done.stderr[-500:]
