"""`stoker run`'s attempt loop in process (`executor/local/run.py`), where a subprocess
cannot place an event exactly: a stop that lands as the next attempt begins."""
from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config.registry import RegistrySettings
from config.settings import RunSettings
from executor.local import run as local_run

pytestmark = pytest.mark.timeout(30, method="thread")  # (the run relays SIGALRM, the signal method's timer, as a stray)

SERVICE = """
jobs = [Service(cluster='c', role='r', environment='test', name='quick',
                task=Task(processes=[Process(name='p', cmdline='exit 0')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1))]
"""


def _stoker_run(tmp_path: Path, config_text: str = SERVICE, *, out: Any = None, environ: dict[str, str] | None = None,
                unit: Any = None, **settings: Any) -> tuple[local_run.LocalRun, io.StringIO, Path]:
    """A `stoker run` of `config_text` (no plan cache) in `tmp_path/sandbox`, registered
    under `tmp_path/registry`, printing to the StringIO it returns (or to `out`), with its
    sandbox; `environ`: variables of its environment besides this process's; `unit`: systemd's."""
    config = tmp_path / "job.aurora"
    config.write_text(config_text)
    sandbox = tmp_path / "sandbox"
    out = io.StringIO() if out is None else out
    run = local_run.LocalRun(
        RunSettings(config=str(config), sandbox=str(sandbox), **settings), out=out,
        environ=dict(os.environ, STOKER_PLAN_CACHE="off", **(environ or {})), unit=unit,
        registry=RegistrySettings(registry_root=str(tmp_path / "registry")))
    return run, out, sandbox


def test_a_stop_as_the_next_attempt_begins_still_ends_with_its_line(tmp_path, monkeypatch):
    """A zero-delay restart's wait is over, and the stop lands before the next attempt's
    supervisor exists: that attempt never starts, and the run ends with the same line and
    status as a stop in the delay (it ended with no line at all)."""
    run, out, _ = _stoker_run(tmp_path, restart_backoff_secs=0.0, restart_backoff_max_secs=0.0)
    real_owner_for = local_run.owner_for
    made = []

    def owner_for(*args, **kwargs):
        made.append(None)
        if len(made) == 2:  # the second attempt: the stop comes before its owner is known
            run.stop("stopped by the test")
        return real_owner_for(*args, **kwargs)

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    assert run.run() == 0
    last = out.getvalue().rstrip("\n").splitlines()[-1]
    assert last.endswith("stopped by `stoker kill` during the restart delay (exit 0)"), out.getvalue()
    assert len(made) == 2


def test_a_failing_service_keeps_the_first_and_the_last_attempts_logs(tmp_path, monkeypatch):
    """--keep-attempts: each attempt's logs were kept for ever (1,440 a day at the default
    back-off); now the first attempt's and the last N earlier ones'."""
    run, out, sandbox = _stoker_run(tmp_path, SERVICE.replace("cmdline='exit 0'", "cmdline='echo attempt; exit 1'"),
                                  restart_backoff_secs=0.0, restart_backoff_max_secs=0.0, keep_attempts=2)
    real_owner_for = local_run.owner_for
    made = []

    def owner_for(*args, **kwargs):
        made.append(None)
        if len(made) == 7:  # six attempts ended; the seventh is stopped before it starts
            run.stop("stopped by the test")
        return real_owner_for(*args, **kwargs)

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    assert run.run() == 1
    archived = sorted(name for name in os.listdir(sandbox) if name.startswith(".logs"))
    assert archived == [".logs.attempt-0", ".logs.attempt-4", ".logs.attempt-5"]
    assert (sandbox / ".logs.attempt-5/p/0/stdout").read_text() == "attempt\n"
    assert ("stoker           FAILED: process 'p' failed: exit status 1 after 1 of max_failures=1 runs; service task "
            "FAILED; services restart on any end; restarting in 0.0 s (quick end 1)\n") in out.getvalue()


@pytest.mark.parametrize("role, euid, said", [
    ("www-data", 0, True),  # root runs it as root: Aurora's executor would not
    ("root", 0, False),  # the role is root's own
    ("www-data", 1000, False),  # not root: it runs as you, as anything but root must (README "Users")
])
def test_running_as_root_under_a_role_that_is_not_roots_is_said(role, euid, said):
    assert (local_run.planfiles.role_not_taken(role, euid) is not None) == said


