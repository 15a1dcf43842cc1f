"""`stoker_task_leftover_processes` of a real observer's `GET /metrics` (in process, on
127.0.0.1): a LOST task's processes still alive after its supervisor died, and a LOST task
past `--metrics-ended-secs` exported for as long as any of them lives.

Each task is written with the product's own writers (`CheckpointWriter` and the records'
`to_json`, `Registry.write`); its supervisor is a pid long gone. A leftover is a real
`sleep` whose environment carries the attempt's `STOKER_TASK_MARKER` (and a run marker), as
every process a supervisor spawns does (`executor/procs/spawn.py`), found as the pages and
`stoker status` find it (`executor/task/inspection.with_leftovers`)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.events import ProcessState, TaskStage
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.host.sandbox import open_stoker_dir
from executor.observe.reader import Reader
from executor.observe.server import Limits
from executor.procs import pidsignal, proctree
from executor.procs.spawn import RUN_MARKER, TASK_MARKER
from executor.task import records as rec
from executor.task.checkpoint import CheckpointWriter
from executor.task.heldfile import held_leftovers, write_held
from tests.support.exposition import Parsed, parse
from tests.support.observer_server import serving

pytestmark = pytest.mark.timeout(60)

HOUR = 3600.0
METRIC = "stoker_task_leftover_processes"


def _task(settings: RegistrySettings, sandbox: Path, task_id: str, marker: str, supervisor: tuple[int, int, str],
          wall: float) -> None:
    """A task started at `wall` and RUNNING then (its last record), registered by
    `supervisor` (pid, start, boot), whose entry says no end: LOST once that pid is gone."""
    pid, start, boot = supervisor
    writer = CheckpointWriter(sandbox)
    try:
        writer.append_many([
            rec.HeaderRecord(task="web.0", job_key="devcluster/www-data/prod/web", task_id=task_id,
                             sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start,
                             supervisor_boot=boot, marker=marker, processes=("web",), wall=wall).to_json(),
            rec.TaskRecord(from_=None, to=TaskStage.STARTING, reason="launched", wall=wall).to_json(),
            rec.ProcessRecord(process="web", run=0, from_=ProcessState.WAITING, to=ProcessState.RUNNING,
                              reason="started", pid=4_100_000, wall=wall).to_json(),
            rec.TaskRecord(from_=TaskStage.STARTING, to=TaskStage.RUNNING, reason="up", wall=wall).to_json()])
    finally:
        writer.close()
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start, supervisor_boot=boot,
        front_end=FrontEnd.RUN, registered_wall=wall, task_id=task_id, job_key="devcluster/www-data/prod/web",
        marker=marker), prune=False)


def _registry(tmp_path: Path) -> RegistrySettings:
    """A live task (this test's process is its supervisor), a LOST one an hour ago (marker
    `old-marker`), a LOST one 30 s ago (`new-marker`) and a LOST one 30 s ago whose attempt
    names no marker (nothing to look for)."""
    me, now = own_identity(), time.time()
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=7 * 86400)
    _task(settings, tmp_path / "live", "live-0", "live-marker", (me.pid, me.start_ticks, me.boot_id), now - 60)
    for n, (task_id, marker, ago) in enumerate((("lost-old-0", "old-marker", HOUR),
                                                ("lost-new-0", "new-marker", 30.0), ("unmarked-0", "", 30.0))):
        _task(settings, tmp_path / task_id, task_id, marker, (4_000_000 + n, 5, "gone"), now - ago)
    return settings


@contextlib.contextmanager
def _leftover(tmp_path: Path, marker: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real process of the task that outlived its supervisor: it carries the attempt's
    marker and its run's, as a spawned run does."""
    env = dict(os.environ, **{TASK_MARKER: marker, RUN_MARKER: f"{marker}/web/0"})
    proc = subprocess.Popen(["sleep", "600"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def _serve(settings: RegistrySettings) -> Iterator[int]:
    with serving(Reader(settings), Limits(idle_secs=2, loop_secs=1), metrics_ended_secs=600.0) as server:
        yield server.socket.getsockname()[1]


def _metrics(port: int) -> Parsed:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return parse(answer.read().decode())


def _exported(m: Parsed) -> set[str]:
    return {s.labels["task_id"] for s in m.samples("stoker_task_info")}


def test_a_lost_task_past_the_window_is_exported_while_its_leftover_lives_and_not_after(tmp_path):
    settings = _registry(tmp_path)
    with _serve(settings) as port:
        with _leftover(tmp_path, "old-marker") as child:
            m = _metrics(port)
            assert "lost-old-0" in _exported(m)  # an hour past its last sign of life: kept for its orphan
            assert m.value(METRIC, task_id="lost-old-0") == 1
            assert m.value("stoker_task_state", task_id="lost-old-0", state="LOST") == 1
            assert m.value("stoker_observer_tasks") == 4
            child.kill()
            child.wait(10)  # reaped: no zombie left to count
        m = _metrics(port)
        assert _exported(m) == {"live-0", "lost-new-0", "unmarked-0"}  # back to the window's rule
        assert not m.samples(METRIC, task_id="lost-old-0")
        assert m.value("stoker_observer_tasks") == 3


def test_a_lost_task_in_the_window_without_leftovers_shows_0_and_none_looked_for_shows_no_series(tmp_path):
    with _serve(_registry(tmp_path)) as port, _leftover(tmp_path, "another-task's-marker"):
        m = _metrics(port)
    assert _exported(m) == {"live-0", "lost-new-0", "unmarked-0"}
    assert m.value(METRIC, task_id="lost-new-0") == 0  # looked for: none
    assert not m.samples(METRIC, task_id="live-0")  # its supervisor runs: none are leftovers
    assert not m.samples(METRIC, task_id="unmarked-0")  # no marker: nothing looked for, no fake 0


@contextlib.contextmanager
def _two_users(sandbox: Path) -> Iterator[tuple[int, int]]:
    """A live process of the task's user (without its marker) and one of another user, the
    task's `.stoker` its user's: as root, the task's user is nobody and the other root (a
    `sleep` each); else the task's user is this test's and the other pid 1, when shown."""
    if os.geteuid() != 0 and proctree.real_uid(1) in (None, os.getuid()):
        pytest.skip("no process of another user to name: not root, and pid 1 is hidden or ours")
    as_task = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    procs = [subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL, **as_task)]  # type: ignore[call-overload]
    try:
        if os.geteuid() == 0:
            os.chown(sandbox / ".stoker", 65534, 65534)
            procs.append(subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL))
        yield procs[0].pid, procs[1].pid if len(procs) > 1 else 1
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def _hold(sandbox: Path, named: dict[int, int]) -> None:
    """`named` (pid → start) as the list of the attempt marked `old-marker`, as its supervisor writes it."""
    stoker_dir = open_stoker_dir(sandbox)
    try:
        write_held(stoker_dir, "old-marker", named)
    finally:
        os.close(stoker_dir)


