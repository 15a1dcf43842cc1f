"""Who is at fault when the Mesos protocol goes wrong (pure; no I/O, no logging).

    ProtocolError             the common base; never raised itself
    ├── RemoteProtocolError   the agent's bytes or JSON break the v1 executor API (or a
    │                         TaskInfo is malformed): log it, drop the stream, resubscribe;
    │                         for a TaskInfo, fail that task with the message
    └── LocalProtocolError    Stoker used the protocol wrongly (a wrong state, a reused uuid,
                              a state that is no TaskState): a bug, reported as an internal error

Both name what is wrong. The split follows h11: the caller tells "the peer misbehaved"
(expected, recoverable) from "we misbehaved" (never expected) by the type alone.
"""
from __future__ import annotations


class ProtocolError(Exception):
    """Something broke the v1 executor API; see the two subclasses."""


class RemoteProtocolError(ProtocolError):
    """The agent sent bytes or JSON that do not follow the v1 executor API."""


class LocalProtocolError(ProtocolError):
    """Stoker called the protocol in a way it forbids: a bug in Stoker."""