def test_an_operator_kill_as_an_attempt_starts_stops_that_attempt(tmp_path, monkeypatch):
    """`stoker kill` landed after `stoker run` had looked for a stop and before the new
    attempt's owner listened on the control socket (its process adapter starting: the
    cgroup, the watchdog): the session found no owner, answered "it stops", and the attempt
    ran on, for ever, unkilled. Now the kill reaches that owner's queue and stops it."""
    from executor.host.controlwire import KillControl
    from tests.support.control_socket import ask_all

    run, out, sandbox = _stoker_run(tmp_path, SERVICE.replace("cmdline='exit 0'", "cmdline='exec sleep 60'"),
                                    kill_grace_secs=1.0)
    real_owner_for = local_run.owner_for
    answers = []

    def owner_for(*args, **kwargs):
        owner = real_owner_for(*args, **kwargs)
        real_start = owner.start

        def start() -> None:  # run() checked for a stop already; the owner is not listening
            answers.extend(ask_all(sandbox, KillControl()))  # `stoker kill`
            real_start()

        owner.start = start
        return owner

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    code: list[int] = []
    runner = threading.Thread(target=lambda: code.append(run.run()))
    runner.start()
    runner.join(10)
    if runner.is_alive():  # the bug: the attempt runs on; stop it to clean up
        run.stop("stopped by the test's cleanup")
        runner.join(10)
        pytest.fail(f"the attempt ran on after the operator's kill: {answers}\n{out.getvalue()}")
    assert code == [0]
    assert [(a.ok, a.message) for a in answers] == [(True, "the task was starting; it stops")]
    assert "task             STARTING → KILLING  killed by the operator (stoker kill)" in out.getvalue()


def test_a_ctrl_c_once_the_sandbox_is_held_leaves_no_lost_task_listed(tmp_path, monkeypatch):
    """Ctrl-C (a KeyboardInterrupt: the signal relay is not up yet) right after `stoker run`
    took its sandbox and registered: the session was never closed, so `stoker ps` listed a
    LOST task without an id for the registry's whole retention (7 days). Now the entry says
    the supervisor let go."""
    from executor.host.registry import Registry

    run, _, _ = _stoker_run(tmp_path)
    real_hold = local_run.hold_sandbox

    class Interrupted:  # the console, where the Ctrl-C lands: its first line after the hold
        def write(self, text: str) -> None:
            raise KeyboardInterrupt

    def hold(*args, **kwargs):
        session = real_hold(*args, **kwargs)
        run._out = Interrupted()
        return session

    monkeypatch.setattr(local_run, "hold_sandbox", hold)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    (listed,) = Registry(RegistrySettings(registry_root=str(tmp_path / "registry"))).entries()
    assert (listed.entry.ended_wall is not None, listed.entry.ended_state) == (True, "")  # no task: no end


def test_an_operator_kill_before_the_first_attempt_ends_the_run_with_a_line(tmp_path, monkeypatch, caplog):
    """`stoker kill SANDBOX` as `stoker run` prepared its task (the sandbox held, its socket
    up, no owner yet): the run ended with exit 0 and not a word; and in the moment between
    the socket's start and the hook's, the kill was refused and the task started anyway."""
    from executor.host.controlwire import KillControl
    from tests.support.control_socket import ask_all

    caplog.set_level(logging.INFO, logger=local_run.__name__)
    run, out, sandbox = _stoker_run(tmp_path)
    real_hold = local_run.hold_sandbox
    answers = []

    def hold(*args, **kwargs):
        session = real_hold(*args, **kwargs)  # its control socket serves from here on
        answers.extend(ask_all(sandbox, KillControl()))  # `stoker kill`
        assert answers[-1].ok, answers  # refused: the run would go on
        return session

    monkeypatch.setattr(local_run, "hold_sandbox", hold)
    assert run.run() == 0
    assert [(a.ok, a.done, a.message) for a in answers] == [(True, True, "the task was starting; it stops")]
    lines = out.getvalue().splitlines()
    assert lines[-1] == "stoker run: stopped by `stoker kill` before its task started (exit 0)", lines
    assert not any("STARTING" in line for line in lines)
    (ended,) = [r for r in caplog.records if getattr(r, "stoker_event", "") == "run_ended"]
    assert (ended.levelname, ended.name, ended.stoker_fields) == (
        "INFO", local_run.__name__, {"reason": "stopped by `stoker kill` before its task started", "exit": 0})


