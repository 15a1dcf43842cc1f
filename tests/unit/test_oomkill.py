"""Where the OOM kill count of this process's memory cgroup is, and the words of a kill."""
from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from executor.events import ExitStatus
from executor.procs.oomcount import (
    OomCounter,
    count,
    early_count,
    find_counter,
    has_events,
    named,
    open_counter,
    parse_oom_kills,
    read,
)
from executor.procs.oomkill import UNLIMITED, format_bytes, limit
from tests.support.stoker_proc import REPO

V1_MOUNTS = (
    "35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
    "36 25 0:31 / /sys/fs/cgroup/freezer rw,nosuid - cgroup cgroup rw,freezer\n"
    "37 25 0:32 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n")
V2_MOUNTS = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"


def test_v1_memory_hierarchy_is_preferred_and_names_the_cgroup():
    counter = find_counter("5:memory:/mesos/abc\n3:freezer:/x\n0::/other\n", V1_MOUNTS)
    assert counter is not None
    assert (counter.directory, counter.path, counter.v2, counter.top) == (
        "/sys/fs/cgroup/memory/mesos/abc", "/mesos/abc", False, "/sys/fs/cgroup/memory")


def test_v2_takes_the_nearest_cgroup_with_memory_events():
    has = {"/sys/fs/cgroup/system.slice/stoker.service"}
    counter = find_counter("0::/system.slice/stoker.service/stoker-1234\n", V2_MOUNTS,
                           has_events=lambda d: d in has)
    assert counter is not None
    assert (counter.directory, counter.path, counter.v2, counter.top) == (
        "/sys/fs/cgroup/system.slice/stoker.service", "/system.slice/stoker.service", True, "/sys/fs/cgroup")


def test_no_counter_in_the_v2_root_or_without_a_memory_mount():
    assert find_counter("0::/\n", V2_MOUNTS, has_events=lambda d: True) is None
    assert find_counter("0::/a/b\n", V2_MOUNTS, has_events=lambda d: False) is None
    assert find_counter("5:memory:/a\n", "1 2 0:1 / /proc rw - proc proc rw\n") is None


def test_a_namespaced_mount_shows_the_cgroup_below_its_root():
    mounts = "35 25 0:30 /kubepods/pod1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    counter = find_counter("5:memory:/kubepods/pod1/c1\n", mounts)
    assert counter is not None and counter.directory == "/sys/fs/cgroup/memory/c1"


def test_the_kill_count_of_either_file():
    assert parse_oom_kills("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n") == 2
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n") == 7
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n") is None  # Linux < 4.13


def test_sizes_in_words():
    assert format_bytes(256 << 20) == "256 MiB"
    assert format_bytes(3 << 29) == "1.5 GiB"
    assert format_bytes(4096) == "4096 bytes"


def test_a_run_the_oom_killer_killed_says_so():
    killer = "the kernel's OOM killer (memory cgroup /a: limit 30 MiB)"
    assert ExitStatus(signal=9, killer=killer).describe() == f"killed by {killer}"
    assert ExitStatus(signal=9).describe() == "killed by SIGKILL"


def test_only_a_sigkill_nobody_in_the_task_sent_during_which_the_count_grew_is_named(tmp_path):
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    (tmp_path / "memory.stat").write_text("cache 0\nhierarchical_memory_limit 67108864\n")
    counter = OomCounter(str(tmp_path), "/t", v2=False, top=str(tmp_path.parent), seen=1)
    kill = ExitStatus(signal=9)
    named_kill = "killed by the kernel's OOM killer (memory cgroup /t: limit 64 MiB)"
    assert named(kill, counter, 2, sent=False).describe() == named_kill
    assert named(kill, counter, None, sent=False).describe() == (  # since the supervisor started
        "killed by the kernel's OOM killer (memory cgroup /t: limit 64 MiB; 2 OOM kills there during the run)")
    assert named(kill, counter, 3, sent=False) is kill  # the count as the run was forked: not its
    assert named(kill, counter, 2, sent=True) == kill  # the task's own SIGKILL
    assert named(ExitStatus(signal=15), counter, 2, sent=False) == ExitStatus(signal=15)
    assert named(kill, None, 2, sent=False) == kill


def test_no_sigkill_nor_counter_looks_at_the_count(tmp_path, caplog):
    """Not a SIGKILL, or no counter: the status as it was, with no look (no OOM kill claimed
    nor any line), even while the count has grown."""
    (tmp_path / "memory.oom_control").write_text("oom_kill 3\n")
    counter = OomCounter(str(tmp_path), "/t", v2=False, top=str(tmp_path.parent), seen=1)
    term = ExitStatus(signal=15)
    assert named(term, counter, 1, sent=False) is term and not counter.claimed
    assert named(ExitStatus(signal=9), None, 1, sent=False) == ExitStatus(signal=9)
    assert not caplog.records


