"""What a held list says and who may have written it (`executor/task/heldfile.py`), read and
written in sandboxes of the test's own: the starts moved by the time namespace's offset both
ways; the list's size bound, to the byte; which pairs count; the watchdog's pid; a pin that
names another directory; whose list `stoker status` may count (a list anyone could have
written counts nothing); and the owner's writer, which writes only a change and says once
that it cannot, and once that it can again."""
from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from executor.host import identity
from executor.host.sandbox import HELD_FILE, open_stoker_dir
from executor.procs import pidsignal
from executor.task import heldfile
from tests.support.logevents import lines
from tests.support.users import STRANGER, needs_root

pytestmark = pytest.mark.timeout(30)
MARKER = "h3ld"
BOOT = identity.boot_id()


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A sandbox with its `.stoker` (0700), as a supervisor makes it."""
    os.close(open_stoker_dir(tmp_path, create=True))
    return tmp_path


def live(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """A live process of this user (the integration conftest's `sleeper`): its pid and start time."""
    stat = pidsignal.read_stat(proc.pid)
    assert stat is not None
    return proc.pid, stat[2]


def write(sandbox: Path, doc: dict[str, object] | bytes) -> Path:
    path = sandbox / ".stoker" / HELD_FILE
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return path


def test_starts_are_written_as_the_host_counts_them_and_read_back_as_this_namespace_does(monkeypatch):
    monkeypatch.setattr(identity, "boottime_offset_ticks", lambda: 100)
    data = heldfile.held_json(MARKER, {12: 1000, 13: 2000}, watchdog=14)
    assert json.loads(data) == {"marker": MARKER, "boot": BOOT, "held": [[12, 900], [13, 1900]], "watchdog": 14}
    assert heldfile.held_pairs(data, MARKER, BOOT, 100) == [(12, 1000), (13, 2000)]
    assert heldfile.held_pairs(data, MARKER, BOOT, 0) == [(12, 900), (13, 1900)]


def test_a_list_of_exactly_the_bound_is_read_and_one_byte_more_is_not(sandbox):
    doc = json.dumps({"marker": MARKER, "boot": BOOT, "held": [[12, 34]]}).encode()
    whole = doc + b" " * (heldfile.MAX_HELD_BYTES - len(doc))
    assert heldfile.held_pairs(whole, MARKER, BOOT, 0) == [(12, 34)]
    assert heldfile.held_pairs(whole + b" ", MARKER, BOOT, 0) == []
    write(sandbox, whole)
    assert heldfile.read_held(sandbox, MARKER) == [(12, 34 + identity.boottime_offset_ticks())]
    write(sandbox, whole + b" ")
    assert heldfile.read_held(sandbox, MARKER) == []


def test_only_pairs_of_two_positive_integers_count():
    pairs = [[1, 5], [1, 1], [2, 0], [0, 5], [7, -1], [3], [4, 5, 6], "x", {"1": 5}, [True, 5], [5, 5.0], ["6", 5]]
    data = json.dumps({"marker": MARKER, "boot": BOOT, "held": pairs}).encode()
    assert heldfile.held_pairs(data, MARKER, BOOT, 10) == [(1, 15), (1, 11)]
    other = json.dumps({"marker": MARKER, "boot": BOOT, "held": {"1": 5}}).encode()
    assert heldfile.held_pairs(other, MARKER, BOOT, 0) == []


@pytest.mark.parametrize(("written", "read"), [(1, 1), (4242, 4242), (0, None), (-3, None), ("5", None),
                                               (True, None), (5.0, None), (None, None)])
def test_the_watchdog_s_pid_is_a_positive_integer_or_none(sandbox, written, read):
    write(sandbox, {"marker": MARKER, "boot": BOOT, "held": [], "watchdog": written})
    assert heldfile.read_watchdog(sandbox, MARKER) == read


def test_a_pin_that_names_another_directory_reads_nothing(sandbox, tmp_path_factory):
    write(sandbox, {"marker": MARKER, "boot": BOOT, "held": [[12, 34]], "watchdog": 9})
    st = os.stat(sandbox / ".stoker")
    right, wrong = f"{st.st_dev}:{st.st_ino}", f"{st.st_dev}:{os.stat(tmp_path_factory.mktemp('other')).st_ino}"
    assert heldfile.read_watchdog(sandbox, MARKER, pinned=right) == 9
    assert heldfile.read_held(sandbox, MARKER, pinned=right) != []
    assert heldfile.read_watchdog(sandbox, MARKER, pinned=wrong) is None
    assert heldfile.read_held(sandbox, MARKER, pinned=wrong) == []


@pytest.mark.parametrize("loose", ["directory", "file"])
def test_a_list_its_group_may_write_is_read_but_never_trusted_nor_counted(sandbox, sleeper, loose):
    pid, start = live(sleeper)
    path = write(sandbox, heldfile.held_json(MARKER, {pid: start}, watchdog=9))
    assert heldfile.held_leftovers(sandbox, MARKER) == {pid: start}
    assert heldfile.read_held(sandbox, MARKER, trusted_only=True) == [(pid, start)]
    (path.parent if loose == "directory" else path).chmod(0o770 if loose == "directory" else 0o620)
    assert heldfile.held_leftovers(sandbox, MARKER) == {}
    assert heldfile.read_held(sandbox, MARKER, trusted_only=True) == []
    assert heldfile.read_held(sandbox, MARKER) == [(pid, start)]
    assert heldfile.read_watchdog(sandbox, MARKER) == 9  # a hint for the figures, not a kill


@needs_root
def test_a_list_another_user_owns_in_root_s_directory_counts_nothing(sandbox, sleeper):
    pid, start = live(sleeper)
    path = write(sandbox, heldfile.held_json(MARKER, {pid: start}))
    os.chown(path, STRANGER, STRANGER)
    assert heldfile.held_leftovers(sandbox, MARKER) == {}


def test_the_writer_writes_a_change_only(sandbox):
    written: list[tuple[str, bytes]] = []
    writer = heldfile.HeldWriter(lambda name, data: written.append((name, data)), sandbox, MARKER, "t.0")
    writer.update({})
    assert written == []
    writer.update({12: 34})
    writer.update({12: 34})
    writer.update({12: 34}, watchdog=9)
    writer.update({12: 34}, watchdog=9)
    assert written == [(HELD_FILE, heldfile.held_json(MARKER, {12: 34})),
                       (HELD_FILE, heldfile.held_json(MARKER, {12: 34}, watchdog=9))]


@pytest.mark.parametrize(("failures", "said"), [
    ([OSError(28, "No space left on device"), ValueError("a NUL in the name")],
     f"{os.strerror(28)} (ENOSPC)"),
    ([ValueError("a NUL in the name"), OSError(28, "No space left on device")], "a NUL in the name"),
], ids=["oserror", "valueerror"])
def test_a_list_that_cannot_be_written_is_said_once_and_once_more_when_it_can_again(sandbox, caplog, failures,
                                                                                    said):
    caplog.set_level(logging.INFO, logger="executor.task.heldfile")
    failures = list(failures)  # (the parameter's own list is every run's)
    written: list[bytes] = []

    def beside(name: str, data: bytes) -> None:
        if failures:
            raise failures.pop(0)
        written.append(data)

    writer = heldfile.HeldWriter(beside, sandbox, MARKER, "t.0")
    writer.update({12: 34})
    writer.update({12: 34})
    assert written == [] and not failures
    consequence = ('consequence="should the supervisor and its watchdog both die, `stoker status` and a re-run find '
                   'the task\'s leftovers by marker only"')
    assert lines(caplog, "held_unwritten") == [
        f'held_unwritten task=t.0 reason="cannot write {sandbox}/.stoker/{HELD_FILE}: {said}" {consequence}']
    writer.update({12: 34})
    assert written == [heldfile.held_json(MARKER, {12: 34})]
    assert lines(caplog, "held_written") == [
        f'held_written task=t.0 reason="{sandbox}/.stoker/{HELD_FILE} could be written again"']
    assert [(r.levelno, r.getMessage().split()[0]) for r in caplog.records] == [
        (logging.WARNING, "held_unwritten"), (logging.INFO, "held_written")]
    writer.update({12: 35})
    assert len(written) == 2 and len(caplog.records) == 2
