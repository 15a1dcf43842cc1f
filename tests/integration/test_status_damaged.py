"""`stoker status` of a damaged checkpoint: one with no whole record (empty, a torn header, garbled
lines) told as its supervisor's, a damaged line further down not blamed on the header, no
header at all, a damaged record's byte offset, and a line past the readers' 1 MiB cap named
with its size."""
from __future__ import annotations

import json
import os
import re
import time

import pytest

from executor.cli.main import main
from executor.host.identity import own_identity
from tests.support.statuscli import RUNNING, header, registered_as_web_0_1, status, write

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("kept", [b"", b'{"kind":"header","task":"web.0","job_'], ids=["empty", "torn header"])
def test_a_checkpoint_with_no_whole_record_is_told_as_its_supervisor_s(tmp_path, capsys, kept):
    """A supervisor on a full disk goes on (its records are held until they fit), its
    checkpoint made but empty, or cut inside its header by a crash. `status` said "error:
    the checkpoint ... holds no record" (exit 1) of a running task, and of one whose
    supervisor then died, where without the file it says who took the sandbox and whether it
    runs (exit 0), as here."""
    import fcntl

    me = own_identity()
    sandbox = tmp_path / "sb"
    (sandbox / ".stoker").mkdir(parents=True)
    (sandbox / ".stoker" / "checkpoint.jsonl").write_bytes(kept)
    lock = sandbox / ".stoker" / "supervisor.lock"
    lock.write_text(json.dumps({"pid": me.pid, "start": me.start_ticks, "boot": me.boot_id,
                                "front_end": "run", "since": time.time()}))
    fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # its supervisor (this process) runs
        code, out, _ = status(capsys, sandbox)
        assert code == 0 and out.startswith(f"sandbox {sandbox}  state=NEW\n"), out
        assert (f"the checkpoint in {sandbox}/.stoker holds no record yet: its supervisor "
                f"(pid {me.pid}) is starting") in out, out
    finally:
        os.close(fd)
    lock.write_text(json.dumps({"pid": me.pid, "start": me.start_ticks + 100, "boot": me.boot_id,
                                "front_end": "run", "since": 1000.0}))  # another process of that pid: gone
    code, out, _ = status(capsys, sandbox, "--json")
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"], doc["supervisor_alive"]) == (0, "LOST", me.pid, False)
    assert doc["problem"] == (f"the checkpoint in {sandbox}/.stoker holds no record: its supervisor "
                              f"(pid {me.pid}) died before it recorded anything")


def test_a_garbled_checkpoint_of_no_whole_record_is_said_as_garbled_not_as_nothing_recorded(
        tmp_path, capsys, monkeypatch):
    """Bytes replaced in the middle of each of its lines (the header's and the next), not a
    write cut at the end: `status` said its supervisor "died before it recorded anything"."""
    me = own_identity()
    sandbox = tmp_path / "sb"
    write(sandbox, [header(me.pid, me.start_ticks + 100), RUNNING[0]])
    path = sandbox / ".stoker" / "checkpoint.jsonl"
    lines = path.read_bytes().split(b"\n")
    garbled = [line[:20] + b"\x00" * 8 + line[28:] if line else line for line in lines]
    path.write_bytes(b"\n".join(garbled))
    (sandbox / ".stoker" / "supervisor.lock").write_text(json.dumps(
        {"pid": me.pid, "start": me.start_ticks + 100, "boot": me.boot_id, "front_end": "run", "since": 1000.0}))
    code, out, _ = status(capsys, sandbox, "--json")
    doc = json.loads(out)
    assert (code, doc["state"], doc["supervisor_pid"]) == (0, "LOST", me.pid)
    excerpt = '{"kind":"header","ta' + "\\x00" * 8 + '.0","job_key":"c/r/e/web","task_...'
    assert doc["problem"] == (
        f"the checkpoint in {sandbox}/.stoker holds no readable record (2 lines, none a record: "
        f"the first, at offset 0, is garbled, not JSON: '{excerpt}'): its supervisor (pid {me.pid}) "
        "is gone; what it recorded cannot be read")
    path.write_bytes(b"\n".join([lines[0], *path.read_bytes().split(b"\n")[1:]]))  # its header whole
    code, out, err = status(capsys, sandbox)
    assert code == 0 and out.startswith("task web.0  key=c/r/e/web  state=LOST"), out
    assert err.startswith(f"stoker: warning: checkpoint record 2, a record: a torn line at offset "
                          f"{len(lines[0]) + 1} (a write cut short"), err
    # its header garbled, the next record whole, read by its task id: was "keeps no attempt of
    # its supervisor, only other runs' of the sandbox", of a sandbox no other run had
    path.write_bytes(b"\n".join([garbled[0], lines[1], b""]))
    registered_as_web_0_1(tmp_path, monkeypatch, sandbox, me)
    code, out, _ = status(capsys, "web-0-1")
    assert code == 0 and (f"keeps no attempt of its supervisor (pid {me.pid}): it is gone; its records "
                          "follow no readable header (its own header garbled?): checkpoint record 1, a "
                          "record: a torn line at offset 0") in out, out


