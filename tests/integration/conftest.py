"""The integration tests' fixtures: a supervisor Harness on a fresh sandbox, closed at
teardown, and the Tracker that kills whatever its processes left (a module that needs
another harness, tests/integration/test_containment.py, defines its own); `sim`, an agent
simulator on tmp_path for the Mesos driver tests, and `driver_factory`, drivers in this
process subscribing to it (tests/support/driver_rig.py); `server`, a scripted HTTP server on
127.0.0.1 that answers 200 `ok` for the health checker tests (test_observe_server.py's
`server` is its own), and `raw_server`, a listener answering with raw bytes; `job` and `plan_dir`, for the plan
cache's tests; `seeded_pyc`, a test's own copy of the session's seeded
PYTHONPYCACHEPREFIX (tests/support/seededpyc.py); `sleeper`, a `sleep 600` child as its Popen;
`refused_writes`, a log file's next writes refused as a full disk refuses them; `kept`, the
watchdog's keepers in this process (tests/support/keepers.py), and `refused_spawns`, the next
spawns refused as a fork the kernel refuses; `configure`, Stoker's own log set up in this
process (`logsetup.configure`) with what it replaced put back after; `settings`, a host
registry of the test's own; `loops`, the health loops a test made, stopped after."""
from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from config.registry import RegistrySettings
from tests.support.agent_sim import AgentSimulator
from tests.support.children import sleeping_popen
from tests.support.http_server import RawAnswers, Reply, ScriptedHTTPServer
from tests.support.keepers import Kept
from tests.support.seededpyc import copy_of, seed
from tests.support.supervision import Harness, Tracker

if TYPE_CHECKING:
    from executor.cli.logsetup import QuietHandler
    from executor.host.identity import ProcessIdentity
    from healthcheck.loop import HealthLoop


@pytest.fixture
def tracker():
    t = Tracker()
    yield t
    t.cleanup()


@pytest.fixture
def harness(tmp_path, tracker):
    h = Harness(tmp_path / "sandbox", tracker)
    try:
        yield h
    finally:
        h.sup.close()


@pytest.fixture
def sim(tmp_path):
    simulator = AgentSimulator(sandbox=tmp_path)
    yield simulator
    simulator.close()
    print("---- executor log ----\n" + simulator.executor_log())


@pytest.fixture
def driver_factory(sim):
    from tests.support.driver_rig import driver_factory as drivers_of  # (the driver: its tests' only)

    with drivers_of(sim) as make:
        yield make


@pytest.fixture
def job(tmp_path) -> Path:
    """A job that includes a file, for the plan cache's tests (tests/support/plancache_rig.py)."""
    from tests.support.plancache_rig import write_job  # (the planner: their tests' only)

    return write_job(tmp_path)


@pytest.fixture
def plan_dir(tmp_path) -> str:
    """A plan cache's directory, not made yet."""
    return str(tmp_path / "cache")


@pytest.fixture
def raw_server():
    """`raw_server(*raw) -> port`: each connection to the port answered with the next raw
    bytes given; `raw_server.requests`, the bytes of each request (`RawAnswers`)."""
    answers = RawAnswers()
    yield answers
    answers.close()


@pytest.fixture
def server():
    srv = ScriptedHTTPServer([Reply(200, b"ok")])
    yield srv
    srv.close()


@pytest.fixture(scope="session")
def _pyc_seed(tmp_path_factory, worker_id):
    base = tmp_path_factory.getbasetemp()
    return seed(base if worker_id == "master" else base.parent)  # xdist's workers: one seed


@pytest.fixture
def seeded_pyc(_pyc_seed, tmp_path):
    """`tmp_path / "pyc"`: a copy of the session's seeded prefix, for PYTHONPYCACHEPREFIX."""
    return copy_of(_pyc_seed, tmp_path / "pyc")


@pytest.fixture
def sleeper():
    yield from sleeping_popen()


@pytest.fixture
def dead() -> ProcessIdentity:
    """The identity a reaped child had: a supervisor that is gone, of this boot."""
    from executor.host.identity import identity_of

    run = subprocess.Popen(["sleep", "600"])
    who = identity_of(run.pid)
    run.kill()
    run.wait(10)
    assert who is not None
    return who


@pytest.fixture
def refused_writes(monkeypatch) -> list[int]:
    """A full disk refuses the log pump's next N writes (ENOSPC; N: the list's one number, 0
    at first, set by the test)."""
    from executor.procs import logpump

    refusals = [0]
    real = logpump.write_all

    def write_all(fd: int, data) -> None:
        if refusals[0]:
            refusals[0] -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(logpump, "write_all", write_all)
    return refusals


@pytest.fixture
def kept(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[..., Kept]]:
    """`kept(exit_by=None)`: a watchdog's keeper (not started) on the one reaper, closed
    after the test; the watchdog module's lines captured from DEBUG up."""
    from executor.procs import watchdog
    from executor.procs.reaper import Reaper

    reaper = Reaper.acquire()
    made: list[Kept] = []

    def make(exit_by=None) -> Kept:
        made.append(Kept(reaper, exit_by))
        return made[-1]

    caplog.set_level(logging.DEBUG, logger=watchdog.__name__)
    try:
        yield make
    finally:
        try:
            for one in made:
                one.close()
        finally:
            reaper.release()


@pytest.fixture
def refused_spawns(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`refuse(n)`: the next `n` spawns refused as the kernel refuses a fork (EAGAIN; the
    C library's error names the program, as posix_spawn's does)."""
    real = os.posix_spawn
    left = [0]

    def spawn(path, *args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "posix_spawn", spawn)
    return lambda n: left.__setitem__(0, n)


@pytest.fixture
def configure() -> Iterator[Callable[..., QuietHandler]]:
    """`configure(...)` as `logsetup.configure` takes it; the handler it put on the root
    logger. What it replaced (handlers, level, hooks, the hooks it hands on to) is put back."""
    from executor.cli import logsetup  # (its modules loaded only for the tests that use it)

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook, sys.unraisablehook,
             logsetup._json, logsetup._before, logsetup._unraisable_before)

    def configured(*args, **kwargs) -> QuietHandler:  # type: ignore[no-untyped-def]
        logsetup.configure(*args, **kwargs)
        (handler,) = root.handlers
        assert isinstance(handler, logsetup.QuietHandler)
        return handler
    try:
        yield configured
    finally:
        logging.captureWarnings(False)
        (root.handlers[:], level, sys.excepthook, threading.excepthook, sys.unraisablehook, logsetup._json,
         logsetup._before, logsetup._unraisable_before) = saved
        root.setLevel(level)


@pytest.fixture
def settings(tmp_path: Path) -> RegistrySettings:
    """A host registry of the test's own (an hour's retention), for what registers or reads it."""
    return RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600.0)


@pytest.fixture
def loops() -> Iterator[list[HealthLoop]]:
    """The health loops a test made (it appends each), stopped at teardown whatever it did."""
    made: list[HealthLoop] = []
    yield made
    for loop in made:
        loop.stop(timeout_secs=5.0)
