"""The disk-limit check's walk of a sandbox (executor/task/diskusage.py) on real files:
allocated blocks, a hard-linked file once, no symlink followed, the front-end's top-level
entries left out, entries vanishing mid-walk, an unreadable directory, a tree deeper than
Python's recursion with few descriptors, and what is mounted inside."""
from __future__ import annotations

import json
import os
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from executor.task import diskusage
from executor.task.disklimit import DiskCheck
from executor.task.diskusage import _unescape, measure
from executor.task.diskwatch import DiskWatch, disk_check
from tests.support.limits import descriptors, opened_since
from tests.support.stoker_proc import REPO
from tests.support.users import as_nobody, needs_root, open_sandbox

KB = 1024


def blocks(*paths: Path) -> int:
    """What `du` counts for these paths (each lstat'ed)."""
    return sum(os.lstat(p).st_blocks * 512 for p in paths)


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_every_file_and_directory_counts_its_blocks(tmp_path):
    a = write(tmp_path / "a", 10 * KB)
    b = write(tmp_path / "logs/p/0/stdout", 100 * KB + 1)
    empty = write(tmp_path / "logs/empty", 0)
    usage = measure(tmp_path)
    dirs = [tmp_path / "logs", tmp_path / "logs/p", tmp_path / "logs/p/0"]
    assert usage.used_bytes == blocks(a, b, empty, *dirs)
    assert usage.used_bytes >= 110 * KB
    assert (usage.files, usage.unreadable) == (6, 0)


def test_a_sparse_file_counts_the_blocks_it_holds_not_its_length(tmp_path):
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1024 * 1024 * 1024)  # 1 GiB long, no block written
    assert measure(tmp_path).used_bytes < 64 * KB


def test_a_hard_linked_file_counts_once(tmp_path):
    big = write(tmp_path / "one/big", 200 * KB)
    (tmp_path / "two").mkdir()
    os.link(big, tmp_path / "two/big")
    os.link(big, tmp_path / "big-too")
    pair = write(tmp_path / "pair", 50 * KB)
    os.link(pair, tmp_path / "two/pair")  # two links, the commonest case
    usage = measure(tmp_path)
    assert usage.used_bytes == blocks(big, pair, tmp_path / "one", tmp_path / "two")
    assert usage.files == 4


def test_symlinks_are_never_followed_out_of_the_sandbox_nor_round_a_loop(tmp_path):
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    write(outside / "huge", 500 * KB)
    mine = write(sandbox / "mine", 4 * KB)
    (sandbox / "to-dir").symlink_to(outside)
    (sandbox / "to-file").symlink_to(outside / "huge")
    (sandbox / "loop").symlink_to(".")
    (sandbox / "up").symlink_to("..")
    usage = measure(sandbox)
    assert usage.used_bytes == blocks(mine, *(sandbox / n for n in ("to-dir", "to-file", "loop", "up")))
    assert usage.used_bytes < 100 * KB
    assert usage.files == 5


def test_the_front_end_s_top_level_entries_are_left_out_with_all_below_them(tmp_path):
    write(tmp_path / ".stoker/checkpoint.jsonl", 300 * KB)
    write(tmp_path / "stdout", 300 * KB)
    nested = write(tmp_path / "data/.stoker/x", 8 * KB)  # the task's own, deeper down
    usage = measure(tmp_path, lambda name: name not in (".stoker", "stdout"))
    assert usage.used_bytes == blocks(nested, tmp_path / "data", tmp_path / "data/.stoker")


def test_a_left_out_name_another_user_made_counts(tmp_path):
    # A root supervisor's sandbox is the role's: its processes may remove the agent's `stdout`
    # and fill a directory of that name, or rename `.stoker` away and make their own. Only the
    # supervisor's own entries are left out; here the entries' user stands for the role's.
    hidden = write(tmp_path / "stdout/hidden", 300 * KB)
    write(tmp_path / ".stoker/more", 300 * KB)
    role = os.lstat(tmp_path / "stdout").st_uid
    check = DiskCheck(skipped=frozenset({"stdout", ".stoker"}), owner=role + 1)  # the supervisor's
    usage = measure(tmp_path, check.counts, check.owner)
    assert usage.used_bytes >= blocks(hidden) + 300 * KB
    assert usage.files == 4
    assert measure(tmp_path, check.counts, role).used_bytes == 0  # the supervisor's own: left out


