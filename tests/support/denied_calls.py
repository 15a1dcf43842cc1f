"""`stoker run` under a real seccomp filter (`tests/support/seccomp.py`): one service task
and what a test checks of it, with figures.

Owns `DeniedRun`: `stoker run` of a task with a health-checked HTTP server (`web`), a process
whose daemonized grandchild ignores SIGTERM (`daemon`), a plain sleeper restarted at once
when killed (`sleeper`, `min_duration=0`) and a final process that leaves `final.ran`, the
whole Stoker process tree under the filter. `--cgroups off` by default: without a task
cgroup the signals and waits that use pidfds are the only way the task is stopped, so what
the filter denies is what decides. Closing it SIGKILLs the session and every process of
the task that is left.

A test module imports its fixtures: `seccomp_required` (autouse: the module's tests skipped
where no filter can be installed) and `runs`, a maker of DeniedRuns closed after the test.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import pidnames, proc_scan, seccomp
from tests.support.shellwords import fake_sh, in_aurora
from tests.support.stoker_proc import StokerProcess, checkpoint_records, kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

PY = sys.executable
HEALTHY = "task             STARTING → RUNNING  healthy:"

CONFIG = f"""\
web = Process(name='web', cmdline='exec {in_aurora(fake_sh())} --serve-health {{{{thermos.ports[health]}}}}')
daemon = Process(name='daemon', cmdline='exec {in_aurora(fake_sh())} --ignore-sigterm --daemonize-child '
                                       '--daemon-ignore-sigterm --daemon-pid-file daemon.pid')
sleeper = Process(name='sleeper', cmdline='exec sleep 600', min_duration=0)
fin = Process(name='fin', cmdline='touch final.ran', final=True)
jobs = [Service(cluster='local', role='me', environment='test', name='web',
                task=Task(processes=[web, daemon, sleeper, fin], finalization_wait=3,
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),
                health_check_config=HealthCheckConfig(initial_interval_secs=5.0, interval_secs=0.05,
                                                      timeout_secs=0.5),
                lifecycle=DisableLifecycle)]
"""


class DeniedRun:
    """`stoker run` of CONFIG in TMP/NAME/sandbox with `rules` denied (none: no filter)."""

    def __init__(self, tmp: Path, rules: list[str], *extra: str, name: str = "run") -> None:
        workdir = tmp / name
        workdir.mkdir()
        self.sandbox = workdir / "sandbox"
        config = workdir / "web.aurora"
        config.write_text(CONFIG)
        launcher = tuple(seccomp.launcher(rules)) if rules else ()
        self.stoker = StokerProcess(["run", str(config), "--sandbox", str(self.sandbox), "--kill-grace", "0.3",
                                     "--cgroups", "off", *extra], workdir, launcher=launcher)
        self._pids: set[int] = set()
        self._marker: str | None = None

    @property
    def pid(self) -> int:
        return self.stoker.pid

    def log(self) -> str:
        return self.stoker.stdout() + self.stoker.stderr()

    def wait_healthy(self, timeout_secs: float = 15) -> None:
        """Until the task is RUNNING (its first health check passed) and the daemon is up."""
        self.stoker.wait_output(HEALTHY, timeout_secs)
        wait_for(lambda: self.daemon_pid() or self.stoker.proc.poll() is not None, timeout_secs,
                 message="daemon.pid")
        assert self.daemon_pid(), self.log()[-3000:]

    def daemon_pid(self) -> int | None:
        try:
            return pidnames.pid_in(self.sandbox / "daemon.pid")
        except ValueError:  # not written (yet)
            return None

    def sleeper_pid(self) -> int | None:
        pids = [pidnames.named(r["pid"], r.get("wall")) for r in checkpoint_records(self.sandbox)
                if r.get("kind") == "process" and r.get("process") == "sleeper" and r.get("pid")]
        return pids[-1] if pids and proc_scan.is_live(pids[-1]) else None

    def restart_secs(self) -> float:
        """SIGKILL the sleeper's run; seconds until its next run is up."""
        old = wait_for(self.sleeper_pid, 10, message="the sleeper's run")
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: self.sleeper_pid() not in (None, old), 10, message="the sleeper's next run")
        return time.monotonic() - killed_at

    def cpu_secs(self, over_secs: float) -> float:
        """CPU seconds the supervisor used over `over_secs` (from /proc/PID/stat)."""
        def used() -> float:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2:].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        before = used()
        time.sleep(over_secs)
        return used() - before

    def task_pids(self) -> set[int]:
        """Every pid of the task known now: the checkpoint's, the daemon's, the marked ones."""
        tops = task_pids(self.sandbox)
        self._pids |= tops | {pid for pid in [self.daemon_pid()] if pid}
        for pid in tops:
            self._marker = self._marker or proc_scan.task_marker_of(pid)
        if self._marker:
            self._pids |= proc_scan.task_pids_by_marker(self._marker)
        return set(self._pids)

    def stop(self) -> tuple[int, bool, set[int]]:
        """SIGTERM `stoker run`: its exit status, whether the final process ran, and the
        processes of the task alive once it exited."""
        pids = self.task_pids()
        self.stoker.signal(signal.SIGTERM)
        status = self.stoker.wait(20)
        return status, (self.sandbox / "final.ran").exists(), live(pids)

    def close(self) -> None:
        self.stoker.close()
        kill_leftovers(self.task_pids())


def kill9_gone_secs(run: DeniedRun, within_secs: float = 1.0) -> tuple[float | None, set[int]]:
    """SIGKILL `stoker run` alone (its pid): seconds until none of its task is left (None:
    not within `within_secs`), and what is alive `within_secs` after the kill."""
    pids = run.task_pids()
    killed_at = time.monotonic()
    os.kill(run.pid, signal.SIGKILL)
    while time.monotonic() - killed_at < within_secs:
        if not live(run.task_pids() | pids):
            return time.monotonic() - killed_at, set()
        time.sleep(0.01)
    return None, live(run.task_pids() | pids)


def denied_runs(tmp_path: Path):
    """A fixture's body (`yield from denied_runs(tmp_path)`): a maker of DeniedRuns under the
    given rules, each closed (its processes gone) after the test."""
    made: list[DeniedRun] = []
    yield lambda rules, *extra: made.append(DeniedRun(tmp_path, rules, *extra, name=f"run{len(made)}")) or made[-1]
    for run in made:
        run.close()


@pytest.fixture(autouse=True)
def seccomp_required() -> None:
    seccomp.require()  # skips where no filter can be installed (another arch, no seccomp)


@pytest.fixture
def runs(tmp_path):
    yield from denied_runs(tmp_path)
