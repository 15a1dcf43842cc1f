"""Driving the executor: the events the simulated agent sends (LAUNCH, KILL, SHUTDOWN,
MESSAGE, HEARTBEAT) and its acknowledgements in each ACK mode."""
from __future__ import annotations

import uuid as uuid_mod
from collections.abc import Sequence
from typing import Any

from tests.support.agent_sim.records import _b64, _Task
from tests.support.agent_sim.transport import recordio


class _Driver:
    """AgentSimulator's events and ACKs (its state is set up by AgentSimulator.__init__)."""

    _event = staticmethod(recordio)

    def send_events(self, events: Sequence[dict]) -> None:
        """Queues events on the current stream as one batch (packed/fuzz chunk them together)."""
        records = [self._event(e) for e in events]
        with self._cond:
            self.events_sent.extend(events)
            if self._stream is None or not self._stream.open:
                self.lost_events.extend(records)
                return
            self._stream.send(records)

    def send_raw(self, data: bytes) -> None:
        """Writes bytes as one HTTP chunk, verbatim (garbage, partial records ...)."""
        with self._cond:
            if self._stream is not None:
                self._stream.send([data], raw=True)

    def launch(self, task_info: dict, deliver: bool = True) -> None:
        """LAUNCH now, or after the next SUBSCRIBED when none is open; `deliver=False` loses
        it, as a LAUNCH sent during a disconnection is lost."""
        tid = task_info["task_id"]["value"]
        with self._cond:
            online = self._stream is not None and self._stream.open
            self._tasks[tid] = _Task(task_info, delivered=deliver and online)
            if deliver and not online:
                self._undelivered.append(tid)
                return
        if deliver:
            self.send_events([{"type": "LAUNCH", "launch": {"task": task_info}}])

    def launch_many(self, task_infos: Sequence[dict]) -> None:
        """LAUNCHes several tasks in one batch (packed/fuzz chunking mixes their records)."""
        with self._cond:
            for info in task_infos:
                self._tasks[info["task_id"]["value"]] = _Task(info, delivered=True)
        self.send_events([{"type": "LAUNCH", "launch": {"task": info}} for info in task_infos])

    def launch_group(self, task_infos: Sequence[dict]) -> None:
        with self._cond:
            for info in task_infos:
                self._tasks.setdefault(info["task_id"]["value"], _Task(info, delivered=True))  # a known task keeps its updates
        self.send_events([{"type": "LAUNCH_GROUP",
                           "launch_group": {"task_group": {"tasks": list(task_infos)}}}])

    def kill(self, task_id: str, grace_secs: float | None = None) -> None:
        kill: dict[str, Any] = {"task_id": {"value": task_id}}
        if grace_secs is not None:
            kill["kill_policy"] = {"grace_period": {"nanoseconds": round(grace_secs * 1e9)}}
        self.send_events([{"type": "KILL", "kill": kill}])

    def shutdown(self, enforce_grace: bool = True) -> None:
        """SHUTDOWN; after the grace period a still-running executor is destroyed."""
        self.send_events([{"type": "SHUTDOWN"}])
        if enforce_grace and self._proc is not None:
            self._after(self._grace_secs, self._grace_expired)

    def _grace_expired(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.destroyed_after_grace = True
            self.destroy()

    def message(self, data: bytes) -> None:
        self.send_events([{"type": "MESSAGE", "message": {"data": _b64(data)}}])

    def heartbeat(self) -> None:
        self.send_events([{"type": "HEARTBEAT"}])

    def close_stream(self, graceful: bool = True) -> None:
        """Ends the current stream (terminating chunk, or cut) while still listening."""
        with self._cond:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close(graceful)

    def send_ack(self, task_id: str, uuid: bytes) -> None:
        self.acks_sent.append((task_id, uuid))
        self.send_events([{"type": "ACKNOWLEDGED",
                           "acknowledged": {"task_id": {"value": task_id}, "uuid": _b64(uuid)}}])

    def release_acks(self) -> None:
        """Sends every ACK held back in "hold" mode."""
        with self._cond:
            held, self._held_acks = self._held_acks, []
        for tid, raw in held:
            self.send_ack(tid, raw)

    def _ack(self, task_id: str, raw: bytes) -> None:
        mode = self.ack_mode
        if mode == "hold":
            with self._cond:
                self._held_acks.append((task_id, raw))
            return
        if mode == "delay":
            self._after(self.ack_delay_secs, lambda: self.send_ack(task_id, raw))
            return
        if mode == "unknown_uuid":
            self.send_ack(task_id, uuid_mod.uuid4().bytes)
        self.send_ack(task_id, raw)
        if mode == "duplicate":
            self.send_ack(task_id, raw)