def test_a_held_counter_reads_its_file_anew_at_each_look(tmp_path):
    """`hold`: the file kept open, each look one pread from its start, not a stale copy."""
    events = tmp_path / "memory.oom_control"
    events.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    counter = OomCounter(str(tmp_path), "/t", v2=False, top=str(tmp_path.parent))
    counter.hold()
    assert counter.fd >= 0 and counter.count() == 3
    events.write_text("oom_kill_disable 0\nunder_oom 1\noom_kill 12\n")
    assert counter.count() == 12
    missing = OomCounter(str(tmp_path / "gone"), "/g", v2=True, top=str(tmp_path))
    missing.hold()
    assert missing.fd == -1 and missing.count() is None  # as an unheld look says


def test_a_held_v2_counter_holds_memory_events_from_its_start_and_closes_it_once_gone(tmp_path):
    """Its file held close-on-exec, read whole from offset 0 (the `oom_kill` line first
    here), a byte that is no UTF-8 read as a replacement, by a held look, an unheld one and
    `read`; the file closed once the counter is gone."""
    (tmp_path / "memory.events").write_bytes(b"oom_kill 4\nx \xff\n")
    counter = OomCounter(str(tmp_path), "/t", v2=True, top=str(tmp_path.parent))
    counter.hold()
    fd = counter.fd
    assert fd >= 0 and not os.get_inheritable(fd)
    assert counter.count() == count(str(tmp_path), v2=True) == 4
    assert read(str(tmp_path), "memory.events") == "oom_kill 4\nx \ufffd\n"
    del counter
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_held_counter_alive_as_the_interpreter_ends_closes_its_file_without_a_word(tmp_path):
    """A counter that outlives the `os` module's contents (an embedder's, a module global
    cleared late as Python ends): closed quietly, no "Exception ignored in __del__" on stderr
    (was: `os.close` was None by then, a TypeError traceback)."""
    (tmp_path / "memory.events").write_text("oom 0\noom_kill 0\n")
    script = ("import posixpath, sys\nfrom executor.procs.oomcount import OomCounter\n"
              "posixpath.kept = OomCounter(sys.argv[1], '/t', v2=True, top=sys.argv[1])\n"
              "posixpath.kept.hold()\nassert posixpath.kept.fd >= 0\n")
    ended = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert (ended.returncode, ended.stderr) == (0, "")


def test_this_process_s_counter_is_held_and_reads_as_the_cgroup_file_does():
    counter = open_counter()
    if counter is None:
        pytest.skip("this process has no memory cgroup count here")
    now = counter.count()
    assert counter.fd >= 0 and isinstance(counter.seen, int)  # the count as it opened
    assert now is not None and counter.seen <= now == count(counter.directory, counter.v2)


def test_the_early_start_reads_the_count_of_the_same_cgroup():
    """`oomcount.early_count` (the early start's, with no `re`) finds what the supervisor's
    counter does: the same cgroup's count, or none."""
    counter = open_counter()
    assert early_count() == (counter.count() if counter is not None else None)
    assert parse_oom_kills("oom 3\noom_kill 5\n") == 5 and parse_oom_kills("oom_kill x\n") is None


def test_a_run_forked_when_the_count_could_not_be_read_is_never_named(tmp_path):
    """Its kill would otherwise be told by the count at the supervisor's start: any OOM
    kill in the cgroup since then, days before maybe, would read as its."""
    control = tmp_path / "memory.oom_control"
    control.write_text("oom_kill 1\n")
    counter = OomCounter(str(tmp_path), "/t", v2=False, top=str(tmp_path.parent), seen=1)
    assert counter.mark() == 1
    control.unlink()  # unreadable as the run is forked
    since = counter.mark()
    control.write_text("oom_kill 2\n")
    assert named(ExitStatus(signal=9), counter, since, sent=False) == ExitStatus(signal=9)


def test_one_oom_kill_names_one_run(tmp_path):
    """Two runs SIGKILLed during one OOM kill (one by it, one by an operator's kill -9):
    the first reaped is named, the other reads as before; a second kill names the next."""
    control = tmp_path / "memory.oom_control"
    control.write_text("oom_kill 1\n")
    counter = OomCounter(str(tmp_path), "/t", v2=False, top=str(tmp_path.parent), seen=0)
    kill = ExitStatus(signal=9)
    assert named(kill, counter, 0, sent=False).killer is not None
    assert named(kill, counter, 0, sent=False) == kill
    control.write_text("oom_kill 2\n")
    assert named(kill, counter, 0, sent=False).killer is not None


