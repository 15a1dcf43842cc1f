"""The executor driver: pymesos' callback interface over the sans-I/O session.

This module owns the threads that talk to the agent and nothing that decides: the session
(`session.py`) holds the session state and what is owed to the agent (its Rule 1), the policy
(`reconnect.py`, docs/mesos.md §15) says when to resubscribe or give up, the callbacks decide
about tasks. The bearer token is never logged.

Threads (daemons; `stop()` ends them), sharing one Condition that guards the session:
  - stream: SUBSCRIBE, read the event stream, feed the session (ACKs are booked here, even
    while a callback runs), post callbacks; then ask the policy and wait, or give up.
  - sender: POSTs UPDATE and MESSAGE calls in order, retrying transient failures.
  - dispatch: runs the callbacks one at a time; each is guarded, so an exception in one is
    logged and never kills the driver.

Connection states (the session's; ERROR, a malformed stream, ends like an EOF):

    start ──► SUBSCRIBING ──200+SUBSCRIBED──► SUBSCRIBED ──EOF/error──► DISCONNECTED
                ▲    │ 4xx: error + shutdown, stop                        │
                │    │ 503/404/refused                                    │ checkpoint off:
                │    ▼                                                    │   shutdown, stop
                └── wait uniform [0, backoff max] ◄── checkpoint on ──────┘
                     (recovery timer: started once per outage; when it expires: shutdown)

After a SHUTDOWN event, ACKs are still processed, an EOF ends the driver quietly (no WARNING,
no `disconnected`), terminal updates are still POSTed (the agent takes a subscribed executor's calls).
"""
from __future__ import annotations

import functools
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, assert_never

import attrs

