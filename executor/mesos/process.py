"""`stoker executor` as a process: its main thread, the signals that stop it, its exit status.

`main` makes the executor (`executor.py`: the driver's callbacks wired to one TaskOwner) and
its driver, and waits for the task to be over. The main thread only waits: SIGTERM and SIGINT handlers record the signal, the end of the
task is recorded alike, on one queue `main` blocks on (no polling); a signal acts as SHUTDOWN.
Once the task is over and the relay closed (the executor writes its last lines and exits),
SIGTERM and SIGINT are ignored: nothing is left to stop, and the exit status stays the one
the run earned. What is left waits for no thread (every other is a daemon) and no peer, a
few milliseconds (docs/contract.md §9); only a write that blocks for good (a pipe no one
reads) could hold it, and the agent's SIGKILL still ends a process that hangs there.
A stray signal (SIGUSR1, SIGALRM, ...: `executor.host.signals.STRAY_SIGNALS`; and SIGHUP
and SIGQUIT, `stoker run`'s stops from its terminal, which the executor has none of), whose
default would end the executor on the spot, is ignored with a line: a task's `kill -HUP
$PPID` ended it before its task was even RUNNING, the task left to the watchdog.

Exit status (`main`'s return value; the agent logs it):

    0  a normal run: the task ended and its updates were acknowledged, or the agent (SHUTDOWN)
       or a signal (SIGTERM, SIGINT) asked the executor to stop, and it did
    1  an internal error (a bug) ended the task or the driver; the log has the traceback
    3  never subscribed: the agent never answered SUBSCRIBED (unreachable, or refusing
       SUBSCRIBE) until the driver gave up, after 5 s without checkpointing and after
       MESOS_RECOVERY_TIMEOUT with it (or until a signal came)
    4  the agent was lost for good after the executor had subscribed: down past
       MESOS_RECOVERY_TIMEOUT, a disconnect with checkpointing off, a resubscription refused
    5  the task ended, but some of its updates were still unacknowledged when the bounded
       wait ran out, or the agent refused one for good (a 4xx to its UPDATE): the agent may
       never have got them

(2 is the CLI's: a missing MESOS_* variable or an invalid setting, such as a
MESOS_AGENT_ENDPOINT that is not host:port, a token no HTTP header can carry, a
MESOS_DOMAIN_SOCKET path too long or a LIBPROCESS_SSL_* value or file libprocess would refuse
(`agentroute.py`, `agenttls.py`), before anything starts; and no thread, memory or descriptor to be had where the task cannot go on
without one: the task ended TASK_FAILED `the task could not go on: ...`, then the executor
ends as a run does, the error raised to the CLI's one `stoker: error: cannot go on:` line.)
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import time
from collections.abc import Mapping, MutableMapping
from typing import assert_never

import attrs

import executor as package  # its version(): `executor` names the callbacks in this module
from config.environment import task_environment
from config.errors import SettingsError
from config.executorsettings import ExecutorSettings
from config.settings import TOKEN_VARIABLE
from config.words import number
from executor.host.session import HostSession
from executor.host.signals import STRAY_SIGNALS, SignalRelay, Strays
from executor.host.signals import strays as stray_signals
from executor.logs import log_event
from executor.mesos.agentroute import AgentRoute, agent_route, ssl_mismatches
from executor.mesos.driver import ExecutorDriver
from executor.mesos.executor import StokerExecutor
from executor.mesos.reconnect import Ending
from executor.mesos.transport import AgentTransport, BadToken

logger = logging.getLogger("executor.mesos.executor")  # its lines read as the executor's

ACK_WAIT_SECS = 10.0  # bounded wait for the terminal update's acknowledgement
ACK_MARGIN_SECS = 0.2  # ... and stop waiting for ACKs this much before it ends
# No terminal: SIGHUP and SIGQUIT are the executor's strays too (the agent stops it with SIGTERM)
EXECUTOR_STRAYS = (*STRAY_SIGNALS, signal.SIGHUP, signal.SIGQUIT)

EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1
CLI_CANNOT_GO_ON = 2  # the CLI's: `stoker: error: cannot go on: ...`, raised to it
EXIT_NEVER_SUBSCRIBED = 3
EXIT_AGENT_LOST = 4
EXIT_UNACKNOWLEDGED = 5


@attrs.frozen(slots=True)
class TaskDone:
    """The task is over, or there will be none."""


@attrs.frozen(slots=True)
class Launched:
    """A LAUNCH's task was taken: `--launch-timeout` no longer applies (its timer goes)."""