@pytest.mark.parametrize("first,blamed", [
    ({"supervisor_pid": None}, None),  # read, without its supervisor's pid: not garbled
    ({"kind": "heaxer"}, "checkpoint record 1, of a kind not known ('heaxer'); skipped"),
])
def test_a_garbled_line_further_down_is_not_blamed_on_the_header(tmp_path, capsys, monkeypatch, first, blamed):
    """The "its own header garbled?" hint named the first damaged record whenever the first
    attempt had no supervisor pid: a header read without one (a garbled line further down
    blamed on it), and a header whose "kind" was garbled (skipped without a warning: the
    record it blamed, again, the one further down). It names the record before the first
    ones read, or says nothing."""
    me = own_identity()
    sandbox = tmp_path / "sb"
    write(sandbox, [{**header(me.pid, me.start_ticks + 100), **first}, *RUNNING])
    path = sandbox / ".stoker" / "checkpoint.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][:20] + b"\x00" * 8 + lines[2][28:]  # record 3, further down
    path.write_bytes(b"\n".join(lines))
    registered_as_web_0_1(tmp_path, monkeypatch, sandbox, me)
    code, out, _ = status(capsys, "web-0-1")
    assert code == 0 and f"keeps no attempt of its supervisor (pid {me.pid})" in out, out
    assert "checkpoint record 3" not in out, out
    if blamed is None:
        assert "header garbled" not in out and "only other runs' of the sandbox" in out, out
    else:
        assert f"follow no readable header (its own header garbled?): {blamed}" in out, out


def test_a_checkpoint_that_begins_with_no_header_is_said_so_not_as_other_runs(tmp_path, capsys, monkeypatch):
    """Its header's line gone (no damaged line in its place), whole records after it: was
    "keeps no attempt of its supervisor, only other runs' of the sandbox", where no other run
    left a record; the hint says no header came first, in `stoker status`, its JSON and
    `stoker ps` alike."""
    me = own_identity()
    sandbox = tmp_path / "sb"
    write(sandbox, [header(me.pid, me.start_ticks + 100), *RUNNING])
    path = sandbox / ".stoker" / "checkpoint.jsonl"
    path.write_bytes(b"\n".join(path.read_bytes().split(b"\n")[1:]))
    registered_as_web_0_1(tmp_path, monkeypatch, sandbox, me)
    said = "follow no readable header (its own header garbled?): no header came before its first record"
    code, out, _ = status(capsys, "web-0-1")
    assert code == 0 and said in out and "only other runs'" not in out, out
    code, out, _ = status(capsys, "web-0-1", "--json")
    assert code == 0 and said in json.loads(out)["problem"], out
    code = main(["ps"])
    out, _ = capsys.readouterr()
    assert code == 0 and said in out, out


