"""Which tasks `GET /metrics` of a real observer (in process, on 127.0.0.1) exports: every
task whose supervisor runs, and each other one only for `--metrics-ended-secs` after it
ended, while the pages and /api keep listing every task the registry keeps; and a damaged
registry entry is skipped, every other task exported.

The registry (written through the product's own writer, `Registry.write`): a live task (this
test's process is its supervisor), two tasks whose supervisors let go (one an hour ago, one
5 s ago: the end time their entries record), two LOST ones (supervisors gone without letting
go: their checkpoints' last records an hour and 30 s ago), and a task whose live supervisor
(a real `sleep` child) registered a sandbox path holding a NUL byte, which no open() takes:
a damaged entry, skipped."""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import identity_of, own_identity
from executor.host.registry import Registry
from executor.observe.reader import Reader
from executor.observe.server import Limits
from tests.support.children import sleeping_child
from tests.support.exposition import Parsed, parse
from tests.support.observer_server import serving

pytestmark = pytest.mark.timeout(60)

HOUR = 3600.0


def _task(settings: RegistrySettings, sandbox: Path, task_id: str, supervisor: tuple[int, int, str],
          wall: float, end: str | None, let_go: bool, let_go_wall: float | None = None,
          registered_wall: float | None = None, pin: bool = False) -> None:
    """A task whose checkpoint started it at `wall` and (`end`: its terminal state) ended it
    then, registered by `supervisor` (pid, start, boot) then (or at `registered_wall`);
    `let_go`: its entry says it ended (then, or at `let_go_wall`); `pin`: its entry pins its
    `.stoker` (as a supervisor's does: without, an older Stoker's, it is never GONE)."""
    pid, start, boot = supervisor
    records = [{"kind": "header", "wall": wall, "task": "web.0", "job_key": "devcluster/www-data/prod/web",
                "task_id": task_id, "sandbox": "", "ports": {}, "supervisor_pid": pid, "supervisor_start": start,
                "supervisor_boot": boot, "processes": ["web"], "health": "none"},
               {"kind": "task", "wall": wall, "to": "STARTING", "reason": "launched"},
               {"kind": "task", "wall": wall, "from": "STARTING", "to": "RUNNING", "reason": "up"}]
    if end is not None:
        records.append({"kind": "task", "wall": wall, "from": "RUNNING", "to": end, "reason": "done"})
    if "\0" not in str(sandbox):
        (sandbox / ".stoker").mkdir(parents=True)
        (sandbox / ".stoker/checkpoint.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    Registry(settings).write(RegistryEntry(
        sandbox=str(sandbox), supervisor_pid=pid, supervisor_start=start, supervisor_boot=boot,
        front_end=FrontEnd.RUN, registered_wall=registered_wall or wall, task_id=task_id, job_key="devcluster/www-data/prod/web",
        ended_wall=(let_go_wall or wall) if let_go else None,
        stoker_dir=_dir_id(sandbox / ".stoker") if pin else ""), prune=False)


def _dir_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


@pytest.fixture
def child() -> Iterator[int]:
    yield from sleeping_child()


def _registry(tmp_path: Path, broken_by: int | None = None) -> RegistrySettings:
    me, now = own_identity(), time.time()
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=7 * 86400)
    _task(settings, tmp_path / "live", "live-0", (me.pid, me.start_ticks, me.boot_id), now - 60, None, False)
    for n, (task_id, ago, end, let_go) in enumerate((("old-0", HOUR, "FINISHED", True),
                                                     ("new-0", 5.0, "FAILED", True),
                                                     ("lost-old-0", HOUR, None, False),
                                                     ("lost-new-0", 30.0, None, False))):
        _task(settings, tmp_path / task_id, task_id, (4_000_000 + n, 5, "gone"), now - ago, end, let_go)
    # Its last record an hour ago, its supervisor let go 5 s ago (a long stop): it ended then.
    _task(settings, tmp_path / "slow", "slow-0", (4_000_010, 5, "gone"), now - HOUR, "KILLED", True, now - 5)
    if broken_by is not None:
        him = identity_of(broken_by)
        assert him is not None
        _task(settings, tmp_path / "nul\0here", "broken-0", (him.pid, him.start_ticks, him.boot_id),
              now - 10, None, False)
    return settings


@contextlib.contextmanager
def _serve(settings: RegistrySettings, **window: float) -> Iterator[int]:
    limits = Limits(idle_secs=2, loop_secs=1)
    with serving(Reader(settings), limits, metrics_ended_secs=window.get("ended_secs", 600.0)) as server:
        yield server.socket.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return answer.status, answer.read().decode()


def _exported(m: Parsed) -> set[str]:
    return {s.labels["task_id"] for s in m.samples("stoker_task_info")}


