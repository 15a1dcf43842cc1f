"""`.stoker/usage.json` (`executor/task/usagefile.py`): the owner's writer replaces it whole
at the task's start and at each disk sample; a reader takes it only through `.stoker`, never
through a symlink or a FIFO, never more than its cap, only when the supervisor's user owns it
and no one else may write it, and only for the attempt whose marker it names. Real files in a
temporary sandbox."""
from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

import attrs
import pytest

from config.spec import ProcessSpec, TaskSpec
from executor.events import DiskSampled
from executor.host.identity import boot_id, boot_to_wall, own_identity
from executor.host.sandbox import LOCK_FILE, USAGE_FILE, open_stoker_dir
from executor.procs import sandboxfs
from executor.task.usagefigures import (
    DiskSample,
    Figures,
    Live,
    UsageRecord,
    figure_rows,
    figures,
    figures_json,
)
from executor.task.usagefile import MAX_USAGE_BYTES, NO_FILE, UsageWriter, read_usage
from tests.support.limits import descriptors, opened_since
from tests.support.users import needs_root

MB = 1024 * 1024
MARKER = "u5age"
TASK = TaskSpec(name="t", processes=(ProcessSpec("p", "true"),), cpu=0.5, ram_bytes=64 * MB,
                disk_bytes=8 * MB)


def writer(sandbox: Path, check_secs: float | None = 60.0) -> UsageWriter:
    return UsageWriter(sandbox, MARKER, "t.0", TASK, check_secs, wall=lambda: 1234.5)


def planted(sandbox: Path, doc: dict | None = None) -> Path:
    """A valid record of MARKER's attempt, written by a test (as a task could)."""
    writer(sandbox).start()
    path = sandbox / ".stoker" / USAGE_FILE
    if doc is not None:
        path.write_text(json.dumps(doc))
    return path


def pin_of(sandbox: Path) -> str:
    """What a registry entry pins: `.stoker`'s device and inode."""
    fd = open_stoker_dir(sandbox)
    try:
        return sandboxfs.dir_id(fd)
    finally:
        os.close(fd)


