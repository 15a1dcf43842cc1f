"""Every test's `stoker` runs register in a registry of their own, never the machine's, and
keep their plans (`executor/local/plancache.py`) in a cache of their own, never the user's.

Sets `STOKER_ROOT` and `STOKER_PLAN_CACHE` for the whole session to private temporary
directories, before any test starts a supervisor (in this process or as a child, which
inherits the environment). A test that looks at the registry or the plan cache itself gives
its runs a directory of its own.

A suite run as (a child of) a systemd service's main process, as in a CI runner's unit,
does not hand its runs systemd's notification socket: a `stoker run` or `stoker observe`
would notify systemd (READY=1, STOPPING=1) as that unit; nor `JOURNAL_STREAM`, with which a
log written to the runner's stderr would change its format. Tests that mean it give their own.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from tests.support.sessioncgroup import Leftovers

# A forked child that gets back into pytest ends there, named (tests/support/forkguard.py).
pytest_plugins = ["tests.support.forkguard"]

# Property tests draw the same examples on every run (CI must be deterministic); a failure
# found by a wider search is turned into a fixed case or an oracle fix, not left to chance.
# STOKER_HYPOTHESIS_PROFILE=deep is that wider search, by hand: random examples, and the
# owner's stateful test (test_owner_machine.py) runs thousands of them (docs/testing.md §11).
# No per-example deadline (Hypothesis' 200 ms) and no too_slow health check of the examples'
# generation: on a loaded CI host a time says nothing of the code, and either failing there
# would be a flake (a deadline failed under mutmut).
settings.register_profile("stoker", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("STOKER_HYPOTHESIS_PROFILE", "stoker"))


for _name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
    os.environ.pop(_name, None)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session):
    """Collection keeps what it compiles, whatever PYTHONDONTWRITEBYTECODE says: pytest
    rewrites every test module's asserts as it imports it and keeps the result in
    `__pycache__` only when this process may write bytecode. Under PYTHONDONTWRITEBYTECODE=1
    (this VM's shell sets it) each run rewrote all of them again, 11.6 s of CPU to collect the
    unit tier, 33 s for the four tiers (each pytest-xdist worker collects its tiers too); with
    the rewritten modules kept, 2-3 s. Only this process's collection: the tests themselves,
    and every process they start, see the interpreter's setting as the environment gave it."""
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = False
    try:
        return (yield)
    finally:
        sys.dont_write_bytecode = saved


_RUN_CGROUP = pytest.StashKey[object]()


def pytest_configure(config: pytest.Config) -> None:
    """SIGINT and SIGQUIT at their defaults; and the run's first process (not a pytest-xdist
    worker) moves into a cgroup of its own before any worker or test starts
    (tests/support/sessioncgroup.py).

    A run started as a background job of a script (`make test > log &`: the shell starts it
    with both ignored, as it does every background job without job control) handed both
    ignored to every `stoker run` its tests start, and `stoker run` rightly keeps an ignored
    SIGINT ignored: each test of a Ctrl-C failed (test_early_start_signals' `[0, 0]`, its
    stoker runs both exit 0), in every such run. A Ctrl-C reaches a foreground process,
    which has them at their defaults; a test that means them ignored ignores them itself."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    if hasattr(config, "workerinput"):
        return
    from tests.support import sessioncgroup

    cgroup = config.stash[_RUN_CGROUP] = sessioncgroup.begin()
    for line in getattr(cgroup, "swept", ()):  # what a run SIGKILLed before this one left
        print(f"WARNING: {line}", file=sys.stderr)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    """Once every worker is gone: the cgroups the run left behind fail it, named (a task's
    `stoker-*` that neither its supervisor nor its watchdog removed, or the test's); the
    processes it left are named. Both are killed and removed."""
    result = yield
    left = _end_run_cgroup(session.config)
    if left is not None and left.interrupted:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    elif left is not None and left.cgroups and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return result


def pytest_unconfigure(config: pytest.Config) -> None:
    """A run that finished no session (`--markers`, `--help`, an error before its start)
    leaves its cgroup (no exit status is left to fail: what it left is said)."""
    _end_run_cgroup(config)


def _end_run_cgroup(config: pytest.Config) -> Leftovers | None:
    """End the run's cgroup, once; what it left, said (None: it had none, or it is ended)."""
    from tests.support import sessioncgroup

    cgroup = config.stash.get(_RUN_CGROUP, None)
    if not isinstance(cgroup, sessioncgroup.SessionCgroup):
        return None
    config.stash[_RUN_CGROUP] = "ended"
    left = sessioncgroup.end(cgroup)
    for line in left.lines(cgroup.directory):
        print(f"\nERROR: {line}", file=sys.stderr)
    return left


@pytest.fixture(autouse=True, scope="session")
def _private_stoker_root(tmp_path_factory: pytest.TempPathFactory):
    names = ("STOKER_ROOT", "STOKER_PLAN_CACHE")
    before = {name: os.environ.get(name) for name in names}
    os.environ["STOKER_ROOT"] = str(tmp_path_factory.mktemp("stoker-root"))
    os.environ["STOKER_PLAN_CACHE"] = str(tmp_path_factory.mktemp("plan-cache"))
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def zk(tmp_path_factory):
    """A ZooKeeper server shared by a module's tests (skipped where none can run; CI fails)."""
    from tests.support.zookeeper import ZooKeeperServer, require_zookeeper

    require_zookeeper()
    server = ZooKeeperServer(tmp_path_factory.mktemp("zk"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_zk(tmp_path):
    """A server of the test's own, not started: the test stops and starts it at will."""
    from tests.support.zookeeper import ZooKeeperServer, require_zookeeper

    require_zookeeper()
    server = ZooKeeperServer(tmp_path / "zk")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def agent(tmp_path):
    """An agent simulator with a fresh sandbox; on teardown it is closed, every process its
    task left is killed, and the executor's log must hold no traceback. A module that needs
    another agent (a token, a recording one) defines its own `agent`."""
    from tests.support.agents import sandboxed_agent

    with sandboxed_agent(tmp_path) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _no_idle_reaper():
    """After a test that ran a Supervisor in this process, its reaper thread is gone. Released
    while this process had another child (a fixture's server, a simulator's executor), it
    stays blocked in waitid(P_ALL) until some child exits, and reaps that one, whoever's it is:
    a later test's Popen then sees exit 0 (ECHILD) for its SIGKILLed child (seen once, after a
    shuffle of the integration tier). A child spawned here for it to reap wakes it; it ends."""
    yield
    module = sys.modules.get("executor.procs.reaper")
    reaper = module.Reaper._instance if module is not None else None
    if reaper is None or reaper.thread is None:
        return
    with reaper.lock:
        if reaper.users or reaper.registered():
            return  # a Supervisor still runs (a module's): its own close ends the thread
        with reaper.forking():
            os.posix_spawn("/bin/true", ["true"], {})
    deadline = time.monotonic() + 5
    while reaper.thread is not None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert reaper.thread is None, "the reaper thread outlived every Supervisor of this process"


@pytest.fixture
def kept_logging():
    """For a test that runs, in this process, a command that configures logging (`stoker
    observe`, `run`, `executor`: `logsetup.configure`): the handler it put on the root logger
    writes to the stream the test captured, closed after it, so every later test's log line
    printed a "Logging error" traceback. It is taken off, and the hooks put back."""
    import logging
    import threading

    root = logging.getLogger()
    saved = (root.level, sys.excepthook, threading.excepthook, sys.unraisablehook)
    yield
    from executor.cli import logsetup

    for handler in root.handlers[:]:
        if isinstance(handler, logsetup.QuietHandler):
            root.removeHandler(handler)
    logging.captureWarnings(False)
    root.setLevel(saved[0])
    sys.excepthook, threading.excepthook, sys.unraisablehook = saved[1:]
    logsetup._json = False


@pytest.fixture(autouse=True)
def _no_configured_logging():
    """No test leaves Stoker's own handler on the root logger (`kept_logging` takes it off)."""
    yield
    import logging

    module = sys.modules.get("executor.cli.logsetup")
    left = [h for h in logging.getLogger().handlers if module is not None and isinstance(h, module.QuietHandler)]
    assert left == [], "logsetup.configure's handler outlived the test: use the kept_logging fixture"



def _dispositions() -> dict[int, object]:
    import signal

    return {s: signal.getsignal(s) for s in signal.valid_signals()
            if s not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(s) is not None}


@pytest.fixture(autouse=True)
def _no_signal_left_ignored():
    """No test leaves a signal of this process ignored, or blocked, that was not: every later
    test's children inherit both (across exec), and a `stoker run` started with a stray
    signal ignored neither relays nor logs it (three stray-signal tests failed so after
    test_signal_relay.py's executor, whose relay leaves every stray ignored). Put back, and
    the test that left them fails. (A Python handler is reset in every child: not checked.)"""
    import signal

    before, mask = _dispositions(), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    after = _dispositions()
    changed = sorted(s for s in before if (after.get(s) is signal.SIG_IGN) != (before[s] is signal.SIG_IGN))
    for signum in changed:
        signal.signal(signum, before[signum])  # type: ignore[arg-type]
    left_blocked = signal.pthread_sigmask(signal.SIG_SETMASK, mask) != mask
    names = [signal.Signals(s).name if s in set(signal.Signals) else str(s) for s in changed]
    assert not changed and not left_blocked, (
        f"the test left signals ignored or no longer ignored ({', '.join(names) or 'none'})"
        f"{' and signals blocked' if left_blocked else ''}: it must put back what it found")


@pytest.fixture(autouse=True)
def _fresh_pidfd_probe():
    """Each test's first use of pidfds probes the kernel again (`pidsignal.probe_pidfds`,
    kept once per process and keyed by its pid): what one test's process found is not
    another's."""
    from executor.procs import pidsignal

    pidsignal.forget_probe()
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test's captured output (its log lines, say a sandbox b'/sb-\\xff' written as its
    surrogate escape '\\udcff') reaches the report as it was written: pytest-xdist's worker
    sends the report to the controller as strict UTF-8, which refuses a lone surrogate and
    ended the whole run with an INTERNALERROR. Written out as `\\udcff` here, before it goes."""
    report.sections = [(title, text.encode("utf-8", "backslashreplace").decode("utf-8"))
                       for title, text in report.sections]



SERIAL_MARK = "pytest.mark.serial"


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    """The run of the tests marked `serial` (`-m serial`, `make test`'s last) imports only
    the test modules that name the mark: collecting every tier to run some 30 tests took 7 s
    of its 43. `pytest_collection_modifyitems` below holds every module to naming it so."""
    if config.option.markexpr != "serial" or collection_path.suffix != ".py" \
            or not collection_path.name.startswith("test_"):
        return None
    return SERIAL_MARK not in collection_path.read_text(encoding="utf-8")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked `serial` in a module whose text does not say `pytest.mark.serial` (the
    mark from a variable, a helper or a hook) would run in neither of `make test`'s runs: the
    first deselects it and the serial one does not import its module. Refused, named."""
    unnamed = sorted({str(item.path) for item in items if item.get_closest_marker("serial") is not None
                      and SERIAL_MARK not in item.path.read_text(encoding="utf-8")})
    if unnamed:
        raise pytest.UsageError(f"marked serial without the text {SERIAL_MARK!r} in the module "
                                f"(the serial run would not import it): {', '.join(unnamed)}")