def test_sizes_at_each_units_first_value():
    assert [format_bytes(n) for n in ((1 << 20) - 1, 1 << 20, (1 << 30) - (1 << 20), 1 << 30)] == [
        "1048575 bytes", "1 MiB", "1023 MiB", "1 GiB"]


def _v2(tmp_path, limits: dict[str, str | None]):  # type: ignore[no-untyped-def]
    """A cgroup v2 tree under tmp_path/top (its mount point), the count's cgroup top/a/b; each
    directory's memory.max as given (None: no such file, as in the root cgroup)."""
    for name, text in limits.items():
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        if text is not None:
            (tmp_path / name / "memory.max").write_text(text)
    (tmp_path / "top/a/b/memory.events").write_text("oom 1\noom_kill 1\n")
    return OomCounter(str(tmp_path / "top/a/b"), "/a/b", v2=True, top=str(tmp_path / "top"), seen=0)


@pytest.mark.parametrize("limits, said", [
    ({"top": None, "top/a": "max\n", "top/a/b": "max\n"}, "no memory limit: the host ran out of memory"),
    ({"top": None, "top/a": "31457280\n", "top/a/b": "max\n"}, "limit 30 MiB"),  # an ancestor's
    ({"top": None, "top/a": "31457280\n", "top/a/b": "20971520\n"}, "limit 20 MiB"),  # the lowest
    ({"top": None, "top/a": "20971520\n", "top/a/b": "31457280\n"}, "limit 20 MiB"),
    ({"top": "10485760\n", "top/a": "max\n", "top/a/b": None}, "limit 10 MiB"),  # up to the mount point
])
def test_a_v2_limit_is_the_lowest_of_the_cgroup_and_its_ancestors_up_to_the_mount(tmp_path, limits, said):
    (tmp_path / "memory.max").write_text("1048576\n")  # above the mount point: not this hierarchy's
    counter = _v2(tmp_path, limits)
    assert limit(counter) == said
    assert named(ExitStatus(signal=9), counter, 0, sent=False).killer == (
        f"the kernel's OOM killer (memory cgroup /a/b: {said})")


def test_a_v2_cgroup_mounted_at_the_root_walks_up_to_it(tmp_path):
    counter = _v2(tmp_path, {"top": None, "top/a": "max\n", "top/a/b": "20971520\n"})
    assert limit(OomCounter(counter.directory, "/a/b", v2=True, top="/nonexistent", seen=0)) == "limit 20 MiB"


@pytest.mark.parametrize("stat, said", [
    ("hierarchical_memory_limit 9223372036854771712\n", "no memory limit: the host ran out of memory"),
    (f"hierarchical_memory_limit {UNLIMITED}\n", "no memory limit: the host ran out of memory"),
    (f"hierarchical_memory_limit {UNLIMITED - 4096}\n", "limit 4294967296 GiB"),  # just below: a limit
    ("cache 0\n", "no memory limit: the host ran out of memory"),  # a kernel that does not say
    (None, "no memory limit: the host ran out of memory"),  # no memory.stat
])
def test_a_v1_limit_is_the_hierarchical_one_and_no_limit_is_said_so(tmp_path, stat, said):
    if stat is not None:
        (tmp_path / "memory.stat").write_text(stat)
    assert limit(OomCounter(str(tmp_path), "/t", v2=False, top=str(tmp_path), seen=0)) == said


def test_mountinfo_s_octal_escapes_are_undone_and_a_lone_backslash_kept():
    """The kernel writes a space, tab, newline or backslash of a mount's root or mount point
    as `\\ooo`; /proc/self/cgroup writes the path as it is."""
    mounts = "35 25 0:30 /kube\\040pods /sys/fs/cgroup/mem\\040ory\\134x\\9 rw - cgroup cgroup rw,memory\n"
    counter = find_counter("5:memory:/kube pods/c1\n", mounts)
    assert counter is not None and counter.directory == "/sys/fs/cgroup/mem ory\\x\\9/c1"