def test_a_held_list_the_task_wrote_counts_its_users_processes_never_another_users(tmp_path):
    """The task's processes may write its `.stoker/held.json` (their user's, the supervisor
    ran as it): a list naming, with their true start times, a process of another user and
    a process of the task's user whose marker is gone, plus this process with a wrong start
    and 60,000 pids that do not exist (near 1 MB), counts the task's user's alone, for the
    task lost an hour ago (kept for it). A list under root's `.stoker` (a root supervisor,
    its task another user: only root could write it) counts both."""
    settings, sandbox = _registry(tmp_path), tmp_path / "lost-old-0"
    with _two_users(sandbox) as (own, stranger), _serve(settings) as port:
        named = {pid: pidsignal.read_stat(pid)[2] for pid in (own, stranger)}  # type: ignore[index]
        _hold(sandbox, {**named, os.getpid(): 1, **{4_190_000 + n: 7 for n in range(60_000)}})
        m = _metrics(port)
        assert m.value(METRIC, task_id="lost-old-0") == 1  # the task's user's sleep alone
        assert set(held_leftovers(sandbox, "old-marker")) == {own}
        if os.geteuid() == 0:
            os.chown(sandbox / ".stoker", 0, 0)
            assert set(held_leftovers(sandbox, "old-marker")) == {own, stranger}


def test_a_lost_task_whose_checkpoint_marker_cannot_be_encoded_fails_no_page_nor_its_own_series(tmp_path):
    """A checkpoint the task's processes rewrote (theirs when the supervisor ran as their
    user) may hold a marker with a lone surrogate: looked for in /proc, its encoding raised
    for every page and `/api/tasks` (500) and left the task out of `/metrics`, counted as a
    task error. It names no process: nothing is looked for, every answer has the task."""
    settings = _registry(tmp_path)
    _task(settings, tmp_path / "odd", "odd-0", "a\ud800", (3_999_999, 5, "gone"), time.time() - 30)
    with _serve(settings) as port, _leftover(tmp_path, "new-marker"):
        for path in ("/api/tasks", "/"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                assert answer.status == 200 and b"odd-0" in answer.read()
        m = _metrics(port)
    assert "odd-0" in _exported(m) and not m.samples(METRIC, task_id="odd-0")
    assert m.value(METRIC, task_id="lost-new-0") == 1  # the others' leftovers looked for still
    assert m.value("stoker_observer_task_errors_total") == 0
