"""`stoker run` as the main process of a systemd unit (README "Running under systemd").

What systemd gives a unit's main process, reproduced with real parts: `$NOTIFY_SOCKET` names
a real AF_UNIX datagram socket this test reads, `$WATCHDOG_USEC` asks for watchdog pings.
No task process inherits them. (How the variables are read: tests/unit/test_sdnotify.py.)
"""
from __future__ import annotations

import configparser
import contextlib
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import psutil
import pytest

from executor.cli.main import _parser
from executor.procs.cgroup_paths import CgroupKind, own_places
from tests.support import cgroups, pidnames
from tests.support.configs import RESOURCES
from tests.support.shellwords import sh
from tests.support.stoker_proc import (
    REPO,
    StokerProcess,
    end_run,
    kill_leftovers,
    live,
    stoker_runs,
    task_pids,
)
from tests.support.waiting import wait_for


def write_job(tmp_path: Path, cmdline: str, extra: str = "") -> Path:
    path = tmp_path / "job.aurora"
    path.write_text(textwrap.dedent(f"""
        main = Process(name='main', cmdline={cmdline!r})
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main], {RESOURCES}, finalization_wait=1){extra})]
    """))
    return path


class NotifySocket:
    """A bound AF_UNIX datagram socket, as systemd's: what it received, message by message.

    A thread of its own reads it all along, as systemd does. `stoker run` sends without
    blocking, and a full queue loses the message (executor/host/sdnotify.py); the queue holds
    `net.unix.max_dgram_qlen` datagrams, 10 by default: read only when a test looked, the 0.1 s
    watchdog pings filled it while the test waited for `stoker kill` or the exit on a loaded
    host, and STOPPING=1 was lost (the test failed, not `stoker run`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)  # read by the thread and by `received`, whichever comes first
        self._messages: list[str] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._reader = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._wake_r not in select.select([self.sock, self._wake_r], [], [])[0]:
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            while True:
                try:
                    data = self.sock.recv(4096)
                except BlockingIOError:
                    return
                self._messages.append(data.decode())

    @property
    def messages(self) -> list[str]:
        """What it received so far, in order (a copy)."""
        with self._lock:
            return list(self._messages)

    def received(self) -> list[str]:
        """Every message sent before the call: what the thread read, and what was still
        queued. Right after the sender's exit, the thread had not always read its last one
        (STOPPING=1 missing once, on two workers under a load of 7)."""
        self._drain()
        return self.messages

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._reader.join(10)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


@pytest.fixture
def stoker(tmp_path):
    with stoker_runs(tmp_path) as start:
        yield lambda config, env, *flags: start(str(config), *flags, env={"STOKER_EARLY_START": "off", **env})


def test_stoker_run_tells_systemd_ready_status_watchdog_and_stopping(tmp_path, notify, stoker):
    """Type=notify: READY=1 (with its STATUS) once the task is RUNNING, not before; WATCHDOG=1
    at half of WATCHDOG_USEC while the owner's loop turns; STOPPING=1 as a SIGTERM's stop
    begins. And no task process inherits the unit's main process's variables: a task's
    sd_notify-aware program would speak to systemd as the unit. Its stdout is the journal's
    stream: no time on a line (the journal stamps it), a warning line marked as one."""
    config = write_job(tmp_path, "env > ../env.txt; sleep 1000")
    stdout = tmp_path / "stoker.stdout"  # the file StokerProcess writes stdout to: its inode
    stdout.touch()
    proc = stoker(config, {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "100000",
                           "JOURNAL_STREAM": f"{stdout.stat().st_dev}:{stdout.stat().st_ino}"},
                  "--announce", "127.0.0.1:1")  # a job without an Announcer: a warning line
    wait_for(lambda: any("READY=1" in m for m in notify.received()), 20, message="READY=1")
    ready = next(m for m in notify.messages if "READY=1" in m)
    assert ready.splitlines() == ["READY=1", "STATUS=svc.0 RUNNING: processes started; no health check configured"]
    # Put before systemd heard it, but written by stoker run's spool thread, which may not
    # have got to it yet (executor/logs.py: output never blocks); the warning was put before it.
    running = "svc.0        task             STARTING → RUNNING  processes started; no health check configured"
    lines = proc.wait_output(running, 10).splitlines()
    assert running in lines  # a line of its own, with no time of its own
    assert "<4>stoker run: warning: --announce: the job has no `announce = Announcer(...)`; " \
           "nothing is announced" in lines
    before = notify.messages.index(ready)
    assert any(m.startswith("STATUS=svc.0 STARTING") for m in notify.messages[:before]), notify.messages
    assert not any("RUNNING" in m for m in notify.messages[:before]), notify.messages  # said once, with READY
    pings = notify.messages.count("WATCHDOG=1")
    wait_for(lambda: notify.received().count("WATCHDOG=1") >= pings + 3, 5, message="3 more pings")
    wait_for(lambda: "\n" in (tmp_path / "env.txt").read_text(), 5, message="the task's env written")
    names = {line.partition("=")[0] for line in (tmp_path / "env.txt").read_text().splitlines()}
    assert "STOKER_TASK_MARKER" in names and "MESOS_SANDBOX" in names  # the task's own env
    assert not names & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}, sorted(names)
    assert "JOURNAL_STREAM" in names  # harmless: a program checks it against its own stderr
    proc.signal(15)
    assert proc.wait() == 143
    after = notify.received()[notify.messages.index(ready) + 1:]
    assert "STOPPING=1\nSTATUS=stopping: stopped by SIGTERM" in after, after
    assert after[-1].startswith("STATUS=svc.0 KILLED: stopped by SIGTERM"), after
    assert not [m for m in after if "READY=1" in m]  # once only


def test_a_notify_socket_stoker_cannot_speak_to_is_warned_of_and_the_task_runs(tmp_path, stoker):
    """`NOTIFY_SOCKET=vsock:...` (systemd in a VM speaks to its host so): one warning, and the
    task runs without a service manager to tell (was never told to anything: no unit state)."""
    proc = stoker(write_job(tmp_path, "sleep 1000"), {"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "100000"})
    proc.wait_output("STARTING → RUNNING", 20)
    proc.signal(15)
    assert proc.wait() == 143
    assert "systemd_notify_unsupported socket=vsock:2:1234" in proc.stderr() and "Traceback" not in proc.stderr()


def test_the_wait_between_attempts_feeds_the_watchdog_and_stoker_kill_says_stopping(tmp_path, notify, stoker):
    """The restart delay (30 s here, cut by the kill): its STATUS= says so, and the watchdog is fed all along
    (no owner's loop turns then); `stoker kill` during it is STOPPING=1 with its reason. The delay is
    long so that the pings are counted inside it however slowly a loaded host gets to them (a 5 s
    delay left 2 s for them, and ended the delay under a slow wait)."""
    from executor.cli.main import main

    config = write_job(tmp_path, "exit 3")
    proc = stoker(config, {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"},
                  "--restart-backoff", "30")

    def restarting() -> list[str]:
        return [m for m in notify.received() if m.startswith("STATUS=svc.0 RESTARTING in 30 s: ")]

    wait_for(restarting, 20, message="the first restart delay")
    since = notify.messages.index(restarting()[0])
    wait_for(lambda: notify.received()[since:].count("WATCHDOG=1") >= 4, 20, message="pings in the delay")
    assert not [m for m in notify.messages[since:] if m.startswith("STATUS=svc.0 STARTING")], notify.messages
    assert main(["kill", str(tmp_path / "sandbox")]) == 0
    assert proc.wait() == 1, proc.stdout()  # as the service rules say: its last task FAILED
    assert "STOPPING=1\nSTATUS=stopping: killed by the operator (stoker kill)" in notify.received()


def test_stoker_observe_tells_systemd_ready_once_it_listens_and_stopping(tmp_path, notify):
    """And it says it feeds no watchdog when its unit asks for one (WatchdogSec=): systemd
    would kill it every period."""
    proc = StokerProcess(["observe", "--port", "0", "--root", str(tmp_path / "registry")], tmp_path,
                         env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "60000000"})
    try:
        out = proc.wait_output("stoker observe: http://", timeout_secs=30)
        url = out.split("stoker observe: ", 1)[1].split(" ", 1)[0]
        wait_for(lambda: notify.received(), 5, message="a notification")
        assert notify.messages == [f"READY=1\nSTATUS=serving {url}"]
        assert "systemd_watchdog_unfed watchdog_secs=60.0" in proc.stderr(), proc.stderr()
        proc.signal(15)
        assert proc.wait() == 0
        assert notify.received()[1:] == ["STOPPING=1\nSTATUS=stopping"]
    finally:
        proc.close()


# A main process that notes each SIGTERM and exits after a moment; a final process after it.
ORDERED = """
    main = Process(name='main', cmdline="trap 'echo term >> ../order; sleep 0.05; echo main-done >> ../order; exit 0' TERM; touch ../trapped; while true; do sleep 0.05; done")
    fin = Process(name='fin', cmdline='echo fin >> ../order', final=True)
    jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                    task=Task(processes=[main, fin], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                              finalization_wait=5))]
