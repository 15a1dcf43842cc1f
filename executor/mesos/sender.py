"""The driver's sender thread: POSTs UPDATE and MESSAGE calls in order, over their own
connection (never the event stream's), retrying transient failures.

This module owns the outbox and what the driver's threads share (`Shared`, every field read
and written with its Condition held). It never decides what is owed: the session does
(`needs_post`: owed, and not carried by a SUBSCRIBE the agent answered). An update the agent
rejects for good (4xx) is dropped from the session and reported; one that fails transiently
(refused, 503, 404, 403 during a re-registration) is retried with the same uuid until it is
accepted, acknowledged, or carried by a SUBSCRIBE. The bearer token is never logged.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable
from typing import Any

from executor.logs import log_event
from executor.mesos.reconnect import Ending, call_retry_delay_secs
from executor.mesos.session import ExecutorProtocol, PendingUpdate, SessionState
from executor.mesos.transport import AgentTransport, CallResult, Outcome
from executor.mesos.wire import mesos_state_name, uuid_text

logger = logging.getLogger(__name__)

MESSAGE_ATTEMPTS = 5  # framework messages are not guaranteed; give up after this many tries


class Shared:
    """What the driver's three threads share; every field under `cond`."""

    def __init__(self, protocol: ExecutorProtocol) -> None:
        self.cond = threading.Condition()
        self.protocol = protocol
        self.stop = threading.Event()  # set by stop(): every thread ends soon
        self.ending: Ending | None = None  # set once, when the stream thread ends
        self.unsent = 0  # updates queued for the sender and not yet done with


class _Ready:
    """The outbox's item that opens the call connection ahead of the calls (`ready`)."""


_READY = _Ready()


class CallSender:
    """The outbox and the thread that empties it."""

    def __init__(self, shared: Shared, transport: AgentTransport, backoff_max_secs: float,
                 rng: random.Random, report_rejection: Callable[[str], None], who: str) -> None:
        self._shared = shared
        self._transport = transport
        self._backoff_max_secs = backoff_max_secs
        self._rng = rng
        self._report_rejection = report_rejection
        self._who = who
        self._outbox: queue.Queue[PendingUpdate | bytes | _Ready | None] = queue.Queue()

    def queue_update(self, pending: PendingUpdate) -> None:
        """Queues an update the session already recorded (the caller counted it unsent)."""
        self._outbox.put(pending)

    def queue_message(self, data: bytes) -> None:
        self._outbox.put(bytes(data))

    def ready(self) -> None:
        """Opens the call connection in this thread, ahead of the calls (a SUBSCRIBE was
        answered: the LAUNCH's TASK_STARTING is near), unless one is open."""
        self._outbox.put(_READY)

    def close(self) -> None:
        self._outbox.put(None)

    def run(self) -> None:
        shared = self._shared
        while True:
            item = self._outbox.get()
            if item is None or shared.stop.is_set():
                return
            try:
                if isinstance(item, PendingUpdate):
                    self._send_update(item)
                elif isinstance(item, _Ready):
                    self._transport.ready_calls()
                else:
                    self._send_message(item)
            except Exception as e:  # a bug; the update stays buffered for the next SUBSCRIBE
                log_event(logger, logging.ERROR, "mesos_sender_failed", executor_id=self._who,
                          error=f"{type(e).__name__}: {e}", exc_info=True)
            finally:
                if isinstance(item, PendingUpdate):
                    with shared.cond:
                        shared.unsent -= 1
                        shared.cond.notify_all()

    def _wait_connected(self, still_wanted: Callable[[], bool]) -> bool:
        """Waits (lock held) until a call may be POSTed; False when the item is no longer
        wanted or no connection will ever come.

        After SHUTDOWN the agent may close the stream at once, yet it still takes calls from
        a subscribed executor, so the terminal updates are POSTed without a stream.
        """
        shared, protocol = self._shared, self._shared.protocol
        while True:
            if shared.stop.is_set() or not still_wanted():
                return False
            if protocol.state is SessionState.SUBSCRIBED:
                return True
            if shared.ending is not None:
                return protocol.shutdown_received and protocol.subscription_count > 0
            shared.cond.wait()

    def _send_update(self, pending: PendingUpdate) -> None:
        shared, protocol = self._shared, self._shared.protocol
        attempt = 0
        while True:
            with shared.cond:
                if not self._wait_connected(lambda: protocol.needs_post(pending.uuid)):
                    return
                body = protocol.update_body(pending)
            attempt += 1
            result = self._transport.post(body)
            what: dict[str, Any] = {"task_id": pending.task_id, "uuid": uuid_text(pending.uuid),
                                    "state": mesos_state_name(pending.state)}
            if result.outcome is Outcome.ACCEPTED:
                log_event(logger, logging.DEBUG, "status_update_sent", executor_id=self._who, **what,
                          attempt=attempt)
                return
            if result.outcome is Outcome.REJECTED:
                self._rejected("UPDATE", what, result)
                with shared.cond:
                    protocol.discard(pending.uuid)
                    shared.cond.notify_all()
                return
            if not self._retry_wait("status_update_retry", what, attempt, result):
                return

    def _send_message(self, data: bytes) -> None:
        shared = self._shared
        for attempt in range(1, MESSAGE_ATTEMPTS + 1):
            with shared.cond:
                if not self._wait_connected(lambda: True):
                    break
                body = shared.protocol.message_body(data)
            result = self._transport.post(body)
            what = {"bytes": len(data)}
            if result.outcome is Outcome.ACCEPTED:
                return
            if result.outcome is Outcome.REJECTED:
                self._rejected("MESSAGE", what, result)
                return
            if attempt < MESSAGE_ATTEMPTS and not self._retry_wait(
                    "framework_message_retry", what, attempt, result):
                break
        log_event(logger, logging.WARNING, "framework_message_dropped", executor_id=self._who,
                  bytes=len(data), reason=f"not accepted after {MESSAGE_ATTEMPTS} attempts or no connection")

    def _rejected(self, call: str, what: dict[str, Any], result: CallResult) -> None:
        log_event(logger, logging.ERROR, "mesos_call_rejected", executor_id=self._who, call=call,
                  **what, status=result.status, body=result.detail)
        said = " ".join(f"{key}={value}" for key, value in what.items())
        self._report_rejection(f"the agent rejected {call} ({said}): {result.describe()}")

    def _retry_wait(self, event: str, what: dict[str, Any], attempt: int,
                    result: CallResult) -> bool:
        delay = call_retry_delay_secs(self._backoff_max_secs, self._rng.random())
        log_event(logger, logging.WARNING, event, executor_id=self._who, **what, attempt=attempt,
                  in_ms=round(delay * 1000), reason=result.describe())
        return not self._shared.stop.wait(delay)
