"""The executor driver: pymesos' callback interface on top of the sans-I/O protocol.

This module owns the threads that talk to the agent and the connection state machine
(docs/mesos.md §15). It never decides anything about tasks: the callbacks do.

Threads (daemons; `stop()` ends them):
  - stream: SUBSCRIBE, read the event stream, feed the protocol (ACKs are booked here, even
    while a callback runs), post callbacks; reconnect or give up.
  - sender: POSTs UPDATE and MESSAGE calls in order, retrying transient failures.
  - dispatch: runs the callbacks one at a time; each is guarded, so an exception in one is
    logged and never kills the driver.

Connection states:

    start ──► SUBSCRIBING ──200+SUBSCRIBED──► SUBSCRIBED ──EOF/error──► DISCONNECTED
                ▲    │ 4xx: error + shutdown, stop                        │
                │    │ 503/404/refused                                    │ checkpoint off:
                │    ▼                                                    │   shutdown, stop
                └── wait uniform [0, backoff max] ◄── checkpoint on ──────┘
                     (recovery timer: started once per outage; when it expires: shutdown)

After a SHUTDOWN event, ACKs are still processed; an EOF then ends the driver quietly.
Status updates are recorded as unacknowledged before they are sent and stay buffered until
ACKNOWLEDGED; every SUBSCRIBE carries them. The bearer token is never logged.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from executor.events import TaskState
from executor.mesos.protocol import (
    Acknowledged,
    Error,
    Event,
    ExecutorProtocol,
    Heartbeat,
    Kill,
    Launch,
    LaunchGroup,
    Message,
    PendingUpdate,
    ProtocolError,
    Shutdown,
    Subscribed,
    UnknownEvent,
    mesos_state_name,
)
from executor.mesos.transport import AgentStream, AgentTransport, CallResult, Outcome, StreamBroken

logger = logging.getLogger(__name__)

START_RETRY_SECS = 5.0  # without checkpointing: how long an unreachable agent is retried at start
MESSAGE_ATTEMPTS = 5  # framework messages are not guaranteed; give up after this many tries
CALL_RETRY_CAP_SECS = 1.0  # transient call failures are retried at least this often


@attrs.frozen(slots=True)
class _SessionEnd:
    """How one SUBSCRIBE attempt ended; `fatal`: no reconnect."""

    reason: str
    subscribed: bool = False
    fatal: bool = False


class ExecutorDriver:
    """Subscribes to the agent and runs `callbacks` (pymesos names) on one dispatch thread.

    `settings` needs: agent_endpoint, framework_id, executor_id, checkpoint,
    recovery_timeout_secs, subscription_backoff_max_secs, auth_token.
    """

    def __init__(
        self,
        callbacks: Any,
        settings: Any,
        *,
        transport: AgentTransport | None = None,
        rng: random.Random | None = None,
        uuid_source: Callable[[], bytes] | None = None,
    ) -> None:
        self._callbacks = callbacks
        self._settings = settings
        self._transport = transport or AgentTransport(settings.agent_endpoint, settings.auth_token)
        self._rng = rng or random.Random()
        self._protocol = ExecutorProtocol(settings.framework_id, settings.executor_id,
                                          uuid_source)
        self._cond = threading.Condition()  # guards the protocol and the fields below
        self._connected = False
        self._stream: AgentStream | None = None
        self._carried: set[bytes] = set()  # uuids the latest accepted SUBSCRIBE carried
        self._stream_done = False  # the stream thread ended: no more events, ever
        self._unsent = 0  # updates queued for the sender and not yet done with
        self._shutdown_posted = False
        self._shutdown_received = False
        self._ever_registered = False  # stream thread only
        self._stop = threading.Event()
        self._outbox: queue.Queue = queue.Queue()
        self._dispatch: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._who = f"executor={settings.executor_id}"

    # ---- public API ----

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the driver was already started")
        for name, target in (("mesos-stream", self._run_stream),
                             ("mesos-sender", self._run_sender),
                             ("mesos-dispatch", self._run_dispatch)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Ends every thread soon; callable from any thread, callbacks included."""
        self._stop.set()
        with self._cond:
            stream = self._stream
            self._cond.notify_all()
        if stream is not None:
            stream.abort()
        self._outbox.put(None)
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
    ) -> bytes:
        """Records the update as unacknowledged and queues it; returns its uuid bytes."""
        with self._cond:
            pending = self._protocol.update(task_id, state, message, healthy, reason,
                                            now_wall=time.time())
            self._unsent += 1
        logger.debug("status_update_queued %s task=%s state=%s uuid=%s healthy=%s reason=%s "
                    "message=%r", self._who, task_id, mesos_state_name(state),
                    _uuid_text(pending.uuid), healthy, reason, message)
        self._outbox.put(pending)
        return pending.uuid

    def send_framework_message(self, data: bytes) -> None:
        self._outbox.put(bytes(data))

    def wait_for_acknowledgements(self, timeout_secs: float) -> bool:
        """Blocks until every update is acknowledged (True), the timeout passes, or no
        acknowledgement can come any more: the stream ended for good and the sender is done
        (False)."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._protocol.all_acknowledged or self._stop.is_set() or
                (self._stream_done and self._unsent == 0),
                timeout_secs,
            )
            return self._protocol.all_acknowledged

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def unacknowledged_count(self) -> int:
        with self._cond:
            return len(self._protocol.unacknowledged_updates())

    # ---- the stream thread ----

    def _run_stream(self) -> None:
        outage_at = time.monotonic()  # an unreachable agent at start counts as an outage
        ever_subscribed = False
        attempt = 0
        try:
            while not self._stop.is_set():
                attempt += 1
                limit = self._outage_limit_secs()
                remaining = limit - (time.monotonic() - outage_at)
                end = self._session(attempt, connect_timeout_secs=min(5.0, max(0.1, remaining)))
                if end.fatal or self._stop.is_set():
                    return
                if end.subscribed:
                    ever_subscribed, attempt = True, 0
                    outage_at = time.monotonic()  # a new outage starts at this disconnect
                delay = self._retry_delay(end, ever_subscribed, time.monotonic() - outage_at)
                if delay is None:
                    return
                logger.info("mesos_retry %s in_ms=%d next_attempt=%d outage_secs=%.1f "
                            "reason=%r", self._who, round(delay * 1000), attempt + 1,
                            time.monotonic() - outage_at, end.reason)
                if self._stop.wait(delay):
                    return
        except Exception as e:  # a bug: say so, then behave like a lost agent
            logger.error("mesos_stream_thread_failed %s error=%s: %s", self._who,
                         type(e).__name__, e, exc_info=True)
            self._post_shutdown()
        finally:
            with self._cond:
                self._connected = False
                self._stream_done = True
                self._cond.notify_all()

    def _outage_limit_secs(self) -> float:
        if self._settings.checkpoint:
            return self._settings.recovery_timeout_secs
        return START_RETRY_SECS

    def _retry_delay(self, end: _SessionEnd, ever_subscribed: bool,
                     outage_secs: float) -> float | None:
        """Seconds to wait before the next SUBSCRIBE, or None to stop (after a shutdown)."""
        if self._shutdown_received:
            logger.info("mesos_stream_ended %s after SHUTDOWN; not resubscribing reason=%r",
                        self._who, end.reason)
            return None
        if not self._settings.checkpoint and ever_subscribed:
            self._give_up("checkpointing is off (MESOS_CHECKPOINT is not \"1\"), so the "
                          "executor shuts down at the first disconnect")
            return None
        limit = self._outage_limit_secs()
        if outage_secs >= limit:
            what = "MESOS_RECOVERY_TIMEOUT" if self._settings.checkpoint else \
                "the start-up retry limit"
            self._give_up(f"the agent could not be reached for {outage_secs:.1f}s, past {what} "
                          f"of {limit:g}s; last error: {end.reason}")
            return None
        # uniform in [0, max] for every retry: the agent's re-registration window is that max
        backoff = self._rng.uniform(0.0, self._settings.subscription_backoff_max_secs)
        return min(backoff, limit - outage_secs)

    def _session(self, attempt: int, connect_timeout_secs: float) -> _SessionEnd:
        """One SUBSCRIBE and, when accepted, its event stream until it ends."""
        with self._cond:
            self._protocol.new_stream()
            body = self._protocol.subscribe_body()
            carried = {u.uuid for u in self._protocol.unacknowledged_updates()}
            tasks = len(self._protocol.unacknowledged_tasks())
        logger.info("mesos_subscribing %s url=%s attempt=%d unacked_updates=%d unacked_tasks=%d",
                    self._who, self._transport.url, attempt, len(carried), tasks)
        result, stream = self._transport.subscribe(body, connect_timeout_secs)
        if result.outcome is Outcome.REJECTED:
            text = f"the agent rejected SUBSCRIBE: {result.describe()}"
            logger.error("mesos_subscribe_rejected %s status=%s body=%r", self._who,
                         result.status, result.detail)
            self._post("error", text)
            self._post_shutdown()
            return _SessionEnd(text, fatal=True)
        if stream is None:
            return _SessionEnd(f"SUBSCRIBE failed: {result.describe()}")
        with self._cond:
            self._stream, self._carried = stream, carried
        if self._stop.is_set():  # stop() ran before the stream was published
            stream.abort()
        reason, subscribed = self._read_stream(stream)
        if subscribed and not self._stop.is_set():
            logger.warning("mesos_disconnected %s reason=%r", self._who, reason)
            self._post("disconnected")
        return _SessionEnd(reason, subscribed=subscribed)

    def _read_stream(self, stream: AgentStream) -> tuple[str, bool]:
        """Feeds the protocol until the stream ends; (why it ended, SUBSCRIBED seen).

        Only one stream is ever open (the next SUBSCRIBE is sent after this one ended), so
        an EOF here is never that of a stale, replaced stream.
        """
        subscribed = False
        try:
            for chunk in stream.chunks():
                with self._cond:
                    events = self._protocol.feed(chunk)
                    self._cond.notify_all()  # ACKs may have been booked
                for event in events:
                    subscribed = self._on_event(event) or subscribed
            reason = "the agent closed the event stream (EOF)"
        except StreamBroken as e:
            reason = f"the event stream broke ({e})"
        except ProtocolError as e:
            logger.error("mesos_protocol_error %s error=ProtocolError: %s", self._who, e)
            reason = f"the agent sent a malformed event stream ({e})"
        finally:
            stream.close()
            with self._cond:
                self._stream = None
                self._connected = False
                self._cond.notify_all()
        return reason, subscribed

    def _on_event(self, event: Event) -> bool:
        """Turns one event into callbacks; True when it was SUBSCRIBED."""
        if isinstance(event, Subscribed):
            with self._cond:
                self._connected = True
                agent_id = self._protocol.agent_id
                self._cond.notify_all()
            logger.info("mesos_subscribed %s agent_id=%s reregistered=%s container=%s",
                        self._who, agent_id, self._ever_registered, event.container_id)
            if self._ever_registered:
                self._post("reregistered", event.agent_info)
            else:
                self._ever_registered = True
                self._post("registered", event.executor_info, event.framework_info,
                           event.agent_info)
            return True
        if isinstance(event, Launch):
            self._post("launchTask", event.task_info)
        elif isinstance(event, LaunchGroup):
            self._post("launchTaskGroup", {"tasks": list(event.task_infos)})
        elif isinstance(event, Kill):
            self._post("killTask", event.task_id, event.grace_secs)
        elif isinstance(event, Message):
            self._post("frameworkMessage", event.data)
        elif isinstance(event, Shutdown):
            logger.info("mesos_shutdown_received %s", self._who)
            self._shutdown_received = True
            self._post_shutdown()
        elif isinstance(event, Error):
            self._post("error", event.message)
        elif isinstance(event, Acknowledged):
            logger.debug("mesos_acknowledged %s task=%s uuid=%s", self._who, event.task_id,
                         _uuid_text(event.uuid))
        elif isinstance(event, Heartbeat):
            logger.debug("mesos_heartbeat %s", self._who)
        elif isinstance(event, UnknownEvent):
            logger.info("mesos_event_ignored %s type=%s reason=\"unknown event type\"",
                        self._who, event.type)
        return False

    def _give_up(self, reason: str) -> None:
        logger.error("mesos_giving_up %s reason=%r", self._who, reason)
        self._post_shutdown()

    def _post_shutdown(self) -> None:
        with self._cond:
            if self._shutdown_posted:
                return
            self._shutdown_posted = True
        self._post("shutdown")

    def _post(self, callback: str, *args: Any) -> None:
        self._dispatch.put((callback, args))

    # ---- the dispatch thread ----

    def _run_dispatch(self) -> None:
        while True:
            item = self._dispatch.get()
            if item is None:
                return
            name, args = item
            method = getattr(self._callbacks, name, None)
            if method is None:
                continue
            try:
                method(self, *args)
            except Exception as e:  # a callback's bug must not kill the driver
                logger.error("mesos_callback_failed %s callback=%s error=%s: %s", self._who,
                             name, type(e).__name__, e, exc_info=True)

    # ---- the sender thread ----

    def _run_sender(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None or self._stop.is_set():
                return
            try:
                if isinstance(item, PendingUpdate):
                    self._send_update(item)
                else:
                    self._send_message(item)
            except Exception as e:  # a bug; the update stays buffered for the next SUBSCRIBE
                logger.error("mesos_sender_failed %s error=%s: %s", self._who,
                             type(e).__name__, e, exc_info=True)
            finally:
                if isinstance(item, PendingUpdate):
                    with self._cond:
                        self._unsent -= 1
                        self._cond.notify_all()

    def _wait_connected(self, still_wanted: Callable[[], bool]) -> bool:
        """Waits (lock held) until a call may be POSTed; False when the item is no longer
        wanted or no connection will ever come.

        After SHUTDOWN the agent may close the stream at once, yet it still takes calls from
        a subscribed executor, so the terminal updates are POSTed without a stream.
        """
        while True:
            if self._stop.is_set() or not still_wanted():
                return False
            if self._connected:
                return True
            if self._stream_done:
                return self._shutdown_received and self._protocol.subscription_count > 0
            self._cond.wait()

    def _send_update(self, pending: PendingUpdate) -> None:
        def still_wanted() -> bool:  # not yet acknowledged, nor carried by a SUBSCRIBE
            return self._protocol.is_pending(pending.uuid) and pending.uuid not in self._carried

        attempt = 0
        while True:
            with self._cond:
                if not self._wait_connected(still_wanted):
                    return
                body = self._protocol.update_body(pending)
            attempt += 1
            result = self._transport.post(body)
            what = (f"task={pending.task_id} state={mesos_state_name(pending.state)} "
                    f"uuid={_uuid_text(pending.uuid)}")
            if result.outcome is Outcome.ACCEPTED:
                logger.debug("status_update_sent %s %s attempt=%d", self._who, what, attempt)
                return
            if result.outcome is Outcome.REJECTED:
                self._rejected("UPDATE", what, result)
                with self._cond:
                    self._protocol.discard(pending.uuid)
                    self._cond.notify_all()
                return
            if not self._retry_wait("status_update_retry", what, attempt, result):
                return

    def _send_message(self, data: bytes) -> None:
        for attempt in range(1, MESSAGE_ATTEMPTS + 1):
            with self._cond:
                if not self._wait_connected(lambda: True):
                    break
                body = self._protocol.message_body(data)
            result = self._transport.post(body)
            what = f"bytes={len(data)}"
            if result.outcome is Outcome.ACCEPTED:
                return
            if result.outcome is Outcome.REJECTED:
                self._rejected("MESSAGE", what, result)
                return
            if attempt < MESSAGE_ATTEMPTS and not self._retry_wait(
                    "framework_message_retry", what, attempt, result):
                break
        logger.warning("framework_message_dropped %s bytes=%d reason=\"not accepted after "
                       "%d attempts or no connection\"", self._who, len(data), MESSAGE_ATTEMPTS)

    def _rejected(self, call: str, what: str, result: CallResult) -> None:
        logger.error("mesos_call_rejected %s call=%s %s status=%s body=%r", self._who, call,
                     what, result.status, result.detail)
        self._post("error", f"the agent rejected {call} ({what}): {result.describe()}")

    def _retry_wait(self, event: str, what: str, attempt: int, result: CallResult) -> bool:
        cap = min(CALL_RETRY_CAP_SECS, max(0.05, self._settings.subscription_backoff_max_secs))
        delay = self._rng.uniform(cap / 2, cap)
        logger.warning("%s %s %s attempt=%d in_ms=%d reason=%r", event, self._who, what,
                       attempt, round(delay * 1000), result.describe())
        return not self._stop.wait(delay)


def _uuid_text(raw: bytes) -> str:
    return raw.hex()  # as executor/mesos/executor.py logs it
