"""The room a supervisor keeps in the address space for its task's stop (`earlyfork.keep_stop_room`,
kept as its start ends at its first idle, let go as the stop begins: `Supervisor.stop_begun`)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from executor import logs
from executor.procs import earlyfork
from executor.procs.supervisor import Supervisor
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(30)
MARKER = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def supervisor(tmp_path):
    earlyfork.let_go_stop_room()
    sup = Supervisor(sandbox=tmp_path, task_label="test.0", env={"PATH": os.environ["PATH"]},
                     post=lambda event: None, marker=MARKER)
    try:
        yield sup
    finally:
        sup.close()
        earlyfork.let_go_stop_room()


def test_the_room_is_kept_as_the_start_ends_and_let_go_as_the_stop_begins(supervisor):
    supervisor.idle()  # the start's end
    assert earlyfork._stop_room is not None
    assert logs.room_kept is not None  # (a thread start the limit refuses is handed it)
    supervisor.stop_begun()
    assert earlyfork._stop_room is None
    assert logs.room_kept is None
    supervisor.idle()  # a step of the stop
    assert earlyfork._stop_room is None


def test_a_stop_begun_before_the_start_ended_keeps_no_room(supervisor):
    """A stop queued before the owner's first step (a SIGTERM as `stoker run` started) begins
    before the start's end: the room kept then would take 4 MiB from the stop itself, under
    the limit of a full address space, until the close (it was kept: the stop had less room
    than with none kept at all)."""
    supervisor.stop_begun()
    supervisor.idle()  # the start's end, the stop under way
    assert earlyfork._stop_room is None


# A child keeps the stop's room, then its address space is limited to what it maps without
# that room, plus one thread's room and 1 MiB: a thread fits only where the room is handed over.
HAND_OVER = r"""
import resource, sys, threading
sys.path.insert(0, sys.argv[1])
from executor import logs
from executor.procs import earlyfork