def test_entries_that_vanish_during_the_walk_are_not_counted_and_nothing_breaks(tmp_path):
    for name in ("a", "b", "c"):
        write(tmp_path / name / "inner", 300 * KB)
    write(tmp_path / "gone-file", 300 * KB)
    kept = write(tmp_path / "kept", 4 * KB)

    def counts(name: str) -> bool:  # runs between the listing of an entry and its stat
        if name == "kept":  # directories listed before it wait to be opened: gone then
            for other in ("a", "b", "c"):
                shutil.rmtree(tmp_path / other, ignore_errors=True)
        if name == "gone-file":
            os.unlink(tmp_path / name)
        return True

    usage = measure(tmp_path, counts)
    assert blocks(kept) <= usage.used_bytes < 100 * KB  # a directory's own blocks at most
    assert usage.unreadable == 0  # gone is not unreadable


def _unreadable_walk(sandbox: Path) -> dict:
    """measure() of a sandbox whose directory `locked` its walker may not read."""
    locked = write(sandbox / "locked/secret", 300 * KB).parent
    seen = write(sandbox / "seen", 4 * KB)
    if os.geteuid() != 0:
        locked.chmod(0)
        try:
            return {**_as_dict(measure(sandbox)), "expected": blocks(seen, locked)}
        finally:
            locked.chmod(0o700)
    for path in (sandbox, seen):
        os.chown(path, 65534, 65534)
    locked.chmod(0o700)  # root's: nobody may not read it
    answer = json.loads(as_nobody(lambda: json.dumps(_as_dict(measure(sandbox)))))
    return {**answer, "expected": blocks(seen, locked)}


def _as_dict(usage) -> dict:
    return {"used_bytes": usage.used_bytes, "files": usage.files, "unreadable": usage.unreadable}


def test_an_unreadable_directory_counts_itself_and_is_reported():
    with open_sandbox() as sandbox:
        got = _unreadable_walk(sandbox)
    assert got["used_bytes"] == got["expected"]  # the file inside is not seen
    assert got["unreadable"] == 1 and got["files"] == 2