def test_a_record_read_without_a_pin_is_unverified_unless_its_live_supervisor_holds_the_lock(tmp_path):
    """`stoker status SANDBOX` (no registry entry) believed whatever `.stoker/usage.json` the
    sandbox held: a task that renamed `.stoker` and planted its own showed 930 GiB used
    (744313%) as its supervisor's figure."""
    planted(tmp_path)
    me = own_identity()
    record, _ = read_usage(tmp_path, MARKER, supervisor=me)
    assert record is not None and "no registry entry pins this .stoker" in record.unverified
    assert read_usage(tmp_path, MARKER, pinned=pin_of(tmp_path))[0].unverified == ""  # pinned: its own
    fd = os.open(tmp_path / ".stoker" / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the live supervisor holds this .stoker's lock: its own
        assert read_usage(tmp_path, MARKER, supervisor=me)[0].unverified == ""
        assert read_usage(tmp_path, MARKER)[0].unverified != ""  # no supervisor named
        other = attrs.evolve(me, start_ticks=me.start_ticks + 1000)  # the pid reused since
        assert read_usage(tmp_path, MARKER, supervisor=other)[0].unverified != ""
    finally:
        os.close(fd)
    figures = figures_of(read_usage(tmp_path, MARKER, supervisor=me))
    assert figures_json(figures, 0.0)["unverified"].startswith("no registry entry pins")
    assert "; unverified: no registry entry" in figure_rows(figures, 0.0)[2][4]


def figures_of(read: tuple) -> Figures:
    return figures(read[0], read[1], Live(None, None, note="-"))


def test_the_reservation_then_each_sample_reaches_a_reader(tmp_path):
    w = writer(tmp_path)
    assert read_usage(tmp_path, MARKER) == (None, NO_FILE)
    w.start()
    assert read_usage(tmp_path, MARKER, pinned=pin_of(tmp_path)) == (UsageRecord(0.5, 64 * MB, 8 * MB, 60.0), "")
    w.sampled(DiskSampled(5000, files=3, unreadable=1, secs=0.02))
    record, _ = read_usage(tmp_path, MARKER)
    assert record is not None and record.sample is not None
    assert (record.sample.used_bytes, record.sample.files, record.sample.unreadable,
            record.sample.secs) == (5000, 3, 1, 0.02)
    assert abs(record.sample.wall - 1234.5) > 1  # this boot's: from its boot clock, today's wall time
    w.sampled(DiskSampled(None, error="the sandbox cannot be read"))
    kept, _ = read_usage(tmp_path, MARKER)
    assert kept is not None and kept.error == "the sandbox cannot be read"
    assert kept.sample is not None and kept.sample.used_bytes == 5000  # the last good one, kept
    mode = (tmp_path / ".stoker" / USAGE_FILE).stat().st_mode & 0o777
    assert mode == 0o600 and not [n for n in os.listdir(tmp_path / ".stoker") if n.endswith(".tmp")]


def test_a_sample_of_another_boot_keeps_its_recorded_wall_time(tmp_path):
    path = planted(tmp_path)
    doc = json.loads(path.read_text())
    doc.update(boot="another-boot", disk_sample={"used_bytes": 1, "files": 1, "unreadable": 0,
                                                 "secs": 0.1, "wall": 99.0, "boot_secs": 5.0})
    path.write_text(json.dumps(doc))
    assert read_usage(tmp_path, MARKER)[0].sample == DiskSample(1, 99.0, 0.1, 1, 0)


def test_another_attempts_record_is_not_read(tmp_path):
    planted(tmp_path)
    record, why = read_usage(tmp_path, "another-marker")
    assert record is None and "another attempt's" in why
    assert read_usage(tmp_path, "")[0] is None


def test_a_symlink_in_its_place_is_not_followed(tmp_path):
    path = planted(tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    os.replace(path, elsewhere)  # a valid record: following the link would read it
    path.symlink_to(elsewhere)
    record, why = read_usage(tmp_path, MARKER)
    assert record is None and "not read" in why and USAGE_FILE in why


def test_a_fifo_in_its_place_is_refused_without_blocking(tmp_path):
    path = planted(tmp_path)
    path.unlink()
    os.mkfifo(path)
    record, why = read_usage(tmp_path, MARKER)  # a blocking open would hang here
    assert record is None and "not read" in why


def test_an_oversized_file_is_not_read(tmp_path):
    path = planted(tmp_path)
    doc = json.loads(path.read_text())
    doc["disk_error"] = "x" * MAX_USAGE_BYTES  # valid JSON of the right fields, too large
    path.write_text(json.dumps(doc))
    record, why = read_usage(tmp_path, MARKER)
    assert (record, why) == (None, f"{path} is larger than {MAX_USAGE_BYTES} bytes: not read")


def test_a_file_others_may_write_is_not_trusted(tmp_path):
    path = planted(tmp_path)
    path.chmod(0o622)
    record, why = read_usage(tmp_path, MARKER)
    assert record is None and "not trusted" in why
    path.chmod(0o600)
    assert read_usage(tmp_path, MARKER)[0] is not None


@needs_root
def test_a_file_of_another_user_is_not_trusted(tmp_path):
    path = planted(tmp_path)
    os.chown(path, 4242, 4242)
    record, why = read_usage(tmp_path, MARKER)
    assert record is None and "not trusted: owned by uid 4242" in why


def test_damaged_records_are_not_read(tmp_path):
    path = planted(tmp_path)
    path.write_text("{not json")
    assert "not JSON" in read_usage(tmp_path, MARKER)[1]
    planted(tmp_path, {"marker": MARKER, "cpu_reserved": "lots"})
    assert "wrong type" in read_usage(tmp_path, MARKER)[1]


def test_a_failed_write_is_one_warning_and_its_recovery_one_info(tmp_path, caplog):
    w = writer(tmp_path)
    (tmp_path / ".stoker").write_text("not a directory")
    with caplog.at_level(logging.INFO, logger="executor.task.usagefile"):
        w.start()
        w.sampled(DiskSampled(10))
        (tmp_path / ".stoker").unlink()
        w.sampled(DiskSampled(20))
    events = [r.getMessage().split()[0] for r in caplog.records]
    assert events == ["usage_unwritten", "usage_written"], events
    assert read_usage(tmp_path, MARKER)[0].sample.used_bytes == 20


@pytest.mark.parametrize("check_secs", [None, 0.05])
def test_the_check_interval_is_kept_so_a_reader_knows_whether_samples_come(tmp_path, check_secs):
    writer(tmp_path, check_secs).start()
    assert read_usage(tmp_path, MARKER)[0].check_secs == check_secs


def test_the_file_holds_the_documented_fields_at_each_step_and_nothing_after_close(tmp_path):
    w = writer(tmp_path)
    path = tmp_path / ".stoker" / USAGE_FILE
    w.start()
    assert json.loads(path.read_text()) == {
        "marker": MARKER, "boot": boot_id(), "cpu_reserved": 0.5, "ram_reserved": 64 * MB,
        "disk_reserved": 8 * MB, "disk_check_secs": 60.0, "disk_sample": None, "disk_error": ""}
    w.sampled(DiskSampled(None))  # a sample that failed without saying why
    assert json.loads(path.read_text())["disk_error"] == "the sample failed"
    w.sampled(DiskSampled(7, files=2, secs=0.12345678))
    doc = json.loads(path.read_text())
    assert doc["disk_error"] == "" and set(doc["disk_sample"]) == {
        "used_bytes", "files", "unreadable", "secs", "wall", "boot_secs"}
    assert {k: doc["disk_sample"][k] for k in ("used_bytes", "files", "unreadable", "secs", "wall")} == {
        "used_bytes": 7, "files": 2, "unreadable": 0, "secs": 0.123457, "wall": 1234.5}
    w.close()
    w.sampled(DiskSampled(9))  # after the task's end: dropped
    assert json.loads(path.read_text())["disk_sample"]["used_bytes"] == 7


def test_writes_go_through_the_stoker_it_was_given_and_close_lets_it_go(tmp_path):
    """A task that renames .stoker and makes another in its place does not get the writes."""
    fds = descriptors()
    fd = open_stoker_dir(tmp_path, create=True)
    w = writer(tmp_path)
    w.start(fd)
    os.close(fd)  # the writer keeps its own copy
    os.rename(tmp_path / ".stoker", tmp_path / ".stoker-moved")
    (tmp_path / ".stoker").mkdir(mode=0o700)
    w.sampled(DiskSampled(11))
    assert json.loads((tmp_path / ".stoker-moved" / USAGE_FILE).read_text())["disk_sample"]["used_bytes"] == 11
    assert not (tmp_path / ".stoker" / USAGE_FILE).exists()
    w.close()
    assert opened_since(fds) == {}


def test_the_failure_and_recovery_lines_say_what_and_come_once(tmp_path, caplog):
    w = writer(tmp_path)
    (tmp_path / ".stoker").write_text("not a directory")
    with caplog.at_level(logging.INFO, logger="executor.task.usagefile"):
        w.start()
        assert [r.stoker_event for r in caplog.records] == ["usage_unwritten"]  # at the first failure
        fields = caplog.records[0].stoker_fields
        assert fields["task"] == "t.0"
        assert fields["reason"] == f"cannot write {tmp_path}/.stoker/usage.json: .stoker: it is a regular file, " \
                                   "not a directory"
        assert fields["consequence"] == "`stoker status` and the observer show no disk figure for the task"
        (tmp_path / ".stoker").unlink()
        w.sampled(DiskSampled(20))
        w.sampled(DiskSampled(30))
    assert [r.stoker_event for r in caplog.records] == ["usage_unwritten", "usage_written"]
    assert caplog.records[1].stoker_fields == {
        "task": "t.0", "reason": f"{tmp_path}/.stoker/usage.json could be written again"}


def test_a_stoker_descriptor_that_cannot_be_kept_is_one_warning_saying_why(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="executor.task.usagefile"):
        writer(tmp_path).start(stoker_dir=99_999)  # no such descriptor: os.dup fails
    assert [r.stoker_fields["reason"] for r in caplog.records] == [
        f"cannot write {tmp_path}/.stoker/usage.json: Bad file descriptor (EBADF)"]


def test_a_sandbox_path_no_file_can_have_is_one_warning_with_the_reason(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="executor.task.usagefile"):
        writer(tmp_path / "nul\0").start()  # os.open's ValueError, not an OSError
    # its words are this Python's: 3.11's and 3.12's "embedded null byte", 3.13's "open:
    # embedded null character in path"
    with pytest.raises(ValueError) as refused:
        os.open(tmp_path / "nul\0", os.O_RDONLY)
    assert [r.stoker_fields["reason"] for r in caplog.records] == [
        f"cannot write {tmp_path}/nul\0/.stoker/usage.json: {refused.value}"]


def test_the_reasons_a_record_is_not_read_name_the_file(tmp_path):
    path = planted(tmp_path)
    path.write_text("{not json")
    assert read_usage(tmp_path, MARKER) == (None, f"{path} is damaged (not JSON): not read")
    record, why = read_usage(tmp_path, MARKER, pinned="1:2")  # not the .stoker a registry entry pins
    assert record is None and why.startswith(f"cannot open {tmp_path}/.stoker: ") and "None" not in why


def test_a_file_of_exactly_the_cap_is_read(tmp_path):
    path = planted(tmp_path)
    doc = json.loads(path.read_text())
    doc["disk_error"] = ""
    doc["disk_error"] = "x" * (MAX_USAGE_BYTES - len(json.dumps(doc)))
    path.write_text(json.dumps(doc))
    assert path.stat().st_size == MAX_USAGE_BYTES
    assert read_usage(tmp_path, MARKER)[0] is not None


def test_the_unverified_reason_in_full_and_a_supervisor_of_another_boot_holds_nothing(tmp_path):
    planted(tmp_path)
    me = own_identity()
    fd = os.open(tmp_path / ".stoker" / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        record, _ = read_usage(tmp_path, MARKER, supervisor=attrs.evolve(me, boot_id="another-boot"))
    finally:
        os.close(fd)
    assert record.unverified == (
        "no registry entry pins this .stoker and no live supervisor holds its lock, so the task's "
        "processes may have written it (`stoker status TASK_ID` reads the one its supervisor made)")


@pytest.mark.parametrize("boot_secs, converted", [(0, True), (5.0, True), (-1.0, False), (True, False),
                                                   ("5", False), (float("inf"), False)])
def test_only_a_sane_boot_clock_stamp_of_this_boot_replaces_the_recorded_wall_time(tmp_path, boot_secs, converted):
    path = planted(tmp_path)
    doc = json.loads(path.read_text())
    doc["disk_sample"] = {"used_bytes": 1, "files": 1, "unreadable": 0, "secs": 0.1, "wall": 99.0,
                          "boot_secs": boot_secs}
    path.write_text(json.dumps(doc).replace("Infinity", "1e999"))
    wall = read_usage(tmp_path, MARKER)[0].sample.wall
    assert (wall != 99.0) is converted
    if converted:
        assert wall == pytest.approx(boot_to_wall(float(boot_secs)), abs=1.0)