"""


@pytest.fixture
def unit_cgroup():
    """A v2 cgroup like a Delegate=yes service's (root only; None elsewhere)."""
    if os.geteuid() != 0 or cgroups.unavailable("auto") is not None:
        yield None
        return
    places = own_places(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    v2 = next((p for p in places if p.kind is CgroupKind.V2), None)
    if v2 is None:
        yield None
        return
    unit = Path(v2.directory) / f"stoker-test-{uuid.uuid4().hex[:8]}.service"
    unit.mkdir()
    os.setxattr(unit, "user.delegate", b"1")
    yield unit
    for below in unit.iterdir():
        if below.is_dir():
            cgroups.remove(str(below))
    if members := cgroups.members(str(unit)):
        kill_leftovers(members)
    unit.rmdir()


def _command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone meanwhile (a `sleep` of main's loop)
        return ""


def _every_pid(unit: Path) -> list[int]:
    return [pid for procs in unit.rglob("cgroup.procs") for pid in cgroups.members(str(procs.parent))]


def test_systemds_default_stop_sigterms_every_process_and_the_final_process_still_runs(tmp_path, unit_cgroup):
    """KillMode=control-group: SIGTERM, then SIGCONT, to every process of the unit's cgroup
    (its task cgroup below it included) at once. Without root: to `stoker run` and every
    process of the task. The task ends KILLED, the final process runs after main ended,
    `stoker run` exits 143, and nothing is left. Its watchdog, a process of the unit too,
    shows a short command line there (`systemctl status` lists each process's)."""
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(ORDERED))
    args = [sys.executable, "-m", "executor", "run", str(config), "--sandbox", str(tmp_path / "sandbox")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "STOKER_EARLY_START": "off"}
    if unit_cgroup is not None:  # started inside the unit's cgroup, as systemd starts ExecStart
        args = ["sh", "-c", f'echo $$ > {unit_cgroup}/cgroup.procs && SYSTEMD_EXEC_PID=$$ exec "$@"', "sh", *args]
    with open(tmp_path / "out", "wb") as out:
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / "trapped").exists() or proc.poll() is not None, 20, message="main's trap set")
        if unit_cgroup is not None:
            everyone = _every_pid(unit_cgroup)
            assert len(everyone) >= 3, everyone  # stoker run, its watchdog, main's bash (its sleep comes and goes)
        else:
            everyone = [pidnames.named(proc.pid), *live(task_pids(tmp_path / "sandbox"))]  # (proc.wait reaps it)
        (shown,) = [line for line in map(_command_line, psutil.Process(proc.pid).children())
                    if "stoker-watchdog" in line]  # (sh execs stoker run: the same pid)
        assert len(shown) < 300 and shown.startswith("/bin/sh -c eval "), shown  # a line of `systemctl status`
        for sig in (signal.SIGTERM, signal.SIGCONT):
            for pid in everyone:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        assert proc.wait(20) == 143, (tmp_path / "out").read_text()
        order = (tmp_path / "order").read_text().split()
        assert order[-2:] == ["main-done", "fin"] and "term" in order, order
        left = _every_pid(unit_cgroup) if unit_cgroup is not None else live(everyone)
        assert not left, left
        out = (tmp_path / "out").read_text()
        assert "task             KILLING → KILLED  stopped by SIGTERM" in out, out
    finally:
        end_run(proc, tmp_path / "sandbox")

