"""The observer's server in process: idle and half-sent connections are closed after the
idle timeout, and the bound task kept beside the checkpoint is written atomically and read
back without trusting the sandbox."""
from __future__ import annotations

import json
import os
import socket
import time

import attrs
import pytest

from config.registry import RegistrySettings
from config.spec import JobSpec, LogDestination, LoggerSpec, LogMode, ProcessSpec, TaskSpec
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.observe.reader import Reader
from executor.observe.server import Limits, ObserverApp, listening_on, make_server
from executor.task.definition import (
    MAX_DEFINITION_BYTES,
    NAMES_LOOKED_AT,
    Asked,
    definition_json,
    read_definition,
    write_definition,
)
from tests.support.keptreader import kept_reader
from tests.support.observer_server import serving

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(tmp_path):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, Limits(idle_secs=1, loop_secs=1)) as srv:
        yield srv.socket.getsockname()[1]


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: localhost\r\n"])
def test_a_silent_or_half_sent_connection_is_closed_after_the_idle_timeout(server, sent):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server, nothing answered
        assert 0.5 < time.monotonic() - started < 5


def test_an_empty_registry_is_an_empty_list(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"GET /api/tasks HTTP/1.0\r\nHost: localhost\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"\r\n\r\n[]")


@pytest.mark.parametrize("path", ["/", "/api/tasks", "/tasks/t-1", "/task/t-1", "/api/tasks/t-1",
                                  "/tasks/t-1/processes/p/logs", "/api/tasks/t-1/processes/p/logs"])
def test_a_registry_it_cannot_read_is_503_with_its_reason_for_a_task_as_for_the_list(tmp_path, path):
    """A task's page, its logs and their JSON read the registry as `entries` reads it (one it
    cannot read: no entries), and answered 404 "no task" where the list answered 503."""
    root, me = tmp_path / "root", own_identity()
    settings = RegistrySettings(registry_root=str(root), registry_retention_secs=60)
    Registry(settings).write(RegistryEntry(sandbox=str(tmp_path / "sb"), supervisor_pid=me.pid,
                                           supervisor_start=me.start_ticks, supervisor_boot=me.boot_id,
                                           front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="t-1"))
    os.chmod(root, 0o777)  # anyone could plant an entry now: not trusted
    app = ObserverApp(Reader(settings), loopback=True)
    answered: list[str] = []
    body = b"".join(app({"PATH_INFO": path, "HTTP_HOST": "localhost", "REQUEST_METHOD": "GET"},
                        lambda status, headers: answered.append(status))).decode()
    assert answered == ["503 Service Unavailable"], body
    assert f"cannot read the registry {root}: {root} is not trusted" in body


def job() -> JobSpec:
    return JobSpec(role="r", environment="e", cluster="c", name="web", instance=0, task_id="web-0-x",
                   task=TaskSpec(name="web", processes=(ProcessSpec("web", "exec ./server"),)),
                   ports={"http": 8080})


def test_the_definition_is_written_beside_the_checkpoint_and_read_back(tmp_path):
    assert write_definition(tmp_path, job())
    doc, problem = read_definition(tmp_path)
    assert problem == "" and doc is not None
    assert (doc["task_id"], doc["key"], doc["ports"]) == ("web-0-x", "c/r/e/web", {"http": 8080})
    assert doc["task"]["processes"][0]["cmdline"] == "exec ./server"
    assert doc["health"]["kind"] == "none"  # enums by value
    assert oct((tmp_path / ".stoker/task.json").stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in (tmp_path / ".stoker").iterdir()] == ["task.json"]  # no temporary left


def test_the_definition_written_a_process_at_a_time_is_the_whole_documents_json(tmp_path):
    """`definition_chunks` makes each process's values as it writes them: the file is still
    `json.dumps` of the whole document, byte for byte, whatever the processes hold (a
    command line that looks like the document's own keys, loggers' enums, no process)."""
    rotating = LoggerSpec(destination=LogDestination.BOTH, mode=LogMode.ROTATE, backups=2)
    processes = (ProcessSpec("web", 'exec ./server --x \'"processes": []\''),
                 ProcessSpec("tail", "tail -f log", daemon=True, logger=rotating),
                 ProcessSpec("ü", "echo ✓", final=True, min_duration_secs=0.5))
    for these in (processes, processes[:1], ()):
        bound = attrs.evolve(job(), task=attrs.evolve(job().task, processes=these))
        assert write_definition(tmp_path, bound)
        written = (tmp_path / ".stoker/task.json").read_bytes()
        assert written == json.dumps(definition_json(bound), sort_keys=True).encode()
        assert json.loads(written)["task"]["processes"] == [json.loads(json.dumps(attrs.asdict(
            p, value_serializer=lambda _i, _f, v: getattr(v, "value", v)))) for p in these]


def test_a_planted_definition_is_refused_not_followed(tmp_path):
    stoker = tmp_path / ".stoker"
    stoker.mkdir()
    os.symlink("/etc/passwd", stoker / "task.json")
    doc, problem = read_definition(tmp_path)
    assert doc is None and "symlink" in problem
    os.unlink(stoker / "task.json")
    os.mkfifo(stoker / "task.json")
    doc, problem = read_definition(tmp_path)
    assert doc is None and "FIFO" in problem
    os.unlink(stoker / "task.json")
    (stoker / "task.json").write_text(json.dumps({"x": "y" * MAX_DEFINITION_BYTES}))
    doc, problem = read_definition(tmp_path)
    assert doc is None and "larger than" in problem
    assert read_definition(tmp_path / "nowhere")[0] is None


# Why an attempt has no definition, as `.stoker` and its reader tell it: a temporary left
# (`.task.json.RANDOM.tmp`), its supervisor alive, its attempt in the checkpoint.
UNWRITTEN = [
    (True, True, True, "its supervisor is writing it"),
    (True, False, False, "its supervisor was killed as it wrote it (it left .task.json.0123abcd.tmp, which the next "
                         "supervisor of this sandbox removes)"),
    (False, True, False, "its supervisor is starting the attempt: it writes it before the attempt's first record"),
    (False, False, False, "its supervisor died before it wrote it (nor did it record the attempt in its checkpoint)"),
    (False, False, True, "its supervisor did not keep it: a Stoker from before task.json, or one that could not "
                         "write it (`task_definition_unwritten` in its log), or it was removed since"),
]


@pytest.mark.parametrize("temporary, alive, recorded, why", UNWRITTEN)
def test_an_attempt_without_a_definition_is_told_why_from_what_its_sandbox_holds(tmp_path, temporary, alive,
                                                                                   recorded, why):
    """Was: always `the task was started by a Stoker that did not keep it`, also of one killed
    as it wrote its first (Stoker writes it first thing), or still starting."""
    stoker = tmp_path / ".stoker"
    stoker.mkdir()
    if temporary:
        (stoker / ".task.json.0123abcd.tmp").write_text('{"task_id": "web-0-2", ')
    (stoker / ".usage.json.4567cdef.tmp").write_text("{")  # another file's: says nothing of this one
    asked = Asked("web-0-2", ("web-0-1", "web-0-2"), alive, recorded)
    assert read_definition(tmp_path, asked) == (None, f"no {stoker}/task.json: {why}")
    write_definition(tmp_path, attrs.evolve(job(), task_id="web-0-1"))  # the attempt before's
    assert read_definition(tmp_path, asked) == (
        None, f"the sandbox's task.json is of task 'web-0-1', an earlier attempt; this attempt's: {why}")
    assert read_definition(tmp_path, attrs.evolve(asked, task_id="web-0-0"))[1] == \
        "the sandbox's task.json is of task 'web-0-1', a later attempt"
    assert read_definition(tmp_path, attrs.evolve(asked, task_id="web-0-1"))[0] is not None
    another = attrs.evolve(asked, ids=("web-0-2",))  # a run before it in the sandbox wrote web-0-1
    assert read_definition(tmp_path, another) == (
        None, f"the sandbox's task.json is of task 'web-0-1', an earlier run's in this sandbox; this attempt's: {why}")
    assert read_definition(tmp_path, attrs.evolve(another, later=frozenset({"web-0-1"})))[1] == \
        "the sandbox's task.json is of task 'web-0-1', a later attempt"  # a run after it did


def test_a_stoker_directory_of_many_names_is_not_listed_whole_for_each_page(tmp_path):
    """A supervisor's `.stoker` holds about 8 names; one the task filled (its own user's,
    under `stoker run`) is looked at only so far (`definition.NAMES_LOOKED_AT`). Was: listed
    whole at each request of the task's page: 200,000 names, 0.84 s a page (0.7 ms now)."""
    stoker = tmp_path / ".stoker"
    stoker.mkdir()
    (stoker / ".task.json.0123abcd.tmp").write_text("{")
    asked = Asked("web-0-2", ("web-0-2",), True, False)
    assert read_definition(tmp_path, asked)[1].endswith("its supervisor is writing it")
    for i in range(NAMES_LOOKED_AT):
        (stoker / f"filler-{i}").write_text("")
    assert read_definition(tmp_path, asked) == (None, f"no {stoker}/task.json: why cannot be told: {stoker} holds "
                                                      f"more than {NAMES_LOOKED_AT} names (a supervisor's holds a few)")


@pytest.mark.parametrize("levels", [1200, 9000], ids=["read-by-3.12", "read-by-3.13"])
def test_a_definition_nested_deeper_than_stoker_writes_is_refused_on_every_python(tmp_path, levels):
    """Valid JSON nested 1,200 levels: 3.11's json.loads refused it (RecursionError), 3.12's
    read it and the task page's json.dumps(indent=2) raised RecursionError (a 500); nested
    9,000 levels (18 KB), 3.13's read it and the page was 162 MB. Refused as read, on all."""
    stoker = tmp_path / ".stoker"
    stoker.mkdir()
    (stoker / "task.json").write_text('{"task": {"processes": []}, "x": ' + "[" * levels + "]" * levels + "}")
    doc, problem = read_definition(tmp_path)
    assert (doc, problem) == (None, f"{stoker}/task.json is nested deeper than 100 levels: not shown")
    (stoker / "task.json").write_text('{"task": ' + '{"x": ' * 98 + "1" + "}" * 98 + "}")
    assert read_definition(tmp_path) == (json.loads((stoker / "task.json").read_text()), "")  # 100 levels


def test_a_definition_that_cannot_be_written_costs_only_a_warning(tmp_path, caplog):
    (tmp_path / ".stoker").symlink_to("/tmp")
    assert not write_definition(tmp_path, job())
    assert "task_definition_unwritten" in caplog.text and "symlink" in caplog.text


def test_a_definition_that_cannot_be_renamed_into_place_leaves_no_temporary(tmp_path, caplog):
    """`task.json` a directory (a task that is the supervisor's user may make one): the rename
    fails. Was: its temporary stayed, one more at each attempt, and the page said 'its
    supervisor is writing it' for as long as it ran."""
    (tmp_path / ".stoker" / "task.json" / "x").mkdir(parents=True)
    assert not write_definition(tmp_path, job())
    assert "task_definition_unwritten" in caplog.text
    assert sorted(os.listdir(tmp_path / ".stoker")) == ["task.json"]


@pytest.fixture
def resolver(monkeypatch):
    """The host's resolver, but `observer.test` is two loopback addresses (as `localhost` is
    127.0.0.1 and ::1 on a stock Debian /etc/hosts) and `nowhere.test` is no address."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "observer.test":
            return [*real("127.0.0.1", port, *args, **kwargs), *real("127.0.0.2", port, *args, **kwargs)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_name_of_several_addresses_is_served_on_each_on_one_port(tmp_path, resolver):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with serving(reader, Limits(idle_secs=1, loop_secs=1), host="observer.test") as srv:  # both addresses
        listening = listening_on(srv)
        assert [host for host, _ in listening] == ["127.0.0.1", "127.0.0.2"]
        assert len({port for _, port in listening}) == 1 and listening[0][1] > 0
        for host, port in listening:
            # Every address is loopback: the name it was given and loopback names are
            # answered, another name (a DNS rebinding) is not.
            for name, status in ((f"observer.test:{port}", b"200"), ("localhost", b"200"),
                                 ("rebound.example", b"403")):
                with socket.create_connection((host, port), timeout=10) as sock:
                    sock.sendall(b"GET /api/tasks HTTP/1.0\r\nHost: %s\r\n\r\n" % name.encode())
                    assert sock.recv(100).startswith(b"HTTP/1.0 " + status), (host, name)


def test_a_name_that_does_not_resolve_is_an_error_naming_it(tmp_path, resolver):
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    with pytest.raises(OSError, match="'nowhere.test' does not resolve to an address: Name or service not known"):
        make_server(reader, "nowhere.test", 0)


def test_an_ipv6_address_may_be_given_in_brackets(tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60))
    srv = make_server(reader, "[::1]", 0)
    try:
        assert [host for host, _ in listening_on(srv)] == ["::1"]
    finally:
        srv.close()
        srv.task_dispatcher.shutdown()


@pytest.mark.skipif(os.geteuid() != 0, reason="a registry of another user's needs root to make")
def test_a_registry_it_may_not_read_is_an_error_never_a_host_without_tasks(tmp_path, capsys, kept_logging):
    """`stoker observe` as an ordinary user on root's registry (`--root /var/run/stoker`),
    or on one it does not trust, served an empty task list, 200: a host where nothing runs.
    Now it does not start (one error line, exit 1), and a registry that became unreadable
    since is a 503 naming why."""
    from executor.cli.main import main
    from executor.observe.server import ObserverApp

    root = tmp_path / "theirs"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    assert main(["observe", "--root", str(root), "--port", "0"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"stoker: error: cannot read the registry {root}: {root} is not trusted: it "
                   f"belongs to uid 65534, mode 700\n")
    app = ObserverApp(Reader(RegistrySettings(registry_root=str(root), registry_retention_secs=60)),
                      loopback=True)
    answered: list[str] = []
    body = b"".join(app({"PATH_INFO": "/api/tasks", "HTTP_HOST": "localhost", "REQUEST_METHOD": "GET"},
                        lambda status, headers: answered.append(status)))
    assert answered == ["503 Service Unavailable"]
    assert json.loads(body) == {"error": f"cannot read the registry {root}: {root} is not trusted: "
                                         f"it belongs to uid 65534, mode 700"}


def test_a_checkpoint_is_replayed_again_only_once_it_changed(tmp_path):
    """Each load of the task list replayed every task's checkpoint: 200 tasks of 64 KiB took
    0.75-1.1 s a page. A checkpoint whose file is the same (device, inode, size, time)
    gives the view it gave; one its writer appended to is read from where it was read, one
    compacted is read again (tests/integration/test_view_resume.py)."""
    from executor.host.entry import FrontEnd, RegistryEntry
    from executor.host.identity import own_identity
    from executor.host.registry import Registry
    from executor.task.checkpoint import CheckpointWriter

    root, me = tmp_path / "root", own_identity()
    settings = RegistrySettings(registry_root=str(root), registry_retention_secs=60)
    writers = []
    for n in range(3):
        sandbox = tmp_path / f"sb{n}"
        writer = CheckpointWriter(sandbox)
        writer.append_many([
            {"kind": "header", "task": f"web.{n}", "job_key": "c/r/e/web", "task_id": f"web-{n}",
             "sandbox": str(sandbox), "ports": {}, "supervisor_pid": me.pid,
             "supervisor_start": me.start_ticks + n, "supervisor_boot": me.boot_id, "marker": "m",
             "processes": ["web"], "health": "none", "wall": time.time()},
            {"kind": "task", "from": "NEW", "to": "STARTING", "reason": "launched", "wall": time.time()}])
        writers.append(writer)
        Registry(settings).write(RegistryEntry(
            sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + n,
            supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
            task_id=f"web-{n}"), prune=False)
    reader = kept_reader(settings)
    try:
        first = [t.row for t in reader.tasks()]
        assert reader.views.read == 3
        assert [t.row for t in reader.tasks()] == first and reader.views.read == 3  # none changed
        writers[1].append({"kind": "task", "from": "STARTING", "to": "RUNNING",
                           "reason": "processes started", "wall": time.time()})
        again = {t.row["task_id"]: t.row for t in reader.tasks()}
        assert (reader.views.read, reader.views.resumed) == (4, 1)  # the one that changed: from where it was read
        assert reader.task("web-1").inspection.attempt.state == "RUNNING" and reader.views.read == 4
    finally:
        for writer in writers:
            writer.close()
    assert again["web-0"] == next(r for r in first if r["task_id"] == "web-0")


def test_a_log_is_over_once_its_supervisor_let_go_or_is_gone_not_while_it_runs(tmp_path):
    """What stops following a log (`logpage.all_shown`): the registry says whether the
    task's supervisor still runs (its pid and start time) and whether it let go."""
    from executor.host.entry import FrontEnd, RegistryEntry
    from executor.host.identity import own_identity
    from executor.host.registry import Registry
    from executor.observe.logrange import LogQuery

    me, settings = own_identity(), RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=60)
    cases = {"running": (0, None), "ended": (0, time.time()), "gone": (1000, None)}  # start + 1000: another process
    for n, (task_id, (later, ended)) in enumerate(cases.items()):
        sandbox = tmp_path / task_id
        (sandbox / ".logs/web/0").mkdir(parents=True)
        (sandbox / ".logs/web/0/stdout").write_text("hello\n")
        Registry(settings).write(RegistryEntry(
            sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + later + n,
            supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
            task_id=task_id, ended_wall=ended), prune=False)
    reader = Reader(settings)
    over = {task_id: reader.log(task_id, "web", LogQuery()).over for task_id in cases}
    assert over == {"running": False, "ended": True, "gone": True}


