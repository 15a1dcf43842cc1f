"""This process's orphans' list (its main thread's children list) read through one descriptor
kept open (`proctree._main_children`): each run's exit reads it before its leftover kill.

- Every read is the list as it is now (a seq_file rendered anew at offset 0): a child started
  or reaped between two reads is in the next one, or gone from it.
- The reads go through one descriptor, the same each time (before: an open, two reads and a
  close by path each time, and no such descriptor).
- A child forked after its parent kept its own reads its own list, not its parent's through
  the descriptor it inherited.
- A read that may have stopped at the seq_file's full page (a list of hundreds of orphans)
  is not taken for the whole list: the list is read on to its end.
- Any process's children with whether it has several threads (`children_and_threads`): one
  of a single thread read by its tid without the task directory's listing, one of several
  with every thread's children (a child forked by a second thread is in it).

Each check runs in a fresh interpreter: the kept descriptor is per process, and a pytest
worker's earlier tests leave children of their own on its list.
"""
from __future__ import annotations

import subprocess
import sys

from tests.support.stoker_proc import REPO

FRESH_AND_KEPT = """
import os, subprocess
from executor.procs import proctree
me = os.getpid()
path = f"/proc/{me}/task/{me}/children"
def kept():
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == path:
                fds.append(int(name))
        except OSError:
            continue
    return fds
first = subprocess.Popen(["sleep", "30"])
seen1 = proctree.children(me, leader_only=True)
fds1 = kept()
second = subprocess.Popen(["sleep", "30"])
seen2 = proctree.children(me, leader_only=True)
first.kill(); first.wait()
seen3 = proctree.children(me, leader_only=True)
fds3 = kept()
second.kill(); second.wait()
assert first.pid in seen1 and second.pid not in seen1, seen1
assert first.pid in seen2 and second.pid in seen2, seen2
assert first.pid not in seen3 and second.pid in seen3, seen3
assert len(fds1) == 1 and fds1 == fds3, (fds1, fds3)
print("ok")
"""

FORKED_CHILD = """
import os, subprocess
from executor.procs import proctree
mine = subprocess.Popen(["sleep", "30"])
assert mine.pid in proctree.children(os.getpid(), leader_only=True)  # the parent's list, kept
pid = os.fork()
if pid == 0:
    code = 1
    try:
        grandchild = subprocess.Popen(["sleep", "30"])
        seen = proctree.children(os.getpid(), leader_only=True)
        grandchild.kill(); grandchild.wait()
        code = 0 if grandchild.pid in seen and mine.pid not in seen else 3
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
mine.kill(); mine.wait()
assert os.waitstatus_to_exitcode(status) == 0, status
print("ok")
"""

# A list longer than a page needs some 700 children, more than a test starts (200 at most:
# a fork bomb's bound): the kept slot is given another seq_file longer than a page, this
# process's maps, whose one pread stops at the page as a long children list's does (checked
# first). Read whole, it ends with the last mapping (the top one, which stays put) of the
# file as read by path; its first page alone (the bug) does not.
LONGER_THAN_A_PAGE = """
import os
from executor.procs import proctree
me = os.getpid()
maps = os.open(f"/proc/{me}/maps", os.O_RDONLY | os.O_CLOEXEC)
first = os.pread(maps, 65536, 0)
by_path = open(f"/proc/{me}/maps", "rb").read()
assert 2048 < len(first) < len(by_path), (len(first), len(by_path))  # stopped at a page
proctree._kept[:] = [me, maps]
seen = proctree._main_children(me)
assert len(seen) > len(first) and seen.splitlines()[-1] == by_path.splitlines()[-1], (len(seen), seen[-200:])
print("ok")
"""

THREADS = """
import os, subprocess, threading
from executor.procs import proctree
me = os.getpid()
first = subprocess.Popen(["sleep", "30"])
alone = proctree.children_and_threads(me)
forked, go = [], threading.Event()
def second_thread():
    forked.append(subprocess.Popen(["sleep", "30"]))
    go.wait()
thread = threading.Thread(target=second_thread)
thread.start()
while not forked:
    thread.join(0.001)
both = proctree.children_and_threads(me)
go.set()
thread.join()
for child in (first, *forked):
    child.kill()
    child.wait()
assert alone == ([first.pid], False), alone
assert sorted(both[0]) == sorted([first.pid, forked[0].pid]) and both[1], both
print("ok")
"""


def _run(script: str) -> None:
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_each_read_is_the_list_now_through_one_kept_descriptor():
    _run(FRESH_AND_KEPT)


def test_a_forked_child_reads_its_own_list_not_its_parents():
    _run(FORKED_CHILD)


def test_a_read_that_may_have_stopped_at_a_page_is_not_taken_for_the_whole_list():
    _run(LONGER_THAN_A_PAGE)


def test_children_and_threads_reads_a_single_thread_by_its_tid_and_several_by_each():
    _run(THREADS)
