"""The observer's reading of a process's log (`Reader.log`) in a registered sandbox made here:
which run a request reads (the latest, or the one asked for), a follower's next look through
it, the run's parts in order, which directories are runs, and what a log that is not there,
a process with no run yet, another supervisor's task or another user's sandbox answer."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.observe import logread
from executor.observe.logrange import LogQuery
from executor.observe.reader import NotFound, Reader, supervisor_key
from executor.procs.sandboxfs import READIED

pytestmark = pytest.mark.timeout(30)

TASK = "logs-0-a"


def _run(sandbox: Path, number: int, **files: bytes) -> Path:
    path = sandbox / ".logs" / "web" / str(number)
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name.replace("_", ".")).write_bytes(text)
    return path


@pytest.fixture
def sandbox(tmp_path) -> Path:
    path = tmp_path / "sandbox"
    path.mkdir()
    return path


@pytest.fixture
def reader(tmp_path, sandbox) -> Reader:
    """A live task of this process's in `sandbox`, registered."""
    me = own_identity()
    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
        supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
        task_id=TASK), prune=False)
    return Reader(settings)


def test_a_request_reads_the_latest_run_unless_it_names_one(reader, sandbox):
    _run(sandbox, 0, stdout=b"first\n")
    _run(sandbox, 2, stdout=b"third\n")
    tenth = _run(sandbox, 10, stdout=b"eleventh\n")  # after 2, as a number
    latest = reader.log(TASK, "web", LogQuery(offset=0))
    assert (latest.run, latest.data, latest.runs) == (10, "eleventh\n", (0, 2, 10))
    assert latest.run_dir == logread.ident_text(tenth.stat())  # what a follower names it by
    assert (latest.task_id, latest.process, latest.over, latest.supervisor) == (
        TASK, "web", False, supervisor_key(reader.visible_entries(-1)[0][0]))
    named = reader.log(TASK, "web", LogQuery(run=0, offset=0))
    assert (named.run, named.data) == (0, "first\n")


def test_a_run_s_parts_are_listed_in_order(reader, sandbox):
    _run(sandbox, 0, stdout=b"a\n", stdout_1=b"b\n", stdout_2=b"c\n", stdout_10=b"d\n", stderr=b"",
         stderr_1=b"e\n")
    (sandbox / ".logs" / "web" / "0" / "stdout.3").mkdir()  # a directory: no part
    chunk = reader.log(TASK, "web", LogQuery())
    assert chunk.parts == ("stderr", "stderr.1", "stdout", "stdout.1", "stdout.2", "stdout.10")
    rotated = reader.log(TASK, "web", LogQuery(stream="stdout.10", offset=0))
    assert (rotated.stream, rotated.data) == ("stdout.10", "d\n")


def test_only_a_run_s_own_directories_are_runs(reader, sandbox, tmp_path):
    _run(sandbox, 0, stdout=b"first\n")
    _run(sandbox, 1, stdout=b"", stderr=b"")  # readied ahead, never started
    os.chmod(sandbox / ".logs" / "web" / "1" / "stdout", 0o644 | READIED)
    (sandbox / ".logs" / "web" / "junk").mkdir()
    (sandbox / ".logs" / "web" / "007").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (sandbox / ".logs" / "web" / "5").symlink_to(tmp_path / "elsewhere")
    chunk = reader.log(TASK, "web", LogQuery(offset=0))
    assert (chunk.runs, chunk.run, chunk.data) == ((0,), 0, "first\n")


def test_a_follower_through_the_reader_goes_on_at_the_next_run(reader, sandbox):
    _run(sandbox, 0, stdout=b"first\n")
    held = reader.log(TASK, "web", LogQuery(run=0, offset=0))
    _run(sandbox, 1, stdout=b"second\n")
    following = reader.log(TASK, "web", LogQuery(run=0, offset=held.end, file=held.file, dir=held.run_dir))
    assert (following.run, following.start, following.data, following.continues) == (1, 0, "second\n", True)
    assert following.runs == (0, 1) and following.parts == ("stdout",)


def test_a_rotated_part_named_with_a_held_file_is_read_as_it_is_not_followed(reader, sandbox):
    _run(sandbox, 0, stdout=b"first\n", stdout_1=b"older\n")
    held = reader.log(TASK, "web", LogQuery(run=0, offset=0))
    _run(sandbox, 1, stdout=b"second\n")
    part = reader.log(TASK, "web", LogQuery(run=0, stream="stdout.1", offset=0, file=held.file, dir=held.run_dir))
    assert (part.run, part.stream, part.data) == (0, "stdout.1", "older\n")


def test_what_a_log_that_is_not_there_answers(reader, sandbox):
    with pytest.raises(NotFound, match=rf"^no log \.logs/web in task '{TASK}': "):
        reader.log(TASK, "web", LogQuery())
    (sandbox / ".logs" / "web").mkdir(parents=True)
    with pytest.raises(NotFound, match=rf"^process 'web' has no log in {sandbox}/\.logs$"):
        reader.log(TASK, "web", LogQuery())
    _run(sandbox, 0, stdout=b"first\n")
    with pytest.raises(NotFound, match=rf"^no log \.logs/web/0/stderr in task '{TASK}': "):
        reader.log(TASK, "web", LogQuery(stream="stderr"))
    with pytest.raises(NotFound, match=rf"^no log \.logs/web/3/stdout in task '{TASK}': "):
        reader.log(TASK, "web", LogQuery(run=3))


def test_a_process_name_that_is_no_plain_name_is_no_process(reader, sandbox):
    _run(sandbox, 0, stdout=b"first\n")
    for name in ("..", "web/0", "."):
        with pytest.raises(NotFound, match="^no such process: "):
            reader.log(TASK, name, LogQuery())


def test_a_log_of_a_supervisor_of_another_boot_is_over(tmp_path, sandbox):
    """Its pid may be another process's now: only this boot's supervisor writes (`_over`)."""
    me = own_identity()
    settings = RegistrySettings(registry_root=str(tmp_path / "other-root"))
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
        supervisor_boot="0" * 32, front_end=FrontEnd.RUN, registered_wall=time.time(),
        task_id=TASK), prune=False)
    _run(sandbox, 0, stdout=b"first\n")
    assert Reader(settings).log(TASK, "web", LogQuery()).over is True


def test_a_task_asked_for_by_another_supervisor_is_not_found(reader, sandbox):
    _run(sandbox, 0, stdout=b"first\n")
    key = supervisor_key(reader.visible_entries(-1)[0][0])
    assert reader.log(TASK, "web", LogQuery(), supervisor=key).data == "first\n"
    with pytest.raises(NotFound, match=rf"^no task '{TASK}' of the supervisor 1-2 in the registry "):
        reader.log(TASK, "web", LogQuery(), supervisor="1-2")


def test_a_sandbox_that_is_not_the_viewer_s_is_not_found(reader, sandbox):
    _run(sandbox, 0, stdout=b"first\n")
    root = reader._open_sandbox(str(sandbox), TASK, -1)  # everyone's viewer: any sandbox
    os.close(root)
    with pytest.raises(NotFound, match=rf"^no task '{TASK}' in the registry {reader.root}$"):
        reader._open_sandbox(str(sandbox), TASK, os.geteuid() + 1)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(NotFound):
        reader._open_sandbox(str(sandbox), TASK, os.geteuid() + 1)
    assert len(os.listdir("/proc/self/fd")) == before  # its directory closed
