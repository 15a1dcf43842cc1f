"""`stoker run` as the first process of a PID namespace: a container's main process
(`docker run IMAGE stoker run job.aurora`), emulated with `unshare --pid --fork
--mount-proc` (root and util-linux; skipped elsewhere). `nsenter` into the namespace
plays `docker exec`.

The kernel drops every signal a namespace's init has no handler for, so a `docker stop`
while Stoker loads must be recorded, not lost (`executor/cli/start.py`); and every orphan
of the namespace re-parents to it, so what `docker exec` left is neither killed as the
task's leftover nor left a zombie between two tasks (`executor/procs/strangers.py`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.lock import LockTable
from executor.observe.reader import Reader
from executor.task.inspection import inspect_sandbox
from tests.e2e.test_upgrade_in_place import BROKEN_MODULE, tree
from tests.support import pidnames
from tests.support.configs import job_text, write_config
from tests.support.pty_proc import PtyProcess
from tests.support.stoker_proc import REPO
from tests.support.waiting import wait_for


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, check=False, timeout=10)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs root and util-linux's unshare")


class InitStoker:
    """`python -m executor run ARGS` as the init of a new PID namespace."""

    def __init__(self, workdir: Path, args: list[str], root: Path | None = None, code: Path = REPO) -> None:
        self.out = workdir / "stoker.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
        env["PYTHONPATH"] = str(code)
        if root is not None:  # a registry of its own, as a container's /var/run/stoker
            env["STOKER_ROOT"] = str(root)
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "executor", "run", *args],
                cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.pid = wait_for(lambda: _children(self.proc.pid), message="unshare's child")[0]

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def enter(self, script: str) -> None:
        """`script` run in the namespace by a process that is not Stoker's (`docker exec`)."""
        subprocess.run(["nsenter", "-t", str(self.pid), "-p", "-m", "sh", "-c", script],
                       check=True, timeout=10)

    def child(self, cmdline: bytes) -> int:
        """The pid (ours) of the init's child running `cmdline` (NUL-separated)."""
        def found() -> int | None:
            for pid in _children(self.pid):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                        return pid
            return None
        return wait_for(found, message=f"a child {cmdline!r}")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # the kernel kills the whole namespace with it
        self.proc.wait(10)


