"""Stoker's own log (`stoker executor`'s stderr, SANDBOX/executor.log under Mesos), and `stoker
run`'s output (`stoker run > FILE`), in a file on
a disk that fills, until a line is cut short, and then has room again; Python's streams
buffered or not (`-u`, `PYTHONUNBUFFERED=1`, which many container images set): every line in
the file is whole, the lines lost are counted and said once the disk has room, and the lines
after land, each on a line of its own."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from executor.local.console import Output
from executor.spool import Spool
from tests.support import limits
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(30)

DURING = 60  # at most, lines logged while the disk is full (12 KB: past the page the log ends in)
PAST_THE_BUFFER = 150

# argv: the log format, the directory to fill, how long the disk stays full: "cut" (until a
# line does not land whole) or "past the buffer" (PAST_THE_BUFFER lines, 30 KB: past the 8 KiB
# a buffered stream keeps of the writes a full disk refused)
CHILD = r"""
import logging, os, sys
from executor.cli import logsetup
from executor.logs import log_event

logsetup.configure(sys.argv[1], "INFO")
log = logging.getLogger("probe")
log_event(log, logging.INFO, "before")
filler = os.path.join(sys.argv[2], "filler")
with open(filler, "wb", buffering=0) as f:
    try:
        while True:
            f.write(bytes(4096))
    except OSError:
        pass  # full: ENOSPC
size = os.fstat(2).st_size
for n in range(DURING if sys.argv[3] == "cut" else PAST_THE_BUFFER):
    log_event(log, logging.INFO, "during", n=n, pad="x" * 150)
    size, grown = os.fstat(2).st_size, os.fstat(2).st_size - size
    if grown < 150 and sys.argv[3] == "cut":  # a line did not land whole: the disk freed right after
        break
print(n + 1)  # lines logged while it was full
os.unlink(filler)
for n in range(3):
    log_event(log, logging.INFO, "after", n=n)
""".replace("DURING", str(DURING)).replace("PAST_THE_BUFFER", str(PAST_THE_BUFFER))

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ +\S+: \S+( .*)?$")


@pytest.mark.parametrize("full", ["cut", "past the buffer"])
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_stokers_own_log_on_a_disk_that_fills_keeps_whole_lines_and_says_what_it_lost(
        tmp_path, log_format, unbuffered, full):
    """The lines a full disk refused that the stream's buffer kept land once there is room,
    and only those it could not keep are counted lost (was: every line whose write failed,
    the kept ones too: `count=1` for a cut line finished later, 150 for 150 lines of which
    the buffer kept 43)."""
    with limits.tmpfs(tmp_path / "fs") as fs:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        env.update(PYTHONPATH=str(REPO), **({"PYTHONUNBUFFERED": "1"} if unbuffered else {}))
        with open(fs / "executor.log", "ab") as stderr:
            done = subprocess.run([sys.executable, "-c", CHILD, log_format, str(fs), full], stderr=stderr,
                                  stdout=subprocess.PIPE, env=env, timeout=20, cwd=REPO)
        assert done.returncode == 0
        lines = (fs / "executor.log").read_text(errors="replace").splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # raises on a torn or glued line
        events = [(r["event"], r.get("n"), r.get("count")) for r in records]
    else:
        torn = [line[:120] for line in lines if not TEXT_LINE.match(line)  # an empty line too: the
                or " during " in line and not line.endswith(" pad=" + "x" * 150)]  # note's after whole ones
        assert not torn, torn
        events = [(line.split()[4], line.split("n=")[1].split()[0] if " n=" in line else None,
                   line.split("count=")[1].split()[0] if "count=" in line else None)
                  for line in lines if line]
    notes = [count for event, _, count in events if event == "log_lines_dropped"]
    written = [n for event, n, _ in events if event == "during"]
    logged = int(done.stdout)
    assert len(notes) == (0 if full == "cut" else 1), events  # a cut line is finished: none lost
    assert len(written) + sum(int(count) for count in notes) == logged, (written, notes)  # written or counted
    assert full == "cut" or 0 < len(written) < logged, written  # some kept, some lost
    assert [str(n) for event, n, _ in events if event == "after"] == ["0", "1", "2"], events


@pytest.mark.parametrize("full", ["cut", "past the buffer"])
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_stoker_runs_output_on_a_disk_that_fills_keeps_whole_lines_and_says_what_it_lost(tmp_path, unbuffered, full):
    """As Stoker's own log: the lines the stream's buffer kept land, and only the others are
    counted lost (was `up to N lines lost`, N every line whose write failed: `up to 1` for a
    cut line finished later)."""
    with limits.tmpfs(tmp_path / "fs") as fs:
        path = fs / "out"
        raw = io.FileIO(path, "a")  # as `python -u` makes stdout: the raw file, written through
        stream = (io.TextIOWrapper(raw, write_through=True) if unbuffered
                  else io.TextIOWrapper(io.BufferedWriter(raw), line_buffering=True))
        spool = Spool()
        out = Output(stream, spool)
        out.write("before\n")
        assert spool.drain(5)
        filler = limits.fill(fs)
        for n in range(DURING if full == "cut" else PAST_THE_BUFFER):
            size = path.stat().st_size
            out.write(f"during {n} " + "x" * 150 + "\n")
            assert spool.drain(5)
            if path.stat().st_size - size < 150 and full == "cut":  # a line did not land whole
                break
        logged = n + 1
        filler.unlink()
        for n in range(3):
            out.write(f"after {n}\n")
            assert spool.drain(5)
        lines = path.read_text().splitlines()
        stream.close()
    # no empty line: the note's own line end before it only after a line cut short
    whole = re.compile(r"^(before|during \d+ x{150}|after \d|\[stoker: \d+ lines lost: the disk was full\])$")
    assert not [line[:120] for line in lines if not whole.match(line)], lines[-6:]
    notes = [int(line.split()[1]) for line in lines if line.startswith("[stoker: ")]
    written = [line for line in lines if line.startswith("during ")]
    assert len(notes) == (0 if full == "cut" else 1), lines[-6:]  # a cut line is finished: none lost
    assert len(written) + sum(notes) == logged, (len(written), notes, logged)
    assert full == "cut" or 0 < len(written) < logged, len(written)  # some kept, some lost
    assert lines[-3:] == ["after 0", "after 1", "after 2"]


def test_the_note_on_lost_lines_starts_a_line_of_its_own_after_a_line_a_full_disk_cut(tmp_path):
    """A line longer than the stream's buffer goes to the file in pieces: a disk with 8 KiB
    left takes what fits and refuses the rest, lost. The note that says so, once the
    disk has room, starts on a line of its own (its line end written first); after a whole
    line it has none (was: an empty line before every note)."""
    with limits.tmpfs(tmp_path / "fs") as fs:
        path = fs / "out"
        stream = io.TextIOWrapper(io.BufferedWriter(io.FileIO(path, "a")), line_buffering=True)
        spool = Spool()
        out = Output(stream, spool)
        out.write("before\n")
        assert spool.drain(5)
        filler = limits.fill(fs)
        os.truncate(filler, filler.stat().st_size - 8192)  # 8 KiB left
        out.write("y" * 65536 + "\n")
        assert spool.drain(5)
        filler.unlink()
        out.write("after\n")
        assert spool.drain(5)
        lines = path.read_text().splitlines()
        stream.close()
    assert len(lines) == 4 and set(lines[1]) == {"y"} and 0 < len(lines[1]) < 65536, [line[:40] for line in lines]
    assert lines[::3] == ["before", "after"] and lines[2] == "[stoker: 1 lines lost: the disk was full]", lines[2:]