def _owner_failing_at_a_restart(tmp_path: Path, monkeypatch, name: str,
                                error: Callable[[], BaseException]) -> tuple[local_run.LocalRun, io.StringIO, Path]:
    """`_stoker_run` of a task `name` with a process that stays (`keep`) and one that fails
    (`flaky`), whose owner meets `error()` as it reads the module a supervisor loads at a
    process's first restart."""
    import sys
    import types

    class Failing(types.ModuleType):
        def __getattr__(self, attribute: str) -> object:
            raise error()

    monkeypatch.setitem(sys.modules, "executor.procs.runprune", Failing("executor.procs.runprune"))
    return _stoker_run(tmp_path, (
        "keep = Process(name='keep', cmdline='exec sleep 60')\n"
        "flaky = Process(name='flaky', cmdline='exit 1', min_duration=0, max_failures=3)\n"
        f"jobs = [Job(cluster='c', role='r', environment='test', name='{name}',\n"
        "            task=Task(processes=[keep, flaky], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n"),
        kill_grace_secs=1.0)


def _ended_with_its_processes(sandbox: Path) -> list[dict[str, Any]]:
    """The checkpoint's records of a run that has ended; its `keep` process ran, and no
    process of its task is left."""
    import json

    from tests.support.pidnames import named
    from tests.support.proc_scan import live, task_pids_by_marker

    records = [json.loads(line) for line in (sandbox / ".stoker" / "checkpoint.jsonl").read_text().splitlines()]
    marker = records[0]["marker"]
    keep = [named(r["pid"], r.get("wall")) for r in records if r.get("process") == "keep" and r["to"] == "RUNNING"]
    assert keep and not live(keep) and not task_pids_by_marker(marker), records
    return records


def test_an_internal_error_stops_the_processes_and_ends_the_run_with_a_line_and_70(
        tmp_path, monkeypatch, caplog):
    """Stoker's own error in an attempt's owner (here a bug's error as the module a supervisor
    loads at a process's first restart is read; one that cannot be imported, an upgrade in
    place's, is said and the task goes on): `stoker run` died with a CRITICAL `crashed` and a second traceback, no final line,
    and its checkpoint said RUNNING, so `stoker status` showed the task LOST. Now the owner's
    shutdown stops every process, the checkpoint ends FAILED with the reason, and the run
    ends with one line naming the error and status 70, the traceback in the log only."""
    import logging

    run, out, sandbox = _owner_failing_at_a_restart(tmp_path, monkeypatch, "crash", lambda: RuntimeError("a bug"))
    with caplog.at_level(logging.ERROR):
        assert run.run() == local_run.EXIT_INTERNAL_ERROR == 70, out.getvalue()
    records = _ended_with_its_processes(sandbox)
    reason = "executor internal error: RuntimeError: a bug"
    task = [r for r in records if r["kind"] == "task"]
    assert (task[-1]["to"], task[-1]["reason"]) == ("FAILED", reason), task
    killed = {r["process"]: r["run"] for r in records if r.get("to") == "KILLED"}
    assert killed == {"keep": 0, "flaky": 1}, records  # not left RUNNING in `stoker status`
    said = f"{reason}; no restart: Stoker itself failed (the traceback is in its log)"
    assert out.getvalue().splitlines()[-1].endswith(f"stoker           FAILED: {said} (exit 70)"), out.getvalue()
    (failed,) = [r for r in caplog.records if "owner_failed" in r.getMessage()]
    assert failed.exc_info is not None  # the traceback, in the log
    (ended,) = [r for r in caplog.records if getattr(r, "stoker_event", "") == "run_ended"]  # and its event
    assert (ended.levelno, ended.stoker_fields) == (logging.ERROR, {"task": "crash.0", "state": "FAILED",
                                                                    "exit": 70, "reason": said})