def test_a_task_that_ended_long_ago_is_left_out_and_one_that_just_ended_is_there_with_its_end(tmp_path):
    with _serve(_registry(tmp_path)) as port:
        m = parse(_get(port, "/metrics")[1])
        assert _exported(m) == {"live-0", "new-0", "lost-new-0", "slow-0"}
        assert m.value("stoker_task_state", task_id="new-0", state="FAILED") == 1
        assert m.value("stoker_task_state", task_id="slow-0", state="KILLED") == 1
        assert m.value("stoker_task_state", task_id="lost-new-0", state="LOST") == 1
        assert not m.samples("stoker_task_state", task_id="old-0")  # none of its series, not even 0s
        assert m.value("stoker_observer_tasks") == 4
        assert m.value("stoker_observer_task_errors_total") == 0
        listed = {t["task_id"] for t in json.loads(_get(port, "/api/tasks")[1])}
        assert listed == {"live-0", "old-0", "new-0", "lost-old-0", "lost-new-0", "slow-0"}  # the registry keeps them
        page = _get(port, "/")[1]
        assert "old-0" in page and "lost-old-0" in page


def test_a_window_of_0_exports_only_the_tasks_whose_supervisor_runs(tmp_path):
    with _serve(_registry(tmp_path), ended_secs=0.0) as port:
        m = parse(_get(port, "/metrics")[1])
        assert _exported(m) == {"live-0"} and m.value("stoker_observer_tasks") == 1


def test_an_entry_whose_sandbox_no_open_takes_is_skipped_and_every_other_task_exported(tmp_path, child, caplog):
    """Its live supervisor registered a sandbox path with a NUL byte: the registry reads it
    as damaged (it once raised ValueError in every reading), names it among the unreadable
    entries, and no task's reading fails (a task whose samples raise: the unit test of
    `task_families`)."""
    caplog.set_level(logging.WARNING, logger="executor.observe.scrape")
    with _serve(_registry(tmp_path, broken_by=child)) as port:
        status, text = _get(port, "/metrics")
        listed = {t["task_id"] for t in json.loads(_get(port, "/api/tasks")[1])}
    assert status == 200
    m = parse(text)
    assert _exported(m) == {"live-0", "new-0", "lost-new-0", "slow-0"}  # every other task
    assert m.value("stoker_observer_registry_unreadable_entries") == 1
    assert m.value("stoker_observer_task_errors_total") == 0
    assert "broken-0" not in listed and "live-0" in listed
    assert not [r for r in caplog.records if "observer_task_error" in r.getMessage()]


def test_a_task_lost_lately_whose_sandbox_is_then_deleted_stays_for_the_window(tmp_path):
    """Registered an hour ago, LOST 30 s ago (its checkpoint's last record), then its sandbox
    deleted: GONE, with no end recorded. Its window counted from its registration, and it
    dropped out of /metrics at once; it counts from the last record the observer read of it."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=7 * 86400)
    now = time.time()
    _task(settings, tmp_path / "lost", "lost-0", (4_000_020, 5, "gone"), now - 30, None, False,
          registered_wall=now - HOUR, pin=True)
    with _serve(settings) as port:
        m = parse(_get(port, "/metrics")[1])
        assert m.value("stoker_task_state", task_id="lost-0", state="LOST") == 1
        shutil.rmtree(tmp_path / "lost")
        m = parse(_get(port, "/metrics")[1])
        assert _exported(m) == {"lost-0"}
        assert m.value("stoker_task_state", task_id="lost-0", state="GONE") == 1


def test_a_task_whose_sandbox_a_later_task_took_is_not_measured_from_that_task_s_records(tmp_path):
    """LOST an hour ago, then a later task took its sandbox and wrote its own checkpoint in the
    same `.stoker`: GONE (its sandbox holds another task), and the last record the observer read
    there is the later task's, of a minute ago. It kept the task in /metrics, as ended lately, for
    as long as the later one wrote; it is measured from its own signs (here its registration)."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=7 * 86400)
    me, now = own_identity(), time.time()
    sandbox = tmp_path / "taken"
    _task(settings, sandbox, "taken-0", (4_000_030, 5, "gone"), now - HOUR, None, False, pin=True)
    later = [{"kind": "header", "wall": now - 60, "task": "web.0", "job_key": "devcluster/www-data/prod/web",
              "task_id": "later-0", "sandbox": "", "ports": {}, "supervisor_pid": me.pid,
              "supervisor_start": me.start_ticks, "supervisor_boot": me.boot_id, "processes": ["web"],
              "health": "none"},
             {"kind": "task", "wall": now - 60, "to": "STARTING", "reason": "launched"}]
    with _serve(settings) as port:
        assert _exported(parse(_get(port, "/metrics")[1])) == set()  # LOST an hour ago
        (sandbox / ".stoker/checkpoint.jsonl").write_text("".join(json.dumps(r) + "\n" for r in later))
        tasks = {t["task_id"]: t for t in json.loads(_get(port, "/api/tasks")[1])}
        assert tasks["taken-0"]["state"] == "GONE", tasks
        assert _exported(parse(_get(port, "/metrics")[1])) == set()