@attrs.frozen(slots=True)
class Signalled:
    signum: int


Wakeup = TaskDone | Launched | Signalled


@attrs.frozen(slots=True)
class RunEnd:
    """What decides the exit status (module docstring)."""

    ending: Ending | None  # why the driver stopped; None while it still runs
    ever_subscribed: bool
    shutdown_received: bool  # the agent sent SHUTDOWN
    signalled: bool  # SIGTERM or SIGINT asked the executor to stop
    internal_error: bool  # the task thread failed
    acknowledged: bool  # every update was acknowledged at exit


def exit_status(end: RunEnd) -> int:
    """The exit status for how the run ended; the codes are in the module docstring."""
    if end.internal_error or end.ending is Ending.INTERNAL_ERROR:
        return EXIT_INTERNAL_ERROR
    if not end.ever_subscribed and not end.shutdown_received:
        return EXIT_NEVER_SUBSCRIBED
    if end.ending is Ending.AGENT_LOST:
        return EXIT_AGENT_LOST
    if end.shutdown_received or end.signalled or end.acknowledged:
        return EXIT_OK
    return EXIT_UNACKNOWLEDGED


def main(settings: ExecutorSettings, environ: MutableMapping[str, str]) -> int:
    """Runs the executor until its task is over; returns the exit status (module docstring)."""
    task_env = task_environment(environ, preserve_env=settings.preserve_env,
                                keep_agent_env=settings.pass_agent_env)
    wakeups: queue.SimpleQueue[Wakeup] = queue.SimpleQueue()
    executor = StokerExecutor(settings, task_env, on_done=lambda: wakeups.put(TaskDone()),
                              on_launched=lambda: wakeups.put(Launched()))
    route = _route(settings, environ)
    driver = _driver(executor, settings, route)
    # The relay's thread only posts; main acts (`executor.host.signals`: a signal may land
    # on any thread, and main is blocked in the queue until something is posted).

    strays = Strays("stoker executor")

    def on_signal(received: int) -> None:  # a stop, like SHUTDOWN: ACKs only within its grace
        if received in EXECUTOR_STRAYS:
            strays.ignored(received)
            return
        driver.cut_ack_wait(settings.shutdown_grace_secs - ACK_MARGIN_SECS)
        wakeups.put(Signalled(received))

    relay = SignalRelay((signal.SIGTERM, signal.SIGINT, *stray_signals(EXECUTOR_STRAYS)), on_signal)
    session = HostSession.open(settings.sandbox, on_operator_kill=executor.operator_kill)  # held already
    try:
        return _run(settings, route, executor, driver, wakeups)
    finally:
        session.close()
        # The executor exits after: its last lines are written with the relay closed, where
        # a stray (a task's `kill -USR1 $PPID`, a HUP) at its default would end it by signal,
        # and a stop (SIGTERM, SIGINT: an agent destroying its container as its last update
        # is acknowledged) would replace its exit status (3, `never subscribed`: the entry
        # point's while it loaded; 130) with nothing left to stop.
        relay.close(ignoring=(*EXECUTOR_STRAYS, signal.SIGTERM, signal.SIGINT))


def _run(settings: ExecutorSettings, route: AgentRoute, executor: StokerExecutor, driver: ExecutorDriver,
         wakeups: queue.SimpleQueue[Wakeup]) -> int:
    log_event(logger, logging.INFO, "executor_start", executor_id=settings.executor_id,
              framework_id=settings.framework_id, agent=settings.agent_endpoint, agent_via=route.describe(),
              sandbox=settings.sandbox, checkpoint=settings.checkpoint, version=package.version())
    _log_image_flags(settings)
    driver.start()
    # The driver calls shutdown() when it gives up on the agent, so TaskDone always comes.
    signalled = _wait_for_task(wakeups, executor, driver, settings.launch_timeout_secs)
    budget = _ack_budget(executor, settings)  # after SHUTDOWN, a signal: not through an outage
    acked = driver.wait_for_acknowledgements(budget, through_outage=executor.shutdown_at is None)
    unacknowledged, dropped = driver.owed()
    acked = acked and dropped == 0  # an update refused for good never reached the agent
    end = RunEnd(ending=driver.ending, ever_subscribed=driver.ever_subscribed,
                 shutdown_received=driver.shutdown_received, signalled=signalled,
                 internal_error=executor.internal_error, acknowledged=acked)
    status = CLI_CANNOT_GO_ON if executor.cannot_go_on is not None else exit_status(end)
    log_event(logger, logging.INFO if status == EXIT_OK else logging.ERROR, "executor_exit",
              status=status, acknowledged=acked, unacknowledged=unacknowledged, dropped=dropped,
              driver=end.ending.name if end.ending else "running")
    driver.stop()
    if executor.cannot_go_on is not None:  # the entry point's one line, exit 2 (`_handled`)
        raise executor.cannot_go_on
    return status


