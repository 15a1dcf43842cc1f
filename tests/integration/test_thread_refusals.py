"""Threads refused by `executor.logs.start_thread` under an address-space limit (ulimit -v)
with no room for one (a full pids cgroup refuses them in the C library, the same RuntimeError),
where a start was once made past it or its refusal not handled. Fresh processes: the limit is
set in each, leaving room for allocations (half a thread's stack and first allocations) but not
for a thread.

- `executor.host.turnlock.take`: its wait is a thread's blocking `flock`; the code cache's save,
  at a command's end, must give up its turn (a next start compiles again), not end the command
  with a traceback.
- the announcer's kazoo client: its threads go through the check, not kazoo's own start.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from executor.task.zkclient import CheckedStartHandler
from tests.support.stoker_proc import REPO

NO_ROOM_FOR_A_THREAD = """
import fcntl, os, resource, sys
from executor.host import turnlock
from executor.logs import address_space, room_for_thread
path = sys.argv[1]
holder = os.open(path, os.O_RDWR)
fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: as another process holding it
fd = os.open(path, os.O_RDWR)
_, mapped = address_space()
resource.setrlimit(resource.RLIMIT_AS, (mapped + room_for_thread() // 2, resource.getrlimit(resource.RLIMIT_AS)[1]))
turn = turnlock.take(fd, 30.0)
try:
    os.fstat(fd)
    kept = True
except OSError:
    kept = False
print(turn, kept)
"""


def child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`script` run by a fresh Python with the repository on its path (its own limits, threads)."""
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)


def test_no_thread_to_wait_with_gives_up_the_turn_at_once_and_the_descriptor(tmp_path):
    """Was: the refusal (NoRoomForThread) went up through `codecache.save()`, a traceback at
    the command's end, and the descriptor was left open."""
    lock = tmp_path / "attrs-run.lock"
    lock.write_bytes(b"")
    done = child(NO_ROOM_FOR_A_THREAD, str(lock))
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["False", "False"], ""), done.stderr


KAZOO_HANDLER = """
import resource
from executor.logs import NoRoomForThread, address_space, room_for_thread
from executor.task.zkclient import CheckedStartHandler
handler = CheckedStartHandler()
_, mapped = address_space()
resource.setrlimit(resource.RLIMIT_AS, (mapped + room_for_thread() // 2, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    handler.start()  # its two workers (the connection's thread: `spawn` too)
except NoRoomForThread as exc:
    print("refused by the check:", exc)
"""


def test_the_announcers_kazoo_threads_are_refused_by_the_check():
    done = child(KAZOO_HANDLER)
    assert (done.returncode, done.stdout, done.stderr) == (0, "refused by the check: can't start new thread\n", "")


KAZOO_SECOND_WORKER = """
import resource, threading
from executor.logs import NoRoomForThread, address_space, room_for_thread
from executor.task.zkclient import CheckedStartHandler
handler = CheckedStartHandler()
_, mapped = address_space()
room = room_for_thread()
resource.setrlimit(resource.RLIMIT_AS, (mapped + room + room // 2, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    handler.start()
except NoRoomForThread:
    print("refused; threads left:", threading.active_count() - 1)
"""


def test_a_kazoo_handler_whose_second_worker_is_refused_stops_its_first():
    """Room for one thread: kazoo's first worker starts, its second is refused, and the first
    is stopped before the refusal goes on (it was left waiting on its queue for good)."""
    done = child(KAZOO_SECOND_WORKER)
    assert (done.returncode, done.stdout, done.stderr) == (0, "refused; threads left: 0\n", "")


def test_a_kazoo_spawn_runs_its_function_with_its_arguments_on_a_daemon_thread():
    """kazoo's handler interface: `spawn(func, *args, **kwargs)`; the thread is a daemon, so
    that a connection's loop never holds the supervisor's exit."""
    got: list[object] = []
    thread = CheckedStartHandler().spawn(lambda *args, **kwargs: got.append((args, kwargs)), 1, "two", three=3)
    thread.join(10)
    assert (got, thread.daemon) == ([((1, "two"), {"three": 3})], True)


TWO_STARTS_ROOM_FOR_ONE = """
import contextlib, resource, threading
from executor.logs import address_space, room_for_thread, start_thread
barrier = threading.Barrier(2)
go, end = threading.Event(), threading.Event()
outcomes = []

class Started(threading.Thread):
    def start(self):
        # Called by start_thread after its check: wait for the other racer to have checked too
        # (refused meanwhile: its check counts this one's reservation; the wait then gives up).
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=3.0)
        super().start()

def race():
    go.wait()
    try:
        start_thread(Started(target=end.wait, daemon=True))
        outcomes.append("started")
    except RuntimeError as exc:
        outcomes.append(type(exc).__name__)

racers = [threading.Thread(target=race) for _ in range(2)]
for racer in racers:
    racer.start()
_, mapped = address_space()
room = room_for_thread()
resource.setrlimit(resource.RLIMIT_AS, (mapped + room + room // 2, resource.getrlimit(resource.RLIMIT_AS)[1]))
go.set()
for racer in racers:
    racer.join()
end.set()
print(*sorted(outcomes))
"""