@pytest.fixture
def memory_dir(tmp_path):
    """A directory in memory where there is /dev/shm (making and removing 1,500 directories
    on a busy disk took seconds), else tmp_path."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="stoker-deep-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_tree_deeper_than_python_s_recursion_is_walked_with_few_descriptors(memory_dir):
    depth = sys.getrecursionlimit() + 500
    fd = os.open(memory_dir, os.O_RDONLY | os.O_DIRECTORY)
    fds = [fd]
    try:
        for _ in range(depth):  # paths this long cannot be named: through descriptors
            os.mkdir("d", dir_fd=fd)
            fd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            fds.append(fd)
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, os.urandom(64 * KB))
        os.close(leaf)
        leaf_blocks = os.stat("leaf", dir_fd=fd).st_blocks * 512
        dir_blocks = sum(os.fstat(f).st_blocks * 512 for f in fds[1:])
    finally:
        for f in fds[1:]:
            os.close(f)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    try:
        usage = measure(memory_dir)  # a descriptor per level would run out at 16 levels
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert (usage.files, usage.unreadable) == (depth + 1, 0)
        assert usage.used_bytes == dir_blocks + leaf_blocks
    finally:
        _remove_deep(fds[0], depth)


def _remove_deep(top: int, depth: int) -> None:
    """Remove a chain of `depth` directories `d` (and the leaf) below `top`, bottom up."""
    chain = [top]
    for _ in range(depth):
        chain.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=chain[-1]))
    os.unlink("leaf", dir_fd=chain[-1])
    while len(chain) > 1:
        os.close(chain.pop())
        os.rmdir("d", dir_fd=chain[-1])
    os.close(top)


def test_mountinfo_paths_are_unescaped():
    assert _unescape(r"/sb/tmp\040fs\011x\134y") == "/sb/tmp fs\tx\\y"
    assert _unescape("/plain") == "/plain"
    # only a backslash and three digits is an escape: digits elsewhere, or after a backslash
    # that is no escape, stay as they are
    assert _unescape(r"/sb/a\040b2024\x123") == "/sb/a b2024\\x123"


MOUNTINFO_ESCAPES = {"\\": r"\134", " ": r"\040", "\t": r"\011", "\n": r"\012"}  # as the kernel's seq_file writes


def mountinfo_line(point: str, n: int = 40) -> str:
    """A /proc/self/mountinfo line for a mount at `point` (as the kernel writes it: escaped)."""
    written = "".join(MOUNTINFO_ESCAPES.get(char, char) for char in point)
    return f"{n} 1 0:{n} / {written} rw,relatime shared:{n} - tmpfs none rw"


def key(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def test_what_is_mounted_below_the_sandbox_is_named_by_its_parent_and_only_the_outer_one(tmp_path):
    """Each mount point below the sandbox, by its parent directory, its name as it is (a
    space, tab, newline or backslash in it or in the sandbox's path too); one inside another
    is never reached, so it is not listed; the sandbox itself, a sibling whose name starts
    with the sandbox's, a parent that is gone and a short line are not either."""
    sandbox = tmp_path / "sb\\ \t\nx"
    names = ["a", "b c", "t\tab", "n\nl", "back\\slash"]
    for name in [*names, "a/inner", "deep/m"]:
        (sandbox / name).mkdir(parents=True)
    (tmp_path / "sb\\ \t\nx2" / "other").mkdir(parents=True)
    lines = [mountinfo_line(str(sandbox / n), i) for i, n in enumerate([*names, "a/inner", "deep/m", "gone/x"])]
    lines += [mountinfo_line(str(sandbox), 90), mountinfo_line(str(tmp_path / "sb\\ \t\nx2" / "other"), 91),
              "92 1 / " + mountinfo_line(str(sandbox / "short")).split(" ")[4]]
    assert diskusage.mounted_below(str(sandbox), "\n".join(lines)) == {
        key(sandbox): frozenset(names), key(sandbox / "deep"): frozenset({"m"})}
    assert diskusage.mounted_below(str(sandbox / "a" / "inner"), "\n".join(lines)) == {}
    assert diskusage.mounted_below(str(tmp_path / "elsewhere"), "\n".join(lines)) == {}


def test_a_walk_scans_on_past_a_hard_link_it_has_counted(tmp_path):
    """A second name of an inode already counted is passed over, and the rest of its
    directory still counts (each directory below holds one and five files besides)."""
    original = write(tmp_path / "original", 8 * KB)
    dirs = [tmp_path / f"d{i}" for i in range(10)]
    files = [original]
    for directory in dirs:
        directory.mkdir()
        os.link(original, directory / "link")
        files += [write(directory / f"f{j}", 4 * KB) for j in range(5)]
    usage = measure(tmp_path)
    assert (usage.used_bytes, usage.files) == (blocks(*dirs, *files), 1 + 10 + 50)


@pytest.mark.parametrize("also", ["", "its parent renamed"])
def test_a_directory_moved_while_it_is_walked_is_found_again_from_the_sandbox(tmp_path, also):
    """The walk is in a/b/c, about to enter the first of its subdirectories d and e, when c
    moves to the sandbox's top (and b is renamed too). Back from that first one, `..` is
    still c, so c's other subdirectory is walked too; back from c, `..` is no longer b, so
    the way back is found from the sandbox by name and inode (with b gone from where it was,
    the walk goes on from a). Each directory and file is counted once: c's new name was not
    there when the top was read."""
    dirs = [tmp_path / "a", tmp_path / "a/b", tmp_path / "a/b/c", tmp_path / "a/b/c/d", tmp_path / "a/b/c/e"]
    files = [write(directory / "f", 4 * KB) for directory in dirs]
    asked = []

    def stopped() -> bool:
        asked.append(True)
        if len(asked) == 4:  # before c's first subdirectory: the walk is in c
            os.rename(tmp_path / "a/b/c", tmp_path / "c-moved")
            if also:
                os.rename(tmp_path / "a/b", tmp_path / "a/b2")
        return False

    sizes = blocks(*dirs, *files)
    usage = measure(tmp_path, stopped=stopped)
    assert (usage.used_bytes, usage.files, usage.unreadable, len(asked)) == (sizes, 10, 0, 5)


_MOUNTED = """
import json, os, subprocess, sys
from executor.task.diskusage import measure
sandbox, outside = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "none", sandbox + "/tmp fs"], check=True)
with open(sandbox + "/tmp fs/big", "wb") as f:
    f.write(os.urandom(400 * 1024))
subprocess.run(["mount", "--bind", outside, sandbox + "/bound"], check=True)
subprocess.run(["mount", "--bind", outside + "/big", sandbox + "/bound-file"], check=True)  # files too
subprocess.run(["mount", "--bind", sandbox + "/tmp fs/big", sandbox + "/tmpfs-file"], check=True)
u = measure(sandbox)
print(json.dumps([u.used_bytes, u.files]))
"""


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_nothing_mounted_inside_the_sandbox_counts(tmp_path):
    sandbox, outside = tmp_path / "sandbox", tmp_path / "outside"
    write(outside / "big", 400 * KB)  # the same file system as the sandbox: a bind mount
    mine = write(sandbox / "mine", 4 * KB)
    (sandbox / "tmp fs").mkdir()
    (sandbox / "bound").mkdir()
    for name in ("bound-file", "tmpfs-file"):  # where a host's file is mounted (a Mesos volume)
        (sandbox / name).touch()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _MOUNTED,
                           str(sandbox), str(outside)], capture_output=True, text=True, timeout=30,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0 and "mount" in done.stderr and "permission" in done.stderr.lower():
        pytest.skip(f"no mounts here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    used, files = json.loads(done.stdout)
    assert files == 1 and used == blocks(mine)  # not the mount points themselves either, nor a file mounted


_HUNG_FUSE = """
import json, sys
from executor.task.diskusage import measure
from tests.support.fuse_server import mount_hung
sandbox = sys.argv[1]
held = [mount_hung(sandbox + "/" + name) for name in sys.argv[2:]]  # never answered
u = measure(sandbox)
print(json.dumps([u.used_bytes, u.files]))
"""


def _measured_beside_hung_mounts(sandbox: Path, names: list[str], hung: str) -> tuple[int, int]:
    """(used bytes, files) of a walk of `sandbox` with a FUSE mount whose server never
    answers at each of `names` below it, in a mount namespace of its own; fails saying
    `hung` if the walk hangs, skips where FUSE mounts cannot be made."""
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _HUNG_FUSE,
                               str(sandbox), *names], capture_output=True, text=True, timeout=10,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail(hung)
    if done.returncode != 0 and "mount fuse" in done.stderr:
        pytest.skip(f"no FUSE mounts here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    used, files = json.loads(done.stdout)
    return used, files


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None or not os.path.exists("/dev/fuse"), reason="needs unshare, FUSE")
def test_a_mount_point_is_not_even_stat_ed_so_a_fuse_server_that_never_answers_cannot_hang_the_walk(tmp_path):
    # A role's FUSE mount (allow_other) in the sandbox whose server hangs: any stat of its
    # root waits for an answer that never comes. The walk knew it mounted and left it out,
    # but only after the stat, and waited for ever; its disk check sampled no more.
    sandbox = tmp_path / "sandbox"
    mine = write(sandbox / "deep" / "mine", 4 * KB)
    (sandbox / "fuse").mkdir()
    (sandbox / "deep" / "fuse").mkdir()
    used, files = _measured_beside_hung_mounts(sandbox, ["fuse", "deep/fuse"], "the walk hung on the FUSE mount")
    assert files == 2 and used == blocks(mine, sandbox / "deep")


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None or not os.path.exists("/dev/fuse"), reason="needs unshare, FUSE")
def test_mount_points_are_found_by_their_escaped_names_in_a_sandbox_whose_path_needs_escapes_too(tmp_path):
    # mountinfo writes a space, tab, newline and backslash escaped (\040 ...), in the
    # sandbox's path as in the mount point's: each hung FUSE mount below is left out before
    # any stat only if both were read right (the lines are matched as written, unescaped after).
    sandbox = tmp_path / "sand box\\1\n"
    mine = write(sandbox / "mine", 4 * KB)
    odd = ["fu", "fu se", "tab\tnew\nline", "back\\134slash"]
    for name in odd:
        (sandbox / name).mkdir()
    used, files = _measured_beside_hung_mounts(
        sandbox, odd, "the walk hung on a FUSE mount: its mount point was not known by name")
    assert files == 1 and used == blocks(mine)


