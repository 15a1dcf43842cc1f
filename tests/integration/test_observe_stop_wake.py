"""The observer's stop kept however its signal lands (`executor/observe/stopwake.py`): the
real `serve` in a process of its own whose stop handler's KeyboardInterrupt never reaches
the loop (a handler that does nothing stands for one Python dropped, raised inside a
finalizer or a weakref callback). A stop signal still ends the loop, once serving and when
it came before the loop began; the wakeup fd found is put back after."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# argv: registry root, the signal's number, "early" to send it to itself before the loop runs
SERVE = """
import signal, sys
from config.registry import RegistrySettings
from executor.observe.reader import Reader
from executor.observe.server import serve
signum = int(sys.argv[2])
signal.signal(signum, lambda *_: None)  # its raise lost: only the wakeup byte is left
before = signal.set_wakeup_fd(-1)
def ready(host, port):
    if sys.argv[3] == "early":
        signal.raise_signal(signum)
    print("serving", port, flush=True)
try:
    serve(Reader(RegistrySettings(registry_root=sys.argv[1], registry_retention_secs=60.0)), "127.0.0.1", 0,
          ready=ready)
except KeyboardInterrupt:
    print("interrupted outside the loop", flush=True)
print("stopped; wakeup fd put back:", signal.set_wakeup_fd(-1) == -1 == before, flush=True)
"""


def _observer(tmp_path, signum: int, when: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path / "root"), str(signum), when],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_whose_raise_was_lost_still_ends_the_loop(tmp_path, signum):
    observer = _observer(tmp_path, signum, "later")
    try:
        assert observer.stdout is not None
        assert observer.stdout.readline().startswith("serving ")
        observer.send_signal(signum)
        out, err = observer.communicate(timeout=20)  # (was: an hour, the loop's idle wait)
    finally:
        observer.kill()
        observer.wait(10)
    assert (observer.returncode, out, err) == (0, "stopped; wakeup fd put back: True\n", "")  # (no busy loop's lines)


def test_a_stop_that_came_before_the_loop_ran_ends_it_as_it_starts(tmp_path):
    observer = _observer(tmp_path, signal.SIGTERM, "early")
    try:
        out, err = observer.communicate(timeout=20)
    finally:
        observer.kill()
        observer.wait(10)
    assert observer.returncode == 0, err
    assert out.splitlines()[1:] == ["stopped; wakeup fd put back: True"]


def test_a_signal_that_is_no_stop_does_not_end_the_loop(tmp_path):
    observer = _observer(tmp_path, signal.SIGUSR1, "later")  # its byte is read and nothing more
    try:
        assert observer.stdout is not None
        port = int(observer.stdout.readline().split()[1])
        observer.send_signal(signal.SIGUSR1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=10) as answer:
            assert answer.status == 200  # served after the signal: the loop went on
        assert observer.poll() is None
        observer.send_signal(signal.SIGTERM)  # at its default here: it ends the process
        _, err = observer.communicate(timeout=20)
    finally:
        observer.kill()
        observer.wait(10)
    assert observer.returncode == -signal.SIGTERM
    assert "unhandled write event" not in err  # the waker is never asked to write: no busy loop