def test_two_starts_at_once_with_room_for_one_are_one_start_and_one_refusal():
    """Was: both racers passed the check before either thread started (the 2 MiB margin is
    less than a thread's stack), and the second start was left to the C library: a stack
    refused (a bare RuntimeError, no figures), or one mapped and its first allocations not
    (a start that waits for good). A start's check and its reservation of room are now one
    step per process, and a check counts the room the starts under way reserved."""
    done = child(TWO_STARTS_ROOM_FOR_ONE)
    assert (done.returncode, done.stdout, done.stderr) == (0, "NoRoomForThread started\n", "")


# One start has reserved its room and is held, in `Thread.start()`, before its `start_thread`
# returns, while another start looks, with room below the limit for two threads. argv[1]:
# "made", the held start's thread is made (its stack mapped) before it is held (it still holds
# its reservation); "mapped meanwhile", it is not made yet (nothing of it mapped) and the
# process maps as much as a thread again for something else (room for two and that, not three).
HELD_START = """
import mmap, resource, sys, threading
from executor.logs import address_space, room_for_thread, start_thread
made = sys.argv[1] == "made"
go, held, release, end = threading.Event(), threading.Event(), threading.Event(), threading.Event()

class Held(threading.Thread):
    def start(self):
        if made:
            super().start()  # the thread runs: its stack and first allocations are mapped
        held.set()  # its room reserved
        release.wait(timeout=30.0)  # and start_thread has not yet given its reservation back
        if not made:
            super().start()

def first():
    go.wait()
    start_thread(Held(target=end.wait, daemon=True))

starter = threading.Thread(target=first)
starter.start()
_, mapped = address_space()
room = room_for_thread()
resource.setrlimit(resource.RLIMIT_AS, (mapped + 2 * room + room // 2, resource.getrlimit(resource.RLIMIT_AS)[1]))
go.set()
held.wait(timeout=30.0)
other = None if made else mmap.mmap(-1, room)  # mapped meanwhile, not by the held start's thread
try:
    start_thread(threading.Thread(target=end.wait, daemon=True))
    print("second started")
except RuntimeError as exc:
    print("second refused:", type(exc).__name__)
if other is not None:
    other.close()  # room for the held start's thread again, whatever the second did
release.set()
starter.join()
end.set()
"""


def test_a_start_whose_thread_is_made_is_not_counted_twice():
    """Was: a start's reservation was counted until its `start_thread` returned, and its
    thread's stack, mapped by then, too: with room for two threads, a second start made while
    the first's thread was already mapped was refused (its stack counted twice). Each start now
    reserves up to a ceiling of what is mapped, which what it maps fills rather than adds to."""
    done = child(HELD_START, "made")
    assert (done.returncode, done.stdout, done.stderr) == (0, "second started\n", "")


def test_what_the_process_maps_meanwhile_does_not_fill_a_start_s_room():
    """Was (the fix before this one): a start under way was counted to a ceiling, what was
    mapped when it looked and its room; what the process mapped meanwhile filled that ceiling
    as if the start's thread had mapped it, so a second start passed with room for itself and
    the mapping, not for the held start's thread (whose stack or first allocations were then
    refused: a start that waits for good). The room of a start whose thread has not run yet
    counts in full; a thread that runs (`ident` set) is in what is mapped."""
    done = child(HELD_START, "mapped meanwhile")
    assert (done.returncode, done.stdout, done.stderr) == (0, "second refused: NoRoomForThread\n", "")


# A start that hangs (in `Thread.start()`, past start_thread's check: as one whose thread died
# before it ran any Python) until the test releases it, or for `HUNG_SECS` at most.
HUNG_START = """
import resource, sys, threading
from executor.logs import NoRoomForThread, address_space, no_room, room_for_thread, start_thread
go, in_start, released = threading.Event(), threading.Event(), threading.Event()
said = []

class Hung(threading.Thread):
    def start(self):
        in_start.set()
        said.append("released" if released.wait(timeout=float(sys.argv[2])) else "not released")
        super().start()

def hang():
    go.wait()
    start_thread(Hung(target=lambda: None, daemon=True))

hanger = threading.Thread(target=hang)
hanger.start()
_, mapped = address_space()
room = room_for_thread()
threads = int(sys.argv[1])  # the room below the limit: for that many threads and a half
resource.setrlimit(resource.RLIMIT_AS, (mapped + threads * room + room // 2, resource.getrlimit(resource.RLIMIT_AS)[1]))
go.set()
in_start.wait()
try:  # the other start's thread releases the hung start: on time only if it did not wait for it
    start_thread(threading.Thread(target=released.set, daemon=True))
    said.append("other started")
except NoRoomForThread as exc:
    said.append(f"other refused: {room // 2 < exc.reserved <= room}: {no_room(exc)}")  # (less what it mapped)
    released.set()
hanger.join()
print(*said, sep="\\n")
"""
HUNG_SECS = 20.0