def test_lines_of_neither_file_s_shape_and_a_deleted_cgroup_are_passed_over():
    cgroups = "junk\n7:memory:relative/path\n5:memory:/mesos/abc\n"
    mounts = "no separator here\n1 2 0:1 / - \n" + V1_MOUNTS
    counter = find_counter(cgroups, mounts)
    assert counter is not None and counter.directory == "/sys/fs/cgroup/memory/mesos/abc"
    assert find_counter("5:memory:/mesos/abc (deleted)\n", V1_MOUNTS) is None
    assert find_counter("0::/real\n4::/odd\n", V2_MOUNTS, has_events=lambda d: True).directory == (  # type: ignore[union-attr]
        "/sys/fs/cgroup/real")  # only hierarchy 0 with no controller is v2's
    short = "35 25 0:30 / - cgroup cgroup rw,memory\n"  # 4 fields before the separator: not a mount's
    assert find_counter("5:memory:/a\n", short + V1_MOUNTS).directory == "/sys/fs/cgroup/memory/a"  # type: ignore[union-attr]
    five = "35 25 0:30 / /mem - cgroup cgroup rw,memory\n"  # 5: as many as it reads
    assert find_counter("5:memory:/a\n", five).directory == "/mem/a"  # type: ignore[union-attr]


@pytest.mark.parametrize("proc_cgroup, mounts, directory", [
    ("5:memory:/a:b\n", V1_MOUNTS, "/sys/fs/cgroup/memory/a:b"),  # a colon in a cgroup's name
    ("5:hugetlb,memory:/a\n", V1_MOUNTS, "/sys/fs/cgroup/memory/a"),  # memory mounted with another
    ("5:memory:/a/jobX\n", V1_MOUNTS, "/sys/fs/cgroup/memory/a/jobX"),
    ("5:memory:/\n", "35 25 0:30 / / rw - cgroup cgroup rw,memory\n", "/"),  # mounted at /
    # no v1 memory cgroup of this process's, or one its mount does not show: v2's
    ("0::/a/b\n", V1_MOUNTS, "/sys/fs/cgroup/unified/a/b"),
    ("5:memory:/other\n0::/a/b\n", "35 25 0:30 /kubepods /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
     + V2_MOUNTS, "/sys/fs/cgroup/a/b"),
    ("5:memory:/a\n0::/b\n", V2_MOUNTS + V1_MOUNTS, "/sys/fs/cgroup/memory/a"),  # v1's first, wherever listed
    ("0::/a\n", "30 25 0:26 / /cg rw - cgroup2 none\n", "/cg/a"),  # any source, no super options
    ("5:memory:/a\n", "36 25 0:31 / /f rw - cgroup cgroup rw,freezer\n"  # another controller's: not
     "35 25 0:30 / /m rw - cgroup none rw,memory\n", "/m/a"),
    ("5:memory:/Xa\n", V1_MOUNTS, "/sys/fs/cgroup/memory/Xa"),
    # a mount that shows a cgroup below the root: the cgroup itself, one below it
    ("5:memory:/kubepods/pod1\n", "35 25 0:30 /kubepods/pod1 /m rw - cgroup cgroup rw,memory\n", "/m"),
    ("5:memory:/podX/c\n", "35 25 0:30 /podX /m rw - cgroup cgroup rw,memory\n", "/m/c"),
    ("5:memory:/pod /c\n", "35 25 0:30 /pod\\040 /m rw - cgroup cgroup rw,memory\n", "/m/c"),
    ("5:memory:/c\n", "35 25 0:30 / /m\\12\\X12 rw - cgroup cgroup rw,memory\n", "/m\\12\\X12/c"),  # not escapes
])
def test_the_cgroup_whose_count_it_is(proc_cgroup, mounts, directory):
    counter = find_counter(proc_cgroup, mounts, has_events=lambda d: True)
    assert counter is not None and counter.directory == directory


@pytest.mark.parametrize("mount_point", ["/", "/cgX", "/cg\\040"])
def test_a_v2_mount_s_root_has_no_count_wherever_it_is_mounted(mount_point):
    """The walk up stops at the mount point, whatever it ends with (an `X`, a space), and
    at / for one mounted there."""
    mounts = f"30 25 0:26 / {mount_point} rw - cgroup2 cgroup2 rw\n"
    assert find_counter("0::/\n", mounts, has_events=lambda d: True) is None
    assert find_counter("0::/a\n", mounts, has_events=lambda d: d in ("/", "/cgX", "/cg ")) is None


def test_a_v2_cgroup_has_a_count_when_it_has_the_file(tmp_path):
    assert not has_events(str(tmp_path))
    (tmp_path / "memory.events").write_text("oom 0\noom_kill 0\n")
    assert has_events(str(tmp_path))


def test_a_file_past_64_kib_is_read_whole(tmp_path):
    """A mountinfo on a host with some 500 mounts is past 64 KiB: the memory mount's line
    after the cut was not read, and no count was found."""
    text = "".join(f"{i} 1 0:{i} / /mnt/m{i} rw - tmpfs tmpfs rw\n" for i in range(3000))
    text += "9999 1 0:99 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    (tmp_path / "mountinfo").write_text(text)
    assert len(text) > 65536
    assert read(str(tmp_path), "mountinfo") == text