def test_a_walk_told_to_stop_ends_at_the_next_directory(tmp_path):
    for d in range(20):
        write(tmp_path / f"d{d}" / "f", 1)
    asked = []

    def stopped() -> bool:
        asked.append(True)
        return len(asked) >= 3

    with pytest.raises(diskusage.Cancelled):
        measure(tmp_path, stopped=stopped)
    assert len(asked) == 3  # once before each directory, and none opened after the stop


def test_a_walk_told_to_stop_ends_within_a_big_directory_and_leaves_no_descriptor(tmp_path):
    """A stop asked while the sandbox's own directory (a thousand files) is being scanned
    ends the walk there, and the descriptors it opened are closed."""
    for n in range(1000):
        (tmp_path / f"f{n}").touch()
    asked = []

    def stopped() -> bool:
        asked.append(True)
        return True

    open_before = descriptors()
    with pytest.raises(diskusage.Cancelled):
        measure(tmp_path, stopped=stopped)
    assert len(asked) == 1  # after the first ENTRIES_PER_ASK entries
    assert opened_since(open_before) == {}


def test_a_slow_walk_of_one_big_directory_is_counted_whole_and_pushes_the_next_sample_back(tmp_path):
    """A sandbox whose files sit in one directory, on a disk slow enough that its scan takes
    32 s (here the walk's clock moves 50 ms per entry, as a stat of a cold disk or a busy
    NFS server would take): the walk counts its 32 s, so the next sample is due 9 times
    that after it, as designed (was: one step between two directories, counted 5 s at most
    as if it were a pause of the supervisor: the next sample came after the 60 s interval,
    and a sandbox that slow was walked a third of the time, not a tenth)."""
    from executor.events import DiskSampled
    from executor.task.disklimit import DiskLimit
    from executor.task.diskwatch import WalkTime
    from tests.support.fake_clock import FakeClock

    for n in range(640):
        (tmp_path / f"f{n}").touch()
    clock = FakeClock()
    took = WalkTime(lambda: False, clock)

    def counts(name: str) -> bool:
        clock.advance(0.05)  # this entry's stat, on a slow disk
        return True

    assert measure(tmp_path, counts, stopped=took.stopped).files == 640
    took.stopped()  # as the sampler asks once more at the walk's end
    assert took.secs == pytest.approx(32.0)
    check = DiskLimit(2**20, 60.0)
    check.start(clock.now)
    assert check.take(clock.now)
    check.sampled(DiskSampled(1, secs=took.secs), clock.now)
    assert check.deadline_at() == pytest.approx(clock.now + 9 * 32.0)