earlyfork.keep_stop_room()
assert earlyfork._stop_room is not None
mapped = logs.address_space()[1]
limit = mapped - earlyfork.STOP_ROOM_BYTES + logs.room_for_thread() + (1 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
ran = threading.Event()
thread = threading.Thread(target=ran.set)
logs.start_thread(thread)
thread.join(5)
print("started" if ran.is_set() else "not run", "room kept" if earlyfork._stop_room is not None else "room given")
"""


def test_a_thread_the_limit_has_room_for_only_without_the_stops_room_is_given_it():
    """A disk sample's or a health check's thread after the start's end, under a `ulimit -v`
    that had room for it before the room was kept: it starts, with the room (was: refused,
    the smallest limit under which `--disk-limit on` sampled at all 4 MiB higher: 91,570 ->
    95,663 KiB; below it every sample failed, 'the sampling thread could not start')."""
    done = subprocess.run([sys.executable, "-c", HAND_OVER, str(REPO)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["started", "room", "given"]


# The same, where glibc's mmap threshold was raised past the room's size (a block of 8 MiB
# freed before the start's end: a big file read whole, say) and a heap block was made above it.
HAND_OVER_HEAP = HAND_OVER.replace("earlyfork.keep_stop_room()\n", """
freed = bytes(8 << 20)  # mmapped, and freed: glibc's threshold rises to 8 MiB
del freed
earlyfork.keep_stop_room()
above = bytearray(100_000)  # from the heap, above what the room would take of it
""")


def test_the_stops_room_is_handed_over_whole_after_a_big_block_raised_the_c_library_s_threshold():
    """The room is a mapping of its own, so letting it go gives its address space back
    whatever the C heap holds: it was a heap block where glibc's mmap threshold had risen
    past 4 MiB (a block that size freed before), and a block above it kept the heap from
    shrinking, so the thread given the room was refused all the same (mutmut's copy of the
    modules, compiled in the test's child, raised the threshold)."""
    done = subprocess.run([sys.executable, "-c", HAND_OVER_HEAP, str(REPO)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["started", "room", "given"]


# A start given the stop's room, hung before its thread runs (its start() waits), and another
# start meanwhile: the room the first reserved is counted, and the other is refused for it.
HUNG_WITH_THE_ROOM = r"""
import resource, sys, threading
sys.path.insert(0, sys.argv[1])
from executor import logs
from executor.procs import earlyfork

in_start, released = threading.Event(), threading.Event()


class Hung(threading.Thread):
    def start(self):
        in_start.set()
        released.wait(timeout=20)
        super().start()


go = threading.Event()


def hang():
    go.wait()
    logs.start_thread(Hung(target=lambda: None, daemon=True))


hanger = threading.Thread(target=hang)
hanger.start()
earlyfork.keep_stop_room()
mapped = logs.address_space()[1]
room = logs.room_for_thread()
limit = mapped - earlyfork.STOP_ROOM_BYTES + room + (1 << 20)  # room for one thread only with the stop's room
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
go.set()
in_start.wait(timeout=20)
try:
    logs.start_thread(threading.Thread(target=lambda: None, daemon=True))
    print("other started")
except logs.NoRoomForThread as exc:
    print("other refused", room // 2 < exc.reserved <= room)
finally:
    released.set()
hanger.join()
"""


def test_a_start_given_the_stops_room_holds_its_reservation_against_another_start():
    """The start the room was handed to reserves its room for its own thread as any start
    does: another start while it is under way counts it, and is refused with its figures."""
    done = subprocess.run([sys.executable, "-c", HUNG_WITH_THE_ROOM, str(REPO)], capture_output=True, text=True,
                          timeout=30)
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["other", "refused", "True"], "")


NO_ROOM = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
from executor import logs
from executor.procs import earlyfork

mapped = logs.address_space()[1]
resource.setrlimit(resource.RLIMIT_AS, (mapped + (1 << 20), resource.RLIM_INFINITY))  # less than the room
earlyfork.keep_stop_room()
print(earlyfork._stop_room, logs.room_kept)
"""


def test_no_room_is_kept_where_the_address_space_has_none_for_it():
    """Under a limit with less than the room left, `mmap` fails (MAP_FAILED): nothing is kept
    and no thread start is offered a room."""
    done = subprocess.run([sys.executable, "-c", NO_ROOM, str(REPO)], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["None", "None"], "")


def _let_go_paused_at(line: int, paused, resume, errors: list) -> None:
    """`let_go_stop_room`, paused as it reaches its `line`-th line (from a trace): another
    let-go runs meanwhile. An exception it raises is put in `errors`."""
    code, seen = earlyfork.let_go_stop_room.__code__, [0]

    def local(frame, event, arg):
        if event == "line":
            seen[0] += 1
            if seen[0] == line:
                paused.set()
                resume.wait(timeout=20)
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code is code else None)
    try:
        earlyfork.let_go_stop_room()
    except Exception as exc:  # the test's failure, reported by the main thread
        errors.append(exc)
    finally:
        sys.settrace(None)
        paused.set()  # (a let-go with fewer lines: never paused)


@pytest.mark.parametrize("line", [1, 2, 3, 4, 5])
def test_the_room_let_go_from_two_threads_at_once_is_unmapped_once(line):
    """A thread start handed the room (`logs.room_kept`, from any thread) as the owner's stop
    lets it go: one of them unmaps it, once, and neither raises (the second read the room
    the first had just taken, None: a TypeError in the stop or the thread start)."""
    earlyfork.let_go_stop_room()
    earlyfork.keep_stop_room()
    assert earlyfork._stop_room is not None
    address, munmap = earlyfork._stop_room
    unmapped: list[int] = []

    def recording_munmap(at: int, size: int) -> int:
        unmapped.append(at)
        return munmap(at, size)

    earlyfork._stop_room = address, recording_munmap
    paused, resume, errors = threading.Event(), threading.Event(), []
    first = threading.Thread(target=_let_go_paused_at, args=(line, paused, resume, errors))
    second = threading.Thread(target=earlyfork.let_go_stop_room)
    try:
        first.start()
        assert paused.wait(timeout=20)
        second.start()
        second.join(timeout=1)  # done, or waiting for the first (which holds the room)
    finally:
        resume.set()
        first.join(timeout=20)
        second.join(timeout=20)
        earlyfork.let_go_stop_room()
    assert (errors, unmapped, earlyfork._stop_room, logs.room_kept) == ([], [address], None, None)


_FORK_WHILE_HELD = """
import os, signal, sys, threading, warnings

# (3.12+ warns of this very fork, made here in __main__: what the test is about)
warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)

from executor.procs import earlyfork

earlyfork.keep_stop_room()
held, release = threading.Event(), threading.Event()

def hold() -> None:  # a thread keeping or letting go of the room as the fork is made
    with earlyfork._room_lock:
        held.set()
        release.wait()

holder = threading.Thread(target=hold)
holder.start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(5)  # a child that waits on the lock for good ends by SIGALRM
    earlyfork.let_go_stop_room()
    os._exit(0 if earlyfork._stop_room is None else 3)
release.set()
holder.join()
status = os.waitpid(pid, 0)[1]
print(os.waitstatus_to_exitcode(status))
"""


def test_a_child_forked_while_another_thread_holds_the_rooms_lock_can_let_the_room_go():
    """A fork copies only the forking thread: the room's lock another thread held stayed held
    in the child, whose let-go (its stop, or a thread start the limit refuses) then waited on
    it for ever (here: SIGALRM, -14)."""
    out = subprocess.run([sys.executable, "-c", _FORK_WHILE_HELD], cwd=REPO, capture_output=True,
                         text=True, timeout=20)
    assert (out.stdout.strip(), out.stderr) == ("0", "")