from config.executorsettings import ExecutorSettings
from executor.events import TaskState
from executor.logs import log_event, start_thread
from executor.mesos.callbacks import ExecutorCallbacks, callback_for
from executor.mesos.errors import RemoteProtocolError
from executor.mesos.reconnect import Ending, GiveUp, ReconnectPolicy, Retry, SessionEnd
from executor.mesos.recordio import MAX_RECORD_BYTES
from executor.mesos.sender import CallSender, Shared
from executor.mesos.session import BrokenStream, ExecutorProtocol, SessionState
from executor.mesos.transport import (
    CONNECT_TIMEOUT_SECS,
    AgentStream,
    AgentTransport,
    CallResult,
    Outcome,
    StreamBroken,
)
from executor.mesos.wire import (
    Acknowledged,
    Error,
    Event,
    Heartbeat,
    Kill,
    Oversized,
    Shutdown,
    Subscribed,
    UnknownEvent,
    Unreadable,
    mesos_state_name,
    uuid_text,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")


@attrs.frozen(slots=True)
class _Callback:
    name: str  # the callback's pymesos name, for the log
    call: Callable[[], None]


class ExecutorDriver:
    """Subscribes to the agent and runs `callbacks` on one dispatch thread."""

    def __init__(
        self,
        callbacks: ExecutorCallbacks,
        settings: ExecutorSettings,
        *,
        transport: AgentTransport | None = None,
        rng: random.Random | None = None,
        uuid_source: Callable[[], bytes] | None = None,
    ) -> None:
        self._callbacks = callbacks
        self._settings = settings
        self._transport = transport or AgentTransport(settings.agent_endpoint, settings.auth_token)
        self._rng = rng or random.Random()
        self._shared = Shared(ExecutorProtocol(settings.framework_id, settings.executor_id,
                                               uuid_source))
        self._protocol = self._shared.protocol  # these three: shorthands of the shared fields
        self._cond = self._shared.cond
        self._stop = self._shared.stop
        self._stream: AgentStream | None = None  # under _cond
        self._subscribe_said = False  # the first SUBSCRIBE was logged (at INFO)
        self._who = settings.executor_id  # every line's executor_id=
        self._sender = CallSender(self._shared, self._transport,
                                  settings.subscription_backoff_max_secs, self._rng,
                                  lambda text: self._post(callbacks.error, text), self._who)
        self._dispatch: queue.Queue[_Callback | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._ack_wait_cut_at: float | None = None  # under _cond; see cut_ack_wait()

    # ---- public API ----

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the driver was already started")
        for name, target in (("mesos-stream", self._run_stream),
                             ("mesos-sender", self._sender.run),
                             ("mesos-dispatch", self._run_dispatch)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            start_thread(thread)

    def stop(self) -> None:
        """Ends every thread soon; callable from any thread, callbacks included."""
        self._stop.set()
        with self._cond:
            stream = self._stream
            self._cond.notify_all()
        if stream is not None:
            stream.abort()
        self._sender.close()
        self._dispatch.put(None)

    def join(self, timeout_secs: float) -> bool:
        """Waits for the threads (not the calling one); True when all have ended."""
        deadline = time.monotonic() + timeout_secs
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive() and t is not current]
        if not alive:
            self._transport.close()
        return not alive

    def send_status_update(
        self,
        task_id: str,
        state: TaskState,
        message: str = "",
        healthy: bool | None = None,
        reason: str | None = None,
        task: str | None = None,
    ) -> bytes:
        """Records the update as owed and queues it, with its one `status_update` line
        (`task`: the task's label, for it); returns its uuid bytes."""
        with self._cond:
            pending = self._protocol.update(task_id, state, message, healthy, reason, now_wall=time.time())
            self._shared.unsent += 1
        log_event(logger, logging.INFO, "status_update", task=task, task_id=task_id,
                  state=mesos_state_name(state), healthy=healthy, mesos_reason=reason,
                  uuid=uuid_text(pending.uuid), message=message)
        self._sender.queue_update(pending)
        return pending.uuid

    def send_framework_message(self, data: bytes) -> None:
        self._sender.queue_message(data)

    def wait_for_acknowledgements(self, timeout_secs: float, *, through_outage: bool = True) -> bool:
        """Blocks until every update is acknowledged (True), `timeout_secs` pass, or no
        acknowledgement can come any more: the stream ended for good and the sender is done
        (False).

        `through_outage`: the timeout counts only while subscribed. While the driver
        reconnects, the resubscription is the only way the owed updates reach the agent, so
        the wait goes on until it is answered (the timeout then starts again: the carried
        updates' ACKs come right after SUBSCRIBED) or the driver gives up, which
        MESOS_RECOVERY_TIMEOUT bounds (docs/mesos.md §12)."""
        shared, protocol = self._shared, self._protocol
        with self._cond:
            deadline = time.monotonic() + timeout_secs
            registrations = protocol.subscription_count
            while not (protocol.all_acknowledged or self._stop.is_set() or
                       (shared.ending is not None and shared.unsent == 0)):
                now, cut_at = time.monotonic(), self._ack_wait_cut_at
                if protocol.subscription_count != registrations:
                    registrations, deadline = protocol.subscription_count, now + timeout_secs
                ends_at = deadline if cut_at is None else min(deadline, cut_at)
                if now < ends_at:
                    self._cond.wait(ends_at - now)
                elif (through_outage and cut_at is None and shared.ending is None
                      and protocol.state is not SessionState.SUBSCRIBED):
                    self._cond.wait()  # notified at SUBSCRIBED and when the driver ends
                else:
                    break
            return protocol.all_acknowledged

    def close_launches(self) -> bool:
        """The launch timeout ran out: True when no LAUNCH came first (one that comes later
        is owed its TASK_FAILED, awaited as an ACK is); False: the timeout is abandoned."""
        with self._cond:
            return self._protocol.close_launches()

    def cut_ack_wait(self, within_secs: float) -> None:
        """A stop signal came: `wait_for_acknowledgements` ends `within_secs` from now at the
        latest, and no longer waits through an outage; callable from any thread."""
        with self._cond:
            cut_at = time.monotonic() + max(0.0, within_secs)
            if self._ack_wait_cut_at is None or cut_at < self._ack_wait_cut_at:
                self._ack_wait_cut_at = cut_at
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._protocol.state is SessionState.SUBSCRIBED

    @property
    def ever_subscribed(self) -> bool:
        with self._cond:
            return self._protocol.subscription_count > 0

    @property
    def shutdown_received(self) -> bool:
        with self._cond:
            return self._protocol.shutdown_received

    @property
    def ending(self) -> Ending | None:
        """Why the stream thread ended; None while it runs."""
        with self._cond:
            return self._shared.ending

    def owed(self) -> tuple[int, int]:
        """(updates still unacknowledged, updates the agent refused for good: never delivered)."""
        with self._cond:
            return len(self._protocol.unacknowledged_updates()), self._protocol.dropped_count

    # ---- the stream thread ----

    def _run_stream(self) -> None:
        policy = ReconnectPolicy(
            checkpoint=self._settings.checkpoint,
            recovery_timeout_secs=self._settings.recovery_timeout_secs,
            backoff_max_secs=self._settings.subscription_backoff_max_secs,
            started_at=time.monotonic())
        ending = Ending.INTERNAL_ERROR
        try:
            ending = self._subscribe_until_done(policy)
        except Exception as e:  # a bug: say so, then behave like a lost agent
            log_event(logger, logging.ERROR, "mesos_stream_thread_failed", executor_id=self._who,
                      error=f"{type(e).__name__}: {e}", exc_info=True)
        finally:
            with self._cond:
                self._shared.ending = ending
                shutdown_posted = self._protocol.shutdown_received
                self._cond.notify_all()
        if ending is not Ending.STOPPED and not shutdown_posted:
            self._post(self._callbacks.shutdown)

    def _subscribe_until_done(self, policy: ReconnectPolicy) -> Ending:
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            now = time.monotonic()  # the outage's time left bounds the connect and the answer
            end = self._session(attempt, policy.connect_timeout_secs(now, CONNECT_TIMEOUT_SECS),
                                policy.connect_timeout_secs(now, math.inf))
            if self._stop.is_set():
                break
            if end.subscribed:
                attempt = 0
            decision = policy.on_session_end(end, time.monotonic(), self._rng.random())
            match decision:
                case GiveUp(ending=Ending.SHUTDOWN, reason=reason):
                    log_event(logger, logging.INFO, "mesos_stream_ended", executor_id=self._who,
                              reason=reason)
                    return decision.ending
                case GiveUp(ending=ending, reason=reason):
                    log_event(logger, logging.ERROR, "mesos_giving_up", executor_id=self._who, reason=reason)
                    return ending
                case Retry(delay_secs=delay, reason=reason):
                    log_event(logger, logging.INFO, "mesos_retry", executor_id=self._who,
                              in_ms=round(delay * 1000), next_attempt=attempt + 1,
                              outage_secs=round(policy.outage_secs(time.monotonic()), 1),
                              reason=reason)
                    if self._stop.wait(delay):
                        break
                case _:
                    assert_never(decision)
        return Ending.STOPPED

    def _session(self, attempt: int, connect_timeout_secs: float,
                 answer_timeout_secs: float) -> SessionEnd:
        """One SUBSCRIBE and, when accepted, its event stream until it ends."""
        with self._cond:
            body = self._protocol.subscribing()
            updates = len(self._protocol.unacknowledged_updates())
            tasks = len(self._protocol.unacknowledged_tasks())
        # INFO the first time: every later SUBSCRIBE follows its `mesos_retry` line, which says it
        level, self._subscribe_said = (logging.DEBUG if self._subscribe_said else logging.INFO), True
        log_event(logger, level, "mesos_subscribing", executor_id=self._who,
                  url=self._transport.url, attempt=attempt, unacked_updates=updates,
                  unacked_tasks=tasks)
        result, stream = self._transport.subscribe(body, connect_timeout_secs, answer_timeout_secs)
        if stream is None:
            with self._cond:
                self._protocol.stream_ended()
                self._cond.notify_all()
            return self._refused(result)
        with self._cond:
            self._stream = stream
        if self._stop.is_set():  # stop() ran before the stream was published
            stream.abort()
        reason, subscribed, shutdown = self._read_stream(stream)
        if subscribed and not shutdown and not self._stop.is_set():
            log_event(logger, logging.WARNING, "mesos_disconnected", executor_id=self._who,
                      reason=reason)
            self._post(self._callbacks.disconnected)
        return SessionEnd(reason, subscribed=subscribed, shutdown=shutdown)

    def _refused(self, result: CallResult) -> SessionEnd:
        if result.outcome is not Outcome.REJECTED:
            return SessionEnd(f"SUBSCRIBE failed: {result.describe()}", no_room=result.no_room)
        text = f"the agent rejected SUBSCRIBE: {result.describe()}"  # `mesos_giving_up` says it
        self._post(self._callbacks.error, text)
        return SessionEnd(text, rejected=True)

    def _read_stream(self, stream: AgentStream) -> tuple[str, bool, bool]:
        """Feeds the session until the stream ends; (why it ended, SUBSCRIBED seen, SHUTDOWN received).

        Only one stream is ever open (the next SUBSCRIBE is sent after this one ended), so
        an EOF here is never that of a stale, replaced stream.
        """
        subscribed = settled = False
        try:
            for chunk in stream.chunks():
                events, registrations, fault = self._book(chunk)
                if events and not settled:  # the agent is alive: the stream may idle now
                    stream.settle()
                    settled = True
                for event in events:
                    self._on_event(event, registrations)
                    if isinstance(event, Subscribed):  # the call connection made beside the LAUNCH's handling
                        subscribed, registrations = True, registrations + 1
                        self._sender.ready()
                if fault is not None:
                    raise fault
            reason = "the agent closed the event stream (EOF)"
        except StreamBroken as e:
            reason = f"the event stream broke ({e})"
        except RemoteProtocolError as e:
            log_event(logger, logging.ERROR, "mesos_protocol_error", executor_id=self._who,
                      error=f"RemoteProtocolError: {e}{stream.odd_type}")
            reason = f"the agent sent a malformed event stream ({e}{stream.odd_type})"
        finally:
            stream.close()
            shutdown = self._stream_closed()
        return reason, subscribed, shutdown

    def _book(self, chunk: bytes) -> tuple[list[Event], int, BrokenStream | None]:
        """One chunk fed to the session under its lock (ACKs are booked here, even while a
        callback runs): the events it completed, how many SUBSCRIBED came before them, and
        the fault that cut it short (what came before the fault still counts)."""
        fault: BrokenStream | None = None
        with self._cond:
            registrations = self._protocol.subscription_count
            try:
                events = self._protocol.feed(chunk)
            except BrokenStream as e:
                events, fault = e.before, e
            self._cond.notify_all()  # SUBSCRIBED or ACKs may have been booked
        return events, registrations, fault

    def _stream_closed(self) -> bool:
        """The session told that its stream is gone; whether SHUTDOWN was received."""
        with self._cond:
            self._stream = None
            self._protocol.stream_ended()
            self._cond.notify_all()
            return self._protocol.shutdown_received

    def _on_event(self, event: Event, registrations: int) -> None:
        """Logs one event and posts the callback it becomes (`callbacks.callback_for`);
        `registrations`: SUBSCRIBED events before it."""
        self._log_received(event, registrations)
        target = callback_for(self._callbacks, event, first_subscription=registrations == 0)
        if target is not None:
            callback, args = target
            self._post(callback, *args)

    def _log_received(self, event: Event, registrations: int) -> None:
        """The driver's own line for the events it receives (most become callbacks, whose
        owner says them: these only where the driver has something to add)."""
        match event:
            case Subscribed():
                # DEBUG: the executor's `registered` / `reregistered` line says it at INFO
                log_event(logger, logging.DEBUG, "mesos_subscribed", executor_id=self._who,
                          agent_id=self._agent_id(), reregistered=registrations > 0,
                          container=event.container_id)
            case Shutdown():
                log_event(logger, logging.DEBUG, "mesos_shutdown_received",  # the executor's
                          executor_id=self._who)  # `shutdown` line says it, with the grace
            case Acknowledged(task_id=tid, uuid=raw):
                log_event(logger, logging.INFO, "status_update_acknowledged", executor_id=self._who,
                          task_id=tid, uuid=uuid_text(raw))
            case Heartbeat():
                log_event(logger, logging.DEBUG, "mesos_heartbeat", executor_id=self._who)
            case Error(message=text):
                log_event(logger, logging.ERROR, "mesos_error_event", executor_id=self._who, message=text)
            case Kill(task_id=tid, bad_grace=str() as bad):  # the executor's `kill` line follows
                log_event(logger, logging.WARNING, "mesos_kill_grace_ignored", executor_id=self._who,
                          task_id=tid, reason=f"{bad}; the task's own grace applies")
            case Unreadable(type=kind, reason=why):  # its framing was whole: the stream goes on
                log_event(logger, logging.ERROR, "mesos_event_skipped", executor_id=self._who, type=kind, reason=why)
            case UnknownEvent(type=kind):
                log_event(logger, logging.INFO, "mesos_event_ignored", executor_id=self._who,
                          type=kind, reason="unknown event type")
            case Oversized(type=kind, task_id=tid, size_bytes=size) if kind != "LAUNCH" or tid is None:
                log_event(logger, logging.ERROR, "mesos_event_skipped", executor_id=self._who, type=kind,
                          bytes=size, reason=f"larger than the limit of {MAX_RECORD_BYTES} bytes"
                          + ("; its task id is not in its first bytes: it cannot be answered"
                             if kind == "LAUNCH" else ""))
            case _:
                pass  # the callback's owner logs it

    def _agent_id(self) -> str | None:
        with self._cond:
            return self._protocol.agent_id

    def _post(self, callback: Callable[Concatenate[ExecutorDriver, P], None],
              *args: P.args, **kwargs: P.kwargs) -> None:
        name = getattr(callback, "__name__", repr(callback))
        self._dispatch.put(_Callback(name, functools.partial(callback, self, *args, **kwargs)))

    # ---- the dispatch thread ----

    def _run_dispatch(self) -> None:
        while True:
            item = self._dispatch.get()
            if item is None:
                return
            try:
                item.call()
            except Exception as e:  # a callback's bug must not kill the driver
                log_event(logger, logging.ERROR, "mesos_callback_failed", executor_id=self._who,
                          callback=item.name, error=f"{type(e).__name__}: {e}", exc_info=True)