def test_a_task_s_stop_ends_its_walk_and_nothing_is_posted_nor_waited_for(tmp_path, monkeypatch):
    # A long walk outlived its task (and ran beside the next attempt's under `stoker run`).
    for d in range(20):
        write(tmp_path / f"d{d}" / "f", 1)
    begun, go, ended = threading.Event(), threading.Event(), []
    real = diskusage.measure

    def measure(*args, **kwargs):
        begun.set()
        go.wait(10)  # the walk is under way when the task stops
        try:
            return real(*args, **kwargs)
        except BaseException as exc:
            ended.append(type(exc).__name__)
            raise

    monkeypatch.setattr(diskusage, "measure", measure)
    events: queue.SimpleQueue = queue.SimpleQueue()
    watch = DiskWatch("t.0", tmp_path, 1, disk_check(tmp_path, 60.0, under_agent=False), events.put)
    watch.start()
    assert begun.wait(10)
    watch.stop()  # returns at once: the walk is not waited for
    go.set()
    sampler = next(t for t in threading.enumerate() if t.name == "disk-sample t.0")
    sampler.join(10)
    assert not sampler.is_alive() and ended == ["Cancelled"] and events.empty()


def test_what_each_front_end_leaves_out_of_its_sandbox(tmp_path, monkeypatch):
    bundle = write(tmp_path / "stoker.pyz", 1)  # as the agent fetched it, and started it from
    monkeypatch.setattr(sys, "argv", [str(bundle), "executor"])
    under_agent = disk_check(tmp_path, 5.0, under_agent=True)
    assert under_agent.interval_secs == 5.0
    assert under_agent.skipped == {".stoker", "stdout", "stderr", "stoker.pyz"}
    assert under_agent.counts(".logs.attempt-1")  # no such thing under an agent: the task's
    assert under_agent.owner == os.geteuid()  # left out only while this process's user owns them
    monkeypatch.setattr(sys, "argv", ["/usr/bin/stoker", "run"])
    local = disk_check(tmp_path, 5.0, under_agent=False)
    assert local.skipped == {".stoker"} and not local.counts(".logs.attempt-1")


def test_the_sampling_thread_walks_at_the_supervisor_s_own_priority(tmp_path, monkeypatch):
    # A thread of lower priority that the kernel preempts while it holds the GIL stalls every
    # other thread of the supervisor until it runs again: a walk at nice 19 beside a task
    # that kept the CPUs busy stalled the owner and the health checks for 2 to 3 s at a time.
    seen = []
    real = diskusage.measure

    def measure(*args, **kwargs):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(*args, **kwargs)

    monkeypatch.setattr(diskusage, "measure", measure)
    write(tmp_path / "data", 8 * KB)
    events: queue.SimpleQueue = queue.SimpleQueue()
    DiskWatch("t.0", tmp_path, 1, disk_check(tmp_path, 60.0, under_agent=False), events.put).start()
    sample = events.get(timeout=10)
    assert sample.used_bytes >= 8 * KB
    assert seen == [os.getpriority(os.PRIO_PROCESS, 0)]
