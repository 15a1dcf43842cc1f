"""The announcer's ZooKeeper client parts that are kazoo's own shapes: its threading handler,
whose threads start through `executor.logs.start_thread`, and the ACL of the nodes it
creates. Loaded only with `executor.task.announcer`, for a task that announces."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.security import ACL, make_acl, make_digest_acl_credential

from config.zookeeper import ZkAccess, ZkAuth
from executor.logs import start_thread


class CheckedStartHandler(SequentialThreadingHandler):
    """kazoo's threading handler, its threads (the connection's, two workers') started
    through `start_thread`: kazoo's own `Thread.start()` could wait for good under an
    address-space limit with no room for them (executor/logs.py)."""

    def spawn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        thread = threading.Thread(target=func, args=args, kwargs=kwargs, daemon=True)
        start_thread(thread)
        return thread

    def start(self) -> None:
        """kazoo's start of its two workers; when the second is refused, the first is
        stopped before the refusal goes on (it was left waiting on its queue for good)."""
        try:
            super().start()
        except BaseException:
            with self._state_change:
                self._running = bool(self._workers)  # what `stop` stops
            self.stop()
            raise


def node_acl(auth: ZkAuth | None) -> list[ACL] | None:
    """The ACL of every node the announcer creates (None: kazoo's default, open to all)."""
    if auth is None or not auth.acl:
        return None
    return [_one_acl(a) for a in auth.acl]


def _one_acl(access: ZkAccess) -> ACL:
    credential = access.credential
    if access.scheme == "digest":  # the ACL names the user and a hash of the password
        user, password = credential.split(":")
        credential = make_digest_acl_credential(user, password)
    p = access.permissions
    return make_acl(access.scheme, credential, read=p.read, write=p.write, create=p.create,
                    delete=p.delete, admin=p.admin)