def test_a_memory_error_in_the_owner_stops_the_processes_and_is_the_host_s_not_a_bug(
        tmp_path, monkeypatch, caplog):
    """A MemoryError in an attempt's owner (here as the module a supervisor loads at a
    process's first restart is read: under `ulimit -v`, any allocation): it was an internal
    error, 'executor internal error: MemoryError: ', a traceback and exit 70. It is the
    host's: the processes are stopped, the checkpoint ends FAILED saying so, no traceback,
    and the error goes on to the entry point's one line (`stoker: error: cannot go on: ...`,
    exit 2)."""
    import logging

    from executor.host.registry import Registry
    from tests.support.limits import data_limit_set

    run, out, sandbox = _owner_failing_at_a_restart(tmp_path, monkeypatch, "short", MemoryError)
    with data_limit_set(), caplog.at_level(logging.ERROR), pytest.raises(MemoryError):
        run.run()  # under a data-size limit the MemoryError is blamed on (ulimit -d)
    records = _ended_with_its_processes(sandbox)
    task = [r for r in records if r["kind"] == "task"]
    assert task[-1]["to"] == "FAILED", task
    assert task[-1]["reason"].startswith("the task could not go on: no memory could be had (MemoryError): "), task
    failed = [r for r in caplog.records if "owner_failed" in r.getMessage()]
    assert failed and all(r.exc_info is None for r in failed), failed  # one line, no traceback
    (listed,) = Registry(RegistrySettings(registry_root=str(tmp_path / "registry"))).entries()
    assert listed.entry.ended_wall is not None  # an end, not a LOST task, in `stoker ps`
    assert listed.entry.ended_state == "FAILED"  # recorded: `stoker ps` need not replay it


def test_a_ctrl_c_after_the_relay_of_a_run_that_adopted_an_early_start_is_not_swallowed(tmp_path):
    """Once an early start forked its runs, the stop signals are recorded until `stoker run`
    relays them; the relay then put back, as it closed, the recorder it had found: a Ctrl-C
    or SIGTERM as the run ended (its output draining) was recorded and never acted on. Now
    the handlers from before the early start are back once the relay closes."""
    import signal

    from executor.host import early

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP)
    inherited = {signum: signal.getsignal(signum) for signum in stops}
    # Python's Ctrl-C, whatever this test inherited (a suite run as a script's background job
    # starts with SIGINT ignored, and Python then leaves it so)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    before = {signum: signal.getsignal(signum) for signum in stops}
    run = local_run.LocalRun(RunSettings(config=str(tmp_path / "unused.aurora")), out=io.StringIO())
    early.defer_stop_signals()  # as the early start does before its first fork
    try:
        relay = run._relay_signals()
        assert relay is not None
        relay.close()
        assert {signum: signal.getsignal(signum) for signum in stops} == before
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        early.deferred_signals()  # none is raised by the clean-up
        early.undefer_stop_signals()
        for signum, handler in inherited.items():
            signal.signal(signum, handler)


def test_an_operator_kill_as_an_attempt_ends_is_answered_between_attempts(tmp_path, monkeypatch):
    """`stoker kill` once an attempt's task had ended (its owner no longer listening) and
    before `stoker run` let go of that owner: the stop is taken (no restart), and the answer
    says so without calling the ended task starting."""
    from executor.host.controlwire import KillControl
    from tests.support.control_socket import ask_all

    run, out, sandbox = _stoker_run(tmp_path)
    real_owner_for = local_run.owner_for
    answers = []

    def owner_for(*args, **kwargs):
        owner = real_owner_for(*args, **kwargs)
        real_run = owner.run

        def ran():  # the task has ended; the run still holds its owner
            final = real_run()
            answers.extend(ask_all(sandbox, KillControl()))  # `stoker kill`
            return final

        owner.run = ran
        return owner

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    assert run.run() == 0
    assert [(a.ok, a.message) for a in answers] == [
        (True, "no task was running (the supervisor was between attempts); it stops")]
    assert out.getvalue().rstrip().endswith("(exit 0)") and "restarting" not in out.getvalue()