def test_the_views_of_tasks_gone_from_the_registry_are_forgotten(tmp_path):
    """Tasks come and go (the registry prunes an entry past its retention): each left its
    view and fold kept (87 KB for a 52 KB checkpoint of 10 processes) until 4,096 places
    were known, then every view, the live ones' too, was forgotten at once."""
    from executor.host.entry import FrontEnd, RegistryEntry
    from executor.host.identity import own_identity
    from executor.host.registry import Registry
    from tests.support.statuscli import RUNNING, header, write

    root, me = tmp_path / "root", own_identity()
    settings = RegistrySettings(registry_root=str(root), registry_retention_secs=60)
    reader, names = kept_reader(settings), []
    for n in range(40):
        sandbox = tmp_path / f"sb{n}"
        write(sandbox, [header(me.pid + 1_000_000, n), *RUNNING])
        entry = RegistryEntry(sandbox=str(sandbox), supervisor_pid=me.pid + 1_000_000, supervisor_start=n,
                              supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
                              task_id=f"web-{n}")
        Registry(settings).write(entry, prune=False)
        names.append(entry.name)
        assert len(reader.tasks()) == min(n + 1, 3)
        if n >= 2:  # the oldest of the three goes, as the registry prunes it
            os.unlink(root / names[n - 2])
        assert len(reader.views) <= 3
    assert reader.views.read == 40