def test_a_start_that_hangs_holds_up_no_other_start():
    """Was: the check and the start were one step under a lock, so a start that still hung
    (its thread dead of a MemoryError with no margin left) held every later start of the
    process (the health loop's, the announcer's, the control socket's) until it ended: here
    the other start waited out the hung one's `HUNG_SECS`. Now each reserves its room and
    starts outside the lock: with room for both, the other starts at once."""
    done = child(HUNG_START, "2", str(HUNG_SECS))
    assert (done.returncode, sorted(done.stdout.splitlines()), done.stderr) == (
        0, ["other started", "released"], ""), done.stdout


def test_a_start_under_way_keeps_its_room_from_another_which_says_so():
    """With room for one thread, a start under way (hung) holds it: another is refused at
    once, with the room the hung one reserved in its figures and its line."""
    done = child(HUNG_START, "1", str(HUNG_SECS))
    said = done.stdout.splitlines()
    assert (done.returncode, done.stderr, len(said)) == (0, "", 2), done.stdout + done.stderr
    assert said[0].startswith("other refused: True: no thread could be started: the address-space limit"), said
    assert said[0].endswith("KiB held by other starts under way)"), said
    assert said[1] == "released", said


REFUSED_THEN_STARTED = """
import resource, threading
from executor.logs import address_space, room_for_thread, start_thread

class Refused(threading.Thread):
    def start(self):
        raise RuntimeError("can't start new thread")  # as the C library refuses one

_, mapped = address_space()
room = room_for_thread()
resource.setrlimit(resource.RLIMIT_AS, (mapped + room + room // 2, resource.getrlimit(resource.RLIMIT_AS)[1]))
said = []
for thread in (Refused(target=lambda: None), threading.Thread(target=lambda: None)):
    try:
        start_thread(thread)
        thread.join()
        said.append("started")
    except RuntimeError as exc:
        said.append(type(exc).__name__)
print(*said)
"""


def test_a_start_the_c_library_refused_gives_its_room_back():
    """A start that raised keeps no reservation: with room for one thread, the next starts."""
    done = child(REFUSED_THEN_STARTED)
    assert (done.returncode, done.stdout, done.stderr) == (0, "RuntimeError started\n", "")


START_THREAD = """
import json, resource, sys, threading
import executor.logs
from executor.logs import NoRoomForThread, address_space, room_for_thread, start_thread
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
said = {}

def start(name):
    thread = threading.Thread(target=lambda: None, name=name)
    try:
        start_thread(thread)
    except NoRoomForThread as exc:
        said[name] = {"limit": exc.limit, "mapped": exc.mapped}
        return
    thread.join()
    said[name] = "started"

_, mapped = address_space()
room = mapped + room_for_thread() + 256 * 1024 * 1024  # far more than the thread needs
resource.setrlimit(resource.RLIMIT_AS, (room, hard))
said["room_limit"] = room
start("room")
none = mapped + room_for_thread() // 2
resource.setrlimit(resource.RLIMIT_AS, (none, hard))
start("none")
said["none_limit"], said["none_mapped"] = none, address_space()[1]
resource.setrlimit(resource.RLIMIT_AS, (room, hard))

def short_of_memory():
    raise MemoryError

executor.logs.address_space = short_of_memory  # (the look itself refused: as under the limit)
start("look refused")
print(json.dumps(said))
"""


def test_start_thread_starts_a_thread_the_limit_has_room_for_and_refuses_one_it_has_not_with_its_figures():
    """Refused: `NoRoomForThread` with the limit and what was mapped as it looked (a MiB of
    the look after it), or no figure when even the look found no memory."""
    done = child(START_THREAD)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    said = json.loads(done.stdout)
    assert said["room"] == "started", said
    assert said["none"]["limit"] == said["none_limit"], said
    assert abs(said["none"]["mapped"] - said["none_mapped"]) < 1024 * 1024, said
    assert said["look refused"] == {"limit": said["room_limit"], "mapped": None}, said
