"""`stoker observe`'s JSON API and pages against real `stoker run` tasks in a private
registry: what it lists matches `stoker ps` and `stoker status`, log ranges are bounded,
and nothing outside a registered sandbox is ever served (traversal, symlinks, FIFOs,
unknown tasks: 404). One observer and two tasks for the whole module; the last test starts
an observer of its own."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import time

import psutil
import pytest

from executor.observe.logrange import MAX_CHUNK_BYTES
from tests.support.importhook import patched_at_load
from tests.support.observer import ObservedHost, config
from tests.support.stoker_proc import REPO, StokerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

LINES = 20000  # about 390 KB: more than one range
MB = 1024 * 1024
WRITTEN = 300000  # what the second task writes in its sandbox, its disk sampled every 50 ms
HELD = 40_000_000  # what the second task's daemon keeps resident once its run has exited 0
# A double fork whose run exits 0: the daemon is kept as the task's (and its supervisor adopts it)
DAEMONIZE = f"(python3 -c 'import time; x = b\"d\" * {HELD}; time.sleep(1000)' &); exit 0"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("observe-api")
    observed = ObservedHost(tmp)
    try:
        chatty = config(tmp, "chatty", {
            "talk": f"for i in $(seq 1 {LINES}); do echo \"line $i été\"; done; "
                    "echo oops >&2; exec sleep 1000",
            "idle": "exec sleep 1000"})
        observed.run(chatty)
        observed.run(config(tmp, "second", {"only": f"head -c {WRITTEN} /dev/zero > blob; while [ ! -e go ]; "
                                                     f"do sleep 0.05; done; head -c {WRITTEN} /dev/zero > blob2; "
                                                     "exec sleep 1000", "daemonize": DAEMONIZE}),
                     "--disk-limit", "on", "--disk-check-interval", "0.05")
        observed.observe()
        yield observed
    finally:
        observed.close()


def task_id(host: ObservedHost, job: str) -> str:
    return next(t["task_id"] for t in host.json("/api/tasks") if t["job_key"].endswith("/" + job))


def logs(host: ObservedHost, process: str = "talk", query: str = "", job: str = "chatty") -> dict:
    return host.json(f"/api/tasks/{task_id(host, job)}/processes/{process}/logs?{query}")


def test_the_task_list_is_stoker_ps(host):
    listed = host.json("/api/tasks")
    ps = json.loads(host.stoker("ps", "--all", "--json").stdout)
    assert len(listed) == 2
    assert {(t["task_id"], t["state"], t["supervisor_pid"]) for t in listed} == \
        {(t["task_id"], t["state"], t["supervisor_pid"]) for t in ps}
    assert all(t["state"] == "RUNNING" and t["url"] == f"/api/tasks/{t['task_id']}?supervisor={t['supervisor']}"
               for t in listed)
    # docs/contract.md §1: "the objects of `stoker ps --all --json`, with `ports`, `supervisor` ... and `url`"
    assert all(set(t) == set(ps[0]) | {"ports", "supervisor", "url"} for t in listed)


def test_a_task_is_what_stoker_status_says_with_usage_and_definition(host):
    tid = task_id(host, "chatty")
    doc = host.json(f"/api/tasks/{tid}")
    status = json.loads(host.stoker("status", tid, "--json").stdout)
    pids = {p["name"]: p["runs"][-1]["pid"] for p in doc["status"]["attempts"][-1]["processes"]}
    assert pids == {p["name"]: p["runs"][-1]["pid"] for p in status["attempts"][-1]["processes"]}
    assert set(doc["usage"]) == {"talk", "idle"}
    for name, usage in doc["usage"].items():
        assert usage["pid"] == pids[name] and usage["rss_bytes"] > 0 and usage["processes"] >= 1
    assert doc["task"]["task_id"] == tid and doc["task"]["processes_running"] == 2
    commands = {p["name"]: p["cmdline"] for p in doc["definition"]["task"]["processes"]}
    assert commands["idle"] == "exec sleep 1000" and doc["definition"]["task_id"] == tid
    row = next(line for line in (REPO / "docs/contract.md").read_text().splitlines() if line.startswith("| `stoker observe"))
    named = row[row.index("`/api/tasks/ID` (") + 17:]
    assert set(doc) == set(re.findall(r"`(\w+)`", named[:named.index(")")])), named[:200]


def test_use_against_reservation_is_in_status_and_the_api_with_thermos_names(host):
    """The second task's disk is sampled (`--disk-limit on`): its last sample reaches `stoker
    status` and the observer through `.stoker/usage.json`, and a newer one replaces it (the
    observer keeps a checkpoint's view until the file changes; a sample changes only this); the
    first's check is off: its disk is null, and the text says why. CPU and RSS are its
    running trees', reserved figures its Resources."""
    tid = task_id(host, "second")

    def status() -> dict:
        return json.loads(host.stoker("status", tid, "--json").stdout)["resources"]
    figures = wait_for(lambda: (f := status())["disk_used"] and f["disk_used"] >= WRITTEN and f)
    assert (figures["disk_reserved"], figures["cpu_reserved"], figures["ram_reserved"]) == (MB, 0.1, MB)
    assert figures["disk_percent"] == round(100 * figures["disk_used"] / MB, 1)
    assert figures["ram_used"] > 0 and figures["cpu_used"] is not None and figures["disk_note"] is None
    assert 0 <= figures["disk_sample_age_secs"] < 30
    api = host.json(f"/api/tasks/{tid}")["resources"]
    assert api["disk_used"] >= WRITTEN and api["disk_reserved"] == MB and api["ram_used"] > 0
    (host.runs[1].sandbox / "go").touch()  # a second file: a newer sample, the checkpoint unchanged
    assert wait_for(lambda: host.json(f"/api/tasks/{tid}")["resources"]["disk_used"] >= 2 * WRITTEN)
    off = host.json(f"/api/tasks/{task_id(host, 'chatty')}")["status"]["resources"]
    assert off["disk_used"] is None and off["disk_percent"] is None and off["disk_reserved"] == MB
    assert "disk-limit check is off" in off["disk_note"] and off["ram_used"] > 0
    text = host.stoker("status", task_id(host, "chatty")).stdout
    disk = next(line for line in text.splitlines() if line.lstrip().startswith("disk "))
    assert disk.split()[1] == "-" and "the disk-limit check is off for this task" in disk, text
    page = host.get(f"/tasks/{tid}")[2].decode()
    assert "<h2>Resources</h2>" in page and "sampled" in page


def test_the_daemon_a_run_left_counts_in_the_tasks_ram_in_status_and_the_api(host):
    """The second task's `daemonize` run double-forks and exits 0: its daemon, adopted by
    the supervisor and kept as the task's, is in ram_used (before, only the running runs'
    trees were: the task showed the few MB of its `sleep`)."""
    tid = task_id(host, "second")
    supervisor = psutil.Process(next(t["supervisor_pid"] for t in host.json("/api/tasks") if t["task_id"] == tid))

    def daemon_rss() -> int:
        found = [p for p in supervisor.children() if str(HELD) in " ".join(p.cmdline())]
        return found[0].memory_info().rss if found and found[0].memory_info().rss >= HELD else 0
    rss = wait_for(daemon_rss)
    assert wait_for(lambda: json.loads(host.stoker("status", tid, "--json").stdout)["resources"]["ram_used"] >= rss)
    api = host.json(f"/api/tasks/{tid}")
    assert api["resources"]["ram_used"] >= rss and set(api["usage"]) == {"only"}
    text = host.stoker("status", tid).stdout
    ram = next(line for line in text.splitlines() if line.lstrip().startswith("ram "))
    assert float(ram.split()[1]) >= rss / MB - 0.1 and ram.split()[2] == "MiB", text


def test_the_pages_answer_with_strict_headers(host):
    tid = task_id(host, "chatty")
    for path in ("/", f"/tasks/{tid}", f"/tasks/{tid}/processes/talk/logs",
                 f"/tasks/{tid}/processes/talk/logs?follow=1&stream=stderr"):
        status, headers, body = host.get(path)
        assert status == 200 and headers["Content-Type"].startswith("text/html"), path
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff" and b"<script>" not in body
    status, headers, _ = host.get("/static/follow.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")


def test_log_ranges_are_the_tail_or_what_was_asked_and_never_more_than_the_cap(host):
    wait_for(lambda: logs(host, query="stream=stderr")["data"] == "oops\n", 20)
    tail = logs(host)
    size = tail["size"]
    assert tail["end"] == size and tail["data"].endswith(f"line {LINES} été\n")
    assert tail["data"].startswith("line ") and tail["length"] <= 64 * 1024  # a whole first line
    first = logs(host, query="offset=0&length=21")  # byte 21 is the first of line 2's é
    assert (first["offset"], first["data"]) == (0, "line 1 été\nline 2 ")  # é left for later
    assert first["end"] == 20 == len("line 1 été\nline 2 ".encode())
    assert logs(host, query="offset=20&length=3")["data"] == "ét"
    huge = logs(host, query=f"offset=0&length={10**18}")
    assert huge["capped"] and huge["length"] <= MAX_CHUNK_BYTES and size > MAX_CHUNK_BYTES
    status, _, body = host.get(f"/api/tasks/{task_id(host, 'chatty')}/processes/talk/logs?length={10**18}")
    assert status == 200 and len(body) < 2 * MAX_CHUNK_BYTES
    past = logs(host, query=f"offset={size + 1000}")
    assert (past["offset"], past["end"], past["data"]) == (size, size, "")
    assert logs(host, query="run=0")["run"] == 0 and tail["runs"] == [0]


def hostile(host: ObservedHost) -> None:
    sandbox = host.runs[0].sandbox
    logs_dir = sandbox / ".logs"
    for name in ("evil/0", "fifo/0"):
        (logs_dir / name).mkdir(parents=True, exist_ok=True)
    if not (logs_dir / "evil/0/stdout").is_symlink():
        os.symlink("/etc/passwd", logs_dir / "evil/0/stdout")
        os.symlink("/etc", logs_dir / "etc")
        os.mkfifo(logs_dir / "fifo/0/stdout")


@pytest.mark.parametrize("path", [
    "/api/tasks/no-such-task",
    "/tasks/no-such-task",
    "/api/tasks/no-such-task/processes/talk/logs",
    "/api/tasks/{id}/processes/evil/logs?run=0",  # a symlink to /etc/passwd
    "/api/tasks/{id}/processes/etc/logs",  # a symlink to a directory out of the sandbox
    "/api/tasks/{id}/processes/fifo/logs?run=0",  # a FIFO: refused, not waited on
    "/api/tasks/{id}/processes/..%2F..%2F..%2Fetc/logs",
    "/api/tasks/{id}/processes/%2E%2E/logs",
    "/api/tasks/{id}/processes/nobody/logs",
    "/api/tasks/{id}/processes/talk/logs?run=7",
    "/api/tasks/{id}/processes/talk/logs?stream=stdout.3",
    "/tasks/{id}/../../etc/passwd",
    "/static/..%2F..%2Fsetup.py",
])
def test_nothing_outside_a_registered_sandbox_is_served(host, path):
    hostile(host)
    started = time.monotonic()
    status, _, body = host.get(path.format(id=task_id(host, "chatty")))
    assert status == 404, (path, body[:200])
    assert time.monotonic() - started < 5 and b"root:" not in body


def test_bad_parameters_writes_and_foreign_hosts_are_refused(host):
    tid = task_id(host, "chatty")
    status, _, body = host.get(f"/api/tasks/{tid}/processes/talk/logs?stream=../../x")
    assert status == 400 and b"stream" in body
    status, headers, _ = host.get("/api/tasks", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, _ = host.get("/api/tasks", headers={"Host": "attacker.example"})
    assert status == 403


def test_an_absolute_form_request_target_is_answered_by_its_path_and_authority(host):
    """`GET http://HOST/PATH`: a server must accept it (RFC 9112 §3.2.2); its authority, not
    the Host header, is the host asked for."""
    tid = task_id(host, "chatty")
    answer = raw_request(host.url, f"GET http://localhost/api/tasks/{tid} HTTP/1.0\r\n"
                                   "Host: localhost\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.0 200") and json.loads(answer.split(b"\r\n\r\n", 1)[1])["task"]["task_id"] == tid
    answer = raw_request(host.url, b"GET HTTP://127.0.0.1:1338 HTTP/1.0\r\nHost: localhost\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200") and b"<h1>Tasks on this host</h1>" in answer
    answer = raw_request(host.url, b"GET http://attacker.example/api/tasks HTTP/1.0\r\n"
                                   b"Host: localhost\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 403")


def raw_request(url: str, data: bytes, timeout: float = 10) -> bytes:
    hostport = url.split("//", 1)[1]
    address, port = hostport.rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=timeout) as sock:
        chunks = []
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # refused before it read all we sent
            pass
        return b"".join(chunks)


def test_slow_clients_hold_no_worker_and_others_are_answered(host):
    observer = psutil.Process(host.observer.pid)
    threads_before = observer.num_threads()
    hostport = host.url.split("//", 1)[1]
    address, port = hostport.rsplit(":", 1)
    slow = []
    try:
        for _ in range(40):  # slowloris: requests that never finish their headers
            sock = socket.create_connection((address, int(port)), timeout=5)
            sock.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
            slow.append(sock)
        for round_ in range(3):
            for sock in slow:
                sock.sendall(b"a")  # a byte now and then keeps each connection busy
            started = time.monotonic()
            answer = raw_request(host.url, b"GET /api/tasks HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:100]
            # a generous bound: a worker a slow client held would answer after its idle_secs (30 s)
            assert time.monotonic() - started < 10, round_
        assert observer.num_threads() == threads_before  # no thread per connection
    finally:
        for sock in slow:
            sock.close()
    big = raw_request(host.url, b"GET /api/tasks HTTP/1.0\r\nHost: 127.0.0.1\r\nX-big: "
                      + b"a" * 100_000 + b"\r\n\r\n")
    assert big == b"" or big.split(b"\r\n", 1)[0].split()[1] in (b"400", b"431")  # capped
    assert raw_request(host.url, b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").startswith(b"HTTP/1.0 200")


def test_a_port_in_use_or_not_a_port_is_one_error_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        observed = ObservedHost(tmp_path)
        done = observed.stoker("observe", "--port", str(taken))
        assert done.returncode == 1, done
        assert done.stderr.splitlines()[-1] == \
            f"stoker: error: cannot listen on 127.0.0.1:{taken}: Address already in use"
    done = observed.stoker("observe", "--port", "70000")
    assert done.returncode == 2 and "'70000' is not a port number" in done.stderr


def test_an_observer_started_under_nohup_serves_on_through_a_sighup(tmp_path):
    """nohup's ignored SIGHUP is kept (as `stoker run` keeps it): the observer serves on
    until SIGTERM."""
    observed = ObservedHost(tmp_path)
    try:
        workdir = tmp_path / "observer"
        workdir.mkdir()
        proc = StokerProcess(["observe", "--port", "0", "--root", str(observed.root)], workdir,
                             env=observed.env, launcher=("nohup",))
        observed.observer = proc
        observed.url = proc.wait_output("stoker observe: http://", 30).split("stoker observe: ", 1)[1].split()[0]
        observed.url = observed.url.rstrip("/")
        proc.signal(signal.SIGHUP)
        assert observed.get("/api/tasks")[0] == 200 and proc.proc.poll() is None
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "observer_stopped" in proc.stderr()
    finally:
        observed.close()


def test_a_sighup_while_the_observer_loads_stops_it_as_once_it_serves(tmp_path):
    # (was: SIGHUP's default while loading: killed, 129 to a shell; SIGTERM then exited 0)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(patched_at_load("waitress", """
        import signal

        def _patch(module):
            os.kill(os.getpid(), signal.SIGHUP)
    """))
    proc = StokerProcess(["observe", "--root", str(tmp_path / "root"), "--port", "0"], tmp_path,
                         env={"PYTHONPATH": f"{hook}:{REPO}"})
    try:
        assert proc.wait(60) == 0, proc.stderr()
        assert "Traceback" not in proc.stderr() and "http://" not in proc.stdout()
    finally:
        proc.close()


def blocked_signals(pid: int, tid: int) -> int:
    """The SigBlk mask of thread `tid` of process `pid`."""
    status = open(f"/proc/{pid}/task/{tid}/status").read()
    return int(status.split("SigBlk:", 1)[1].split()[0], 16)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_only_the_main_thread_takes_sigterm_and_the_observer_stops_at_once(tmp_path, signum):
    """The kernel gives a signal sent to the process to a thread that does not block it:
    every worker blocks SIGTERM, SIGINT and SIGHUP, so it is the main thread, whose handler
    stops the server (a worker would leave it to the I/O loop's next tick, seconds later).
    SIGHUP (the terminal it ran on closed) stops it as SIGTERM does: its last line, exit 0
    (was: SIGHUP's default, killed without the line, 129 to a shell)."""
    observed = ObservedHost(tmp_path)
    try:
        observed.observe("--log-format", "json")
        proc = observed.observer
        assert proc is not None
        workers = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        stops = sum(1 << (s - 1) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
        assert workers and all(blocked_signals(proc.pid, t) & stops == stops for t in workers)
        assert blocked_signals(proc.pid, proc.pid) & stops == 0
        proc.signal(signum)
        assert proc.wait(10) == 0
        # Its log, as --log-format json asked: one object per line (it had no such flag).
        lines = [json.loads(line) for line in proc.stderr().splitlines()]
        assert [line.get("event") for line in lines] == ["observer_listening", "observer_stopped"]
    finally:
        observed.close()
