"""`identity.one_reading`: within one reading (an observer's request, `stoker ps`) each
supervisor is looked at once; its answers live no longer than the reading, and only in its
thread: a waitress worker thread reused for the next request, a reading left by an exception,
and another thread meanwhile look again."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from config.registry import RegistrySettings
from executor.host import identity
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.registry import Registry
from executor.observe.reader import Reader
from executor.observe.server import ObserverApp
from tests.support.statuscli import RUNNING, header, write

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def supervisor():
    """A live process standing for a supervisor: its identity, and how to end it."""
    proc = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    try:
        seen = identity.identity_of(proc.pid)
        assert seen is not None
        yield seen, lambda: (proc.kill(), proc.wait(10))
    finally:
        proc.kill()
        proc.wait(10)


def _alive(who: identity.ProcessIdentity) -> bool:
    return identity.is_alive(who.pid, who.start_ticks, who.boot_id)


def test_the_answers_of_a_reading_end_with_it_even_on_an_exception(supervisor):
    who, end = supervisor
    with pytest.raises(RuntimeError), identity.one_reading():
        assert _alive(who)
        end()
        assert _alive(who)  # as first answered in this reading
        elsewhere: list[bool] = []
        other = threading.Thread(target=lambda: elsewhere.append(_alive(who)))
        other.start()
        other.join(10)
        assert elsewhere == [False]  # another thread: looked at again
        raise RuntimeError("a reading that fails")
    assert not _alive(who)
    with identity.one_reading():
        assert not _alive(who)


def test_an_observer_thread_answers_its_next_request_afresh(supervisor, tmp_path):
    """One thread, as a waitress worker serves request after request: the supervisor running
    for the first, gone for the second (its task LOST), not running still."""
    who, end = supervisor
    settings = RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=3600)
    write(tmp_path / "sb", [header(who.pid, who.start_ticks), *RUNNING])
    Registry(settings).write(RegistryEntry(
        sandbox=str(tmp_path / "sb"), supervisor_pid=who.pid, supervisor_start=who.start_ticks,
        supervisor_boot=who.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(), task_id="web-0-1"),
        prune=False)
    app = ObserverApp(Reader(settings), loopback=True)
    environ = {"PATH_INFO": "/api/tasks", "HTTP_HOST": "localhost", "REQUEST_METHOD": "GET"}

    def states() -> list[str]:
        return [t["state"] for t in json.loads(b"".join(app(dict(environ), lambda status, headers: None)))]

    assert states() == ["RUNNING"]
    end()
    assert states() == ["LOST"]