def _children(pid: int) -> list[int]:
    """The children of `pid`'s first thread, each named (`pidnames`): once one is reaped, its
    pid may be another process's."""
    try:
        return [pidnames.named(int(p)) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


_state = pidnames.state  # 'gone' also once the pid is another process's


@contextlib.contextmanager
def init_stoker(workdir: Path, args: list[str], root: Path | None = None, code: Path = REPO) -> Iterator[InitStoker]:
    stoker = InitStoker(workdir, args, root, code)
    try:
        yield stoker
    finally:
        stoker.close()


def test_a_stop_signal_while_it_loads_stops_it(tmp_path: Path) -> None:
    """`docker stop` just after `docker run`: the SIGTERM comes while Stoker loads, before
    its relay is up; it stops before its task starts (it was dropped: the task ran on)."""
    config = tmp_path / "job.aurora"
    os.mkfifo(config)  # loading waits until the test writes it
    with init_stoker(tmp_path, ["--sandbox", str(tmp_path / "sb"), str(config)]) as stoker:
        fd = wait_for(lambda: _writer(config), message="Stoker reading its config")
        os.kill(stoker.pid, signal.SIGTERM)
        with os.fdopen(fd, "w") as feed:
            os.set_blocking(fd, True)
            feed.write("jobs = [Service(cluster='local', role='me', environment='test', name='svc', "
                       "task=Task(processes=[Process(name='main', cmdline='sleep 30')], "
                       "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
        assert stoker.proc.wait(5) == 143, stoker.text()
        assert "stopped by SIGTERM before its task started" in stoker.text()


def _writer(fifo: Path) -> int | None:
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:  # no reader yet
            return None
        raise


def _fails_on_go(tmp_path: Path, cgroups: str) -> tuple[Path, list[str]]:
    """A service whose run fails once `go` (the path returned) exists, and its `stoker run` args."""
    go = tmp_path / "go"
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(f"""
        main = Process(name='main', cmdline='while [ ! -e {go} ]; do sleep 0.02; done; exit 1')
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[main], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    return go, ["--cgroups", cgroups, "--restart-backoff", "20", "--sandbox", str(tmp_path / "sb"), str(config)]


@pytest.mark.parametrize("cgroups", ["auto", "off"])
def test_what_docker_exec_left_is_neither_killed_nor_left_a_zombie(tmp_path: Path, cgroups: str) -> None:
    go, args = _fails_on_go(tmp_path, cgroups)
    with init_stoker(tmp_path, args) as stoker:
        wait_for(lambda: "STARTING → RUNNING" in stoker.text(), message="the task running")
        stoker.enter("sleep 30 & exit")  # orphaned at once: the init adopts it
        stranger = stoker.child(b"sleep\x0030\x00")
        go.touch()  # the run fails: its leftovers are killed
        wait_for(lambda: "restarting in" in stoker.text(), message="the restart delay")
        assert _state(stranger) == "S", f"the stranger was killed as the task's leftover:\n{stoker.text()}"
        # Between two tasks another stranger ends, when the test ends it (one that ended on a
        # clock, `sleep 0.05`, could end and be reaped before a busy host let the test see it):
        # it must be reaped, not left a zombie.
        stoker.enter("sleep 31 & exit")
        brief = stoker.child(b"sleep\x0031\x00")
        os.kill(brief, signal.SIGTERM)
        wait_for(lambda: _state(brief) == "gone", 5, message="the stranger reaped")
        os.kill(stoker.pid, signal.SIGTERM)
        assert stoker.proc.wait(5) == 143, stoker.text()


def test_an_init_running_through_an_upgrade_still_tells_what_docker_exec_left(tmp_path: Path) -> None:
    """The init's judge of its orphans (`executor/procs/strangers.py`) loaded at the first
    run's end with an orphan about, long after the start: after an upgrade in place that left
    it unloadable, that run's end took the task down (exit 70, a traceback). It loads as an
    init starts now; other supervisors never load it."""
    installed = tree(tmp_path)
    go, args = _fails_on_go(tmp_path, "off")
    with init_stoker(tmp_path, args, code=installed) as stoker:
        wait_for(lambda: "STARTING → RUNNING" in stoker.text(), message="the task running")
        (installed / "executor" / "procs" / "strangers.py").write_text(BROKEN_MODULE)  # the upgrade
        for stale in installed.rglob("strangers*.pyc"):
            stale.unlink()
        stoker.enter("sleep 30 & exit")
        stranger = stoker.child(b"sleep\x0030\x00")
        go.touch()
        wait_for(lambda: "restarting in" in stoker.text() or stoker.proc.poll() is not None,
                 message="the restart delay")
        assert "Traceback" not in stoker.text() and _state(stranger) == "S", stoker.text()[-3000:]
        os.kill(stoker.pid, signal.SIGTERM)
        assert stoker.proc.wait(5) == 143, stoker.text()


def test_the_host_sees_it_running_and_stops_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its sandbox a volume the host sees: the pid it recorded is 1, its pid in its own
    namespace; `stoker status` and `stoker kill` of its sandbox from the host find it by the
    sandbox's lock (it was LOST, and the kill refused: no live supervisor)."""
    config = tmp_path / "job.aurora"
    config.write_text("jobs = [Service(cluster='local', role='me', environment='test', name='svc', "
                      "task=Task(processes=[Process(name='main', cmdline='sleep 30')], "
                      "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    sandbox = tmp_path / "sb"
    with init_stoker(tmp_path, ["--sandbox", str(sandbox), str(config)], root=tmp_path / "inside") as stoker:
        wait_for(lambda: "STARTING → RUNNING" in stoker.text(), message="the task running")
        capsys.readouterr()
        assert main(["status", str(sandbox)]) == 0
        assert "state=RUNNING" in capsys.readouterr().out
        observer = Reader(RegistrySettings(registry_root=str(tmp_path / "inside"), registry_retention_secs=60))
        rows = [t.row for t in observer.tasks()]  # /proc/locks read once for the list (`lock.LockTable`)
        assert [(r["state"], r["supervisor_alive"]) for r in rows] == [("RUNNING", True)], rows
        assert main(["kill", str(sandbox), "--grace", "1"]) == 0
        assert stoker.proc.wait(5) == 0, stoker.text()


def test_a_lock_table_read_before_it_started_still_sees_it_running(tmp_path: Path) -> None:
    """A page's /proc/locks (`lock.LockTable`) read, for another task, before this supervisor
    took its lock: the header read after it names a supervisor the table has no lock of. Its
    task is RUNNING, not LOST (one read of /proc/locks each, after the checkpoint, never said so)."""
    config = tmp_path / "job.aurora"
    config.write_text("jobs = [Service(cluster='local', role='me', environment='test', name='svc', "
                      "task=Task(processes=[Process(name='main', cmdline='sleep 30')], "
                      "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    sandbox = tmp_path / "sb"
    locks = LockTable()
    assert locks.holder(os.stat(tmp_path)) is None  # read now: an ended task's question earlier in the page
    with init_stoker(tmp_path, ["--sandbox", str(sandbox), str(config)], root=tmp_path / "inside") as stoker:
        wait_for(lambda: inspect_sandbox(sandbox).truth.state == "RUNNING", message="its record RUNNING")
        inspection = inspect_sandbox(sandbox, locks=locks)  # the table read before
        assert (inspection.truth.state, inspection.truth.alive) == ("RUNNING", True), inspection
        os.kill(stoker.pid, signal.SIGTERM)
        assert stoker.proc.wait(5) == 143, stoker.text()


@pytest.mark.parametrize("command", ["run", "executor"])
def test_a_proc_of_another_namespace_is_refused_before_anything_starts(tmp_path: Path, command: str) -> None:
    """`unshare --pid --fork` without `--mount-proc`: Stoker is the namespace's pid 1, its
    /proc the host's, whose pid 1's children it would take for its orphans and signal by
    numbers that are its own namespace's. Refused at once (exit 2), nothing started, saying
    what to do. (`--kill-child`: should it start, the namespace dies with `unshare` at the
    timeout.)"""
    started = tmp_path / "started"
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(f"""
        jobs = [Job(cluster='local', role='me', environment='test', name='ns',
                    task=Task(processes=[Process(name='p', cmdline='touch {started}; sleep 1000')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    env["PYTHONPATH"] = str(REPO)
    args = ["run", str(config), "--sandbox", str(tmp_path / "sandbox")] if command == "run" else ["executor"]
    result = subprocess.run(["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "executor", *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"stoker {command}: /proc is another PID namespace's (its /proc/self is "), result.stderr
    assert result.stderr.endswith("this process is 1): Stoker finds its task's processes there; mount this "
                                  "namespace's own (`unshare --pid --fork --mount-proc`, as a container runtime "
                                  "does)\n"), result.stderr
    assert not started.exists() and not (tmp_path / "sandbox").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace of its own needs root")
def test_a_host_without_proc_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """A /proc that is not there (an empty directory mounted over it, in a mount namespace
    of the test's own): `stoker run` cannot find its task's processes, and says so, exit 2,
    before anything is made."""
    config = write_config(tmp_path, job_text())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}, "PYTHONPATH": str(REPO)}
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                             'mount -t tmpfs none /proc || exit 97; exec "$@"', "sh", sys.executable, "-m",
                             "executor", "run", str(config), "--sandbox", str(tmp_path / "sandbox")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, check=False)
    if result.returncode == 97:
        pytest.skip(f"no tmpfs may be mounted over /proc here: {result.stderr.strip()}")
    assert (result.returncode, result.stderr) == (2, (
        "stoker run: /proc cannot be read here (No such file or directory): Stoker finds its task's "
        "processes there; mount this namespace's own (`unshare --pid --fork --mount-proc`, as a "
        "container runtime does)\n")), result.stdout + result.stderr
    assert not (tmp_path / "sandbox").exists()


BACKGROUND = """
import os, shutil, signal, sys, termios
attrs = termios.tcgetattr(0)
attrs[3] |= termios.TOSTOP
termios.tcsetattr(0, termios.TCSANOW, attrs)
pid = os.posix_spawn(shutil.which(sys.argv[1]), sys.argv[1:], os.environ, setpgroup=0)
_, status = os.waitpid(pid, os.WUNTRACED)
if os.WIFSTOPPED(status):
    print("stopped by signal", os.WSTOPSIG(status), flush=True)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
else:
    print("exited", os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_background_run_refused_for_a_proc_of_another_namespace_says_so_under_stty_tostop(tmp_path: Path) -> None:
    """`stty tostop` and `unshare --pid --fork stoker run JOB &`: the refusal's line was the
    one error line written with SIGTTOU not blocked, so the kernel stopped the job on it
    (`Stopped (tty output)`), unseen until `fg`. Now it comes through and the job exits 2."""
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent("""
        jobs = [Job(cluster='local', role='me', environment='test', name='ns',
                    task=Task(processes=[Process(name='p', cmdline='sleep 1000')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    term = PtyProcess([], tmp_path, argv=[
        sys.executable, "-c", BACKGROUND, "unshare", "--pid", "--fork", "--kill-child",
        sys.executable, "-m", "executor", "run", str(config), "--sandbox", str(tmp_path / "sandbox")])
    try:
        assert term.wait(30) == 0
        output = term.read_to_end(5)
    finally:
        term.close()
    assert b"exited 2" in output, output
    assert b"stoker run: /proc is another PID namespace's" in output