def test_a_damaged_record_s_offset_is_its_byte_offset_past_multibyte_text_and_a_skipped_long_line(
        tmp_path, capsys):
    """Was: a line over 1 MiB (skipped by the reader, unseen) was not counted, so every later
    damaged line's offset was short by its length: the one after it was said at the end of
    the header, 1 MiB before where it is."""
    me = own_identity()
    sandbox = tmp_path / "sb"
    write(sandbox, [header(me.pid, me.start_ticks + 100), RUNNING[0]])
    path = sandbox / ".stoker" / "checkpoint.jsonl"
    lines = path.read_bytes().split(b"\n")
    long_line = b'{"kind":"note","x":"' + "é".encode() * (600 * 1024) + b'"}'  # 1.2 MB: skipped
    data = b"\n".join([lines[0], "né garbled".encode(), long_line, "日本 garbled".encode(), lines[1], b""])
    path.write_bytes(data)
    code, _, err = status(capsys, sandbox)
    said = [int(at) for at in re.findall(r"a torn line at offset (\d+)", err)]
    assert code == 0 and said == [data.index("né".encode()), data.index("日本".encode())], err


def test_a_header_over_the_line_cap_is_named_as_too_long_not_left_unsaid(tmp_path, capsys, monkeypatch):
    """A header line over 1 MiB (thousands of process names) is skipped by the reader, which
    reads no line longer: `status` showed `task ?  key=?`, no task id and no ports, and said
    nothing of why (no warning: the line was passed over unseen); a `stoker run` of 10,000
    processes did not even keep it: its writer's first compaction read the file as a reader
    does, and dropped it ("no header came before its first record"). The compaction keeps the
    writer's own lines; the reader names the line, its size and the cap, as a warning and
    where the records after it follow no readable header; with nothing after it, as what the
    checkpoint holds instead of a record."""
    me = own_identity()
    sandbox = tmp_path / "sb"
    many = [f"process-{number:05d}-{'n' * 100}" for number in range(10_000)]
    write(sandbox, [{**header(me.pid, me.start_ticks + 100), "processes": many}, *RUNNING])
    size = len((sandbox / ".stoker" / "checkpoint.jsonl").read_bytes().split(b"\n")[0])
    assert size > 1 << 20  # (was: 84 bytes: the writer's compaction, reading as a reader, dropped it)
    said = (f"checkpoint record 1, a record: a line of {size:,} bytes at offset 0, longer than the "
            f"1 MiB a reader reads of a line: not read; skipped")
    code, out, err = status(capsys, sandbox)
    assert code == 0 and out.startswith("task ?  key=?"), out
    assert f"stoker: warning: {said}" in err, err
    registered_as_web_0_1(tmp_path, monkeypatch, sandbox, me)
    code, out, _ = status(capsys, "web-0-1")
    assert code == 0 and f"follow no readable header (its own header garbled?): {said}" in out, out
    path = sandbox / ".stoker" / "checkpoint.jsonl"
    path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")  # the header alone
    code, out, err = status(capsys, sandbox)
    assert code == 1 and (f"holds no readable record (its one line, at offset 0, is {size:,} bytes long, "
                          f"longer than the 1 MiB a reader reads of a line: not read)") in err, err


def test_a_last_line_over_the_line_cap_cut_short_is_named_as_a_shorter_one_is(tmp_path, capsys):
    """A last line without its newline (a write cut short) is named as a torn line; one past
    the readers' 1 MiB was passed over unsaid (the reader counted a line it skipped only at its
    newline). It is named as any line past the cap, with its size and offset."""
    me = own_identity()
    write(tmp_path, [header(me.pid, me.start_ticks + 100), *RUNNING])
    path = tmp_path / ".stoker" / "checkpoint.jsonl"
    offset = path.stat().st_size
    cut = b'{"kind":"task","reason":"' + b"y" * (1 << 20)
    with open(path, "ab") as checkpoint:
        checkpoint.write(cut)
    code, out, err = status(capsys, tmp_path)
    assert code == 0 and out.startswith("task web.0  key=c/r/e/web"), out
    assert (f"stoker: warning: checkpoint record 5, a record: a line of {len(cut):,} bytes at offset {offset}, "
            "longer than the 1 MiB a reader reads of a line: not read; skipped") in err, err