def _route(settings: ExecutorSettings, environ: Mapping[str, str]) -> AgentRoute:
    """How to reach the agent; a MESOS_AGENT_ENDPOINT, MESOS_DOMAIN_SOCKET or LIBPROCESS_SSL_*
    it cannot use: a settings error (exit 2), the variable named. A flag its SSL_ and
    LIBPROCESS_SSL_ variables set to two values is one WARNING line each, as libprocess logs
    it: both names, never a value, and the LIBPROCESS_SSL_ one used."""
    for ignored, used in ssl_mismatches(environ):
        log_event(logger, logging.WARNING, "ssl_variables_mismatched", ignored=ignored, used=used,
                  reason=f"{ignored} and {used} have different values; libprocess uses {used}'s")
    try:
        return agent_route(settings.agent_endpoint, environ, os.getcwd())
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _driver(executor: StokerExecutor, settings: ExecutorSettings, route: AgentRoute) -> ExecutorDriver:
    """The driver; a token, or a TLS file (certificate, key, CA) it cannot use: a settings
    error (exit 2)."""
    try:
        transport = AgentTransport(route, settings.auth_token)
    except BadToken as exc:
        raise SettingsError(f"{TOKEN_VARIABLE}: {exc}") from None
    except ValueError as exc:  # agenttls.client_context's: the variable and its file
        raise SettingsError(str(exc)) from None
    return ExecutorDriver(executor, settings, transport=transport)


def _log_image_flags(settings: ExecutorSettings) -> None:
    """Thermos' filesystem-image flags, which only such a task uses (docs/aurora.md §13)."""
    log_event(logger, logging.DEBUG, "image_flags", mesos_containerizer_path=settings.mesos_containerizer_path,
              no_create_user=settings.no_create_user, sandbox_mount_point=settings.sandbox_mount_point,
              reason="used only by a task whose container is a Mesos filesystem image")


def _wait_for_task(wakeups: queue.SimpleQueue[Wakeup], executor: StokerExecutor,
                   driver: ExecutorDriver, launch_timeout_secs: float) -> bool:
    """Blocks until the task is over; a signal meanwhile is treated as SHUTDOWN. True when
    a signal came. With no LAUNCH `launch_timeout_secs` after the start, the executor exits,
    as Thermos' does ("Executor timing out."); 0: it waits for ever. Once a task is taken
    (`Launched`) the timer goes: an executor whose task idles never wakes for it."""
    signalled = False
    launch_by = time.monotonic() + launch_timeout_secs if launch_timeout_secs > 0 else None
    while True:
        try:
            wakeup = wakeups.get(timeout=None if launch_by is None else max(0.0, launch_by - time.monotonic()))
        except queue.Empty:
            launch_by = None
            # The driver's lock orders the decision against the LAUNCHes it reads: one it
            # read first wins (the task runs); one it reads after still gets its TASK_FAILED
            # acknowledged before the exit (`ExecutorDriver.close_launches`).
            if driver.close_launches() and executor.launch_timed_out():
                log_event(logger, logging.WARNING, "launch_timeout",
                          reason=f"no task was launched within {number(launch_timeout_secs)} s "
                                 "(--launch-timeout): exiting, as Thermos' executor does")
                return signalled
            continue
        match wakeup:
            case TaskDone():
                return signalled
            case Launched():
                launch_by = None
            case Signalled(signum=signum):
                signalled = True
                log_event(logger, logging.WARNING, "signal", signal=signal.Signals(signum).name,
                          reason="treated as SHUTDOWN")
                executor.shutdown(driver, cause=f"{signal.Signals(signum).name}, treated as SHUTDOWN")
            case _:
                assert_never(wakeup)


def _ack_budget(executor: StokerExecutor, settings: ExecutorSettings) -> float:
    if executor.shutdown_at is None:
        return ACK_WAIT_SECS
    left = settings.shutdown_grace_secs - (time.monotonic() - executor.shutdown_at) - ACK_MARGIN_SECS
    return max(0.0, min(ACK_WAIT_SECS, left))