def test_an_internal_error_as_the_owner_closes_is_logged_with_its_traceback(tmp_path, monkeypatch, caplog):
    """An error of Stoker's own in the attempt's shutdown (after its task ended): `stoker
    run` ended with 70 and "the traceback is in its log", but nothing had logged it (the
    owner logs what its loop raises, not what its close does)."""
    import logging

    run, out, _ = _stoker_run(tmp_path)
    real_owner_for = local_run.owner_for

    def owner_for(*args, **kwargs):
        owner = real_owner_for(*args, **kwargs)
        real_close = owner.close

        def close() -> None:
            real_close()
            raise RuntimeError("the shutdown broke")

        owner.close = close
        return owner

    monkeypatch.setattr(local_run, "owner_for", owner_for)
    with caplog.at_level(logging.ERROR):
        assert run.run() == local_run.EXIT_INTERNAL_ERROR, out.getvalue()
    assert "RuntimeError: the shutdown broke" in out.getvalue().splitlines()[-1]
    logged = [r for r in caplog.records if r.exc_info and "the shutdown broke" in str(r.exc_info[1])]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]


LOGGERS = """
jobs = [Job(cluster='c', role='r', environment='test', name='logs',
            task=Task(processes=[Process(name='plain', cmdline='head -c 2621440 /dev/zero'),
                                 Process(name='own', cmdline='head -c 2621440 /dev/zero',
                                         logger=Logger(destination='file', mode='standard'))],
                      resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def test_the_runner_logger_flags_reach_only_the_processes_without_a_logger(tmp_path):
    """`stoker run --runner-logger-mode rotate --runner-rotate-log-size-mb 1
    --runner-rotate-log-backups 1`, as `stoker executor` takes Thermos' flags."""
    run, out, sandbox = _stoker_run(tmp_path, LOGGERS, runner_logger_mode="rotate",
                                    runner_rotate_log_size_mb=1, runner_rotate_log_backups=1)
    assert run.run() == 0, out.getvalue()
    plain = sorted(p.name for p in (sandbox / ".logs/plain/0").iterdir() if p.name.startswith("stdout"))
    assert plain == ["stdout", "stdout.1"]  # rotated at 1 MiB, one backup
    own = sandbox / ".logs/own/0"
    assert sorted(p.name for p in own.iterdir() if p.name.startswith("stdout")) == ["stdout"]
    assert (own / "stdout").stat().st_size == 2621440


@pytest.mark.parametrize("exits_after", [True, False])
def test_the_command_keeps_the_strays_and_stop_signals_ignored_once_its_relay_closes(tmp_path, monkeypatch, exits_after):
    """`stoker run` (the command: `exits_after`) writes its last lines once its relay closed:
    a stray then (SIGUSR2, SIGRTMIN+3) ended it with exit 138 or the like, and a stop signal
    (SIGTERM) replaced its exit status with 143 (tests/e2e/test_run_late_stop.py). A Ctrl-C
    is one again once what the run held is let go (SIGINT's handler found: it ends the
    command at once, exit 130). A LocalRun in a process that goes on puts back what it found."""
    import signal
    from types import SimpleNamespace

    from executor.host.signals import STRAY_SIGNALS

    strays = (signal.SIGUSR2, signal.SIGRTMIN + 3, signal.SIGTERM, signal.SIGINT)
    inherited = {signum: signal.getsignal(signum)  # every one it may leave ignored
                 for signum in (*STRAY_SIGNALS, *local_run.STOP_SIGNALS)}
    run = local_run.LocalRun(RunSettings(config=str(tmp_path / "unused.aurora")), out=io.StringIO(),
                             exits_after=exits_after)
    monkeypatch.setattr(run, "_prepare", lambda: SimpleNamespace(session=SimpleNamespace(close=lambda reason="": None)))
    monkeypatch.setattr(run, "_run", lambda prepared: 0)
    try:
        assert run.run() == 0
        after = {signum: signal.getsignal(signum) for signum in strays}
    finally:
        for signum, handler in inherited.items():
            signal.signal(signum, handler)
    kept = {signum: signal.SIG_IGN if exits_after and signum != signal.SIGINT else inherited[signum]
            for signum in strays}
    assert after == kept