EXAMPLES = REPO / "examples" / "systemd"
UNITS = {"stoker-run@.service": {"Type": "notify", "KillMode": "mixed", "SuccessExitStatus": "143",
                                 "Delegate": "yes", "Restart": "on-failure", "WatchdogSec": "30"},
         "stoker-observe.service": {"Type": "notify", "KillMode": "mixed", "Restart": "on-failure"}}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_the_example_units_say_what_the_readme_says_and_systemd_reads_them(tmp_path, name):
    """The settings README "Running under systemd" explains; the command line is one
    `stoker` parses; `systemd-analyze verify` (where installed) finds nothing to say."""
    text = (EXAMPLES / name).read_text()
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    unit.read_string(text)
    service = dict(unit["Service"])
    assert {k: service.get(k) for k in UNITS[name]} == UNITS[name]
    command = shlex.split(service["ExecStart"].replace("%S", "/var/lib").replace("%i", "hello"))
    assert command[0] == "/usr/local/bin/stoker"
    parsed = _parser().parse_args(command[1:])
    assert parsed.command == command[1]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze here")
    copy = tmp_path / name.replace("@.", "@hello.")
    copy.write_text(text.replace("/usr/local/bin/stoker", sh(sys.executable)))  # systemd reads its quotes
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=30)
    said = [line for line in (done.stdout + done.stderr).splitlines() if copy.name in line]
    assert done.returncode == 0 and not said, done.stdout + done.stderr
