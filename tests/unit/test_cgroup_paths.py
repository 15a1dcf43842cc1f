"""Where a task's cgroup can go: /proc/self/cgroup and mountinfo text in, places out. Pure."""
from __future__ import annotations

import pytest

from executor.procs.cgroup_paths import (
    CgroupKind,
    Place,
    own_places,
    parse_mountinfo,
    parse_proc_cgroup,
    place_of,
)

V2, FREEZER = CgroupKind.V2, CgroupKind.V1_FREEZER

# A hybrid host (this project's CI): v1 controllers under /sys/fs/cgroup/NAME, v2 at unified.
HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = """\
8:pids:/
6:freezer:/mesos/abc
4:memory:/process_api/62a0
0::/
"""
# A pure v2 host under systemd, and a container whose cgroup namespace shows its own root.
V2_MOUNTS = "25 20 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
BIND_MOUNTS = ("50 40 0:23 /kubepods/pod1/c1 /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw\n"
               "51 40 0:24 /docker/x /mnt/my\\040cgroups rw - cgroup cgroup rw,cpu,freezer\n")


def test_a_hybrid_host_offers_the_v2_root_then_the_mesos_freezer_cgroup():
    assert own_places(HYBRID_SELF, HYBRID_MOUNTS) == [
        Place(V2, "/sys/fs/cgroup/unified", "/"),
        Place(FREEZER, "/sys/fs/cgroup/freezer/mesos/abc", "/mesos/abc"),
    ]


def test_a_systemd_service_on_a_pure_v2_host():
    places = own_places("0::/system.slice/stoker.service\n", V2_MOUNTS)
    assert places == [Place(V2, "/sys/fs/cgroup/system.slice/stoker.service",
                            "/system.slice/stoker.service")]
    assert places[0].child("stoker-1") == Place(
        V2, "/sys/fs/cgroup/system.slice/stoker.service/stoker-1",
        "/system.slice/stoker.service/stoker-1")


def test_a_mount_that_shows_a_subtree_is_followed_and_escapes_are_decoded():
    self_text = "0::/kubepods/pod1/c1/app\n3:cpu,freezer:/docker/x/y\n"
    assert own_places(self_text, BIND_MOUNTS) == [
        Place(V2, "/sys/fs/cgroup/app", "/kubepods/pod1/c1/app"),
        Place(FREEZER, "/mnt/my cgroups/y", "/docker/x/y"),
    ]


@pytest.mark.parametrize("self_text, why", [
    ("0::/elsewhere\n", "our cgroup is outside the subtree the mount shows"),
    ("0::/kubepods/pod1/c1 (deleted)\n", "our cgroup was removed"),
    ("1:cpu:/\n", "no v2 line and no freezer"),
    ("garbage\n\n0:/x\n", "malformed lines"),
])
def test_nothing_is_offered_where_no_mount_shows_our_cgroup(self_text, why):
    assert own_places(self_text, BIND_MOUNTS.splitlines()[0]) == [], why


def test_a_cgroup_outside_the_namespace_is_on_no_mount_made_inside_it():
    """Shown as `/../x` in a cgroup namespace: never `MOUNT/../x`; a host mount (its root
    shown with `..` too) still shows one below its root."""
    ns_mount = "66 46 0:34 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    host_mount = "56 50 0:34 /../.. /host rw - cgroup2 cgroup2 rw\n"
    assert own_places("0::/../x/stoker-1\n", ns_mount) == []
    assert own_places("0::/..\n", ns_mount) == []
    assert own_places("0::/../../x/stoker-1\n", host_mount + ns_mount) == [
        Place(V2, "/host/x/stoker-1", "/../../x/stoker-1")]


def test_mountinfo_lines_that_are_not_cgroups_or_are_damaged_are_skipped():
    text = HYBRID_MOUNTS + "garbage\n99 1 0:1 / /proc rw - proc proc rw\n1 2 3\n"
    kinds = [(m.mountpoint, m.kind) for m in parse_mountinfo(text)]
    assert kinds == [("/sys/fs/cgroup/cpu", None), ("/sys/fs/cgroup/memory", None),
                     ("/sys/fs/cgroup/freezer", FREEZER), ("/sys/fs/cgroup/pids", None),
                     ("/sys/fs/cgroup/unified", V2)]


def test_proc_cgroup_lines_by_kind():
    assert parse_proc_cgroup(HYBRID_SELF) == {FREEZER: "/mesos/abc", V2: "/"}
    assert parse_proc_cgroup("2:cpuacct,freezer:/a\n") == {FREEZER: "/a"}


def test_a_configured_parent_is_placed_in_the_mount_it_is_under():
    assert place_of("/sys/fs/cgroup/unified/delegated", HYBRID_MOUNTS) == \
        Place(V2, "/sys/fs/cgroup/unified/delegated", "/delegated")
    assert place_of("/sys/fs/cgroup/freezer", HYBRID_MOUNTS) == \
        Place(FREEZER, "/sys/fs/cgroup/freezer", "/")
    assert place_of("/sys/fs/cgroup/app", BIND_MOUNTS) == \
        Place(V2, "/sys/fs/cgroup/app", "/kubepods/pod1/c1/app")
    assert place_of("/sys/fs/cgroup/memory/x", HYBRID_MOUNTS) is None  # no freezer there
    assert place_of("/tmp/x", HYBRID_MOUNTS) is None


def test_damaged_mountinfo_lines_before_the_cgroup_mounts_are_passed_over_not_the_end():
    text = ("garbage\n"
            "1 2 3 - cgroup2 cgroup2 rw\n"  # four fields before the separator: damaged
            "77 1 0:40 / /sys/fs/cgroup/x rw -\n"  # nothing after it
            "78 1 0:41 / /srv/cg2 - cgroup2 none rw\n"  # five fields, the least a line has
            "79 1 0:42 / /srv/v1 rw - cgroup cgroup\n"  # a v1 mount without its options
            "80 1 0:43 / /srv/fake rw - none cgroup2 rw\n"  # the source, not the type
            "81 1 0:44 / /srv/bare rw - cgroup2\n"  # the type alone
            + HYBRID_MOUNTS)
    mounts = [(m.mountpoint, m.root, m.kind) for m in parse_mountinfo(text)]
    assert mounts[:3] == [("/srv/cg2", "/", V2), ("/srv/v1", "/", None), ("/srv/bare", "/", V2)]
    assert [m[0] for m in mounts[3:]] == ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/freezer",
                                          "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]


def test_proc_cgroup_lines_damaged_or_of_other_kinds_are_passed_over():
    text = "garbage\n0::relative\n1:name=systemd:/s\n0::/a:b:c\n5:cpu,freezer:/f:1\n3::/not-v2\n"
    assert parse_proc_cgroup(text) == {V2: "/a:b:c", FREEZER: "/f:1"}  # a path may hold colons


def test_a_deleted_cgroup_is_no_place_and_the_next_kind_is_still_offered():
    self_text = "6:freezer:/mesos/abc\n0::/gone (deleted)\n"
    assert own_places(self_text, HYBRID_MOUNTS) == [Place(FREEZER, "/sys/fs/cgroup/freezer/mesos/abc", "/mesos/abc")]
    assert own_places("0::/\n", V2_MOUNTS) == [Place(V2, "/sys/fs/cgroup", "/")]


def test_the_deepest_mount_a_directory_is_under_places_it():
    nested = ("60 1 0:50 / /cg rw - cgroup2 cgroup2 rw\n"
              "61 60 0:51 /inner /cg/sub rw - cgroup cgroup rw,freezer\n"
              "62 1 0:52 / /cg2 rw - cgroup2 cgroup2 rw\n")
    assert place_of("/cg/sub/x/", nested) == Place(FREEZER, "/cg/sub/x", "/inner/x")
    assert place_of("/cg/other", nested) == Place(V2, "/cg/other", "/other")
    assert place_of("/", "63 1 0:53 / / rw - cgroup2 cgroup2 rw\n") == Place(V2, "/", "/")


def test_a_cgroup_mount_hidden_by_a_later_one_on_its_mount_point_is_no_place():
    # a container's runtime mounting its own subtree over the host's hierarchy, then a
    # tmpfs over a v1 freezer mount: what each path shows is the later mount
    stacked = ("70 1 0:60 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
               "71 70 0:60 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
               "72 1 0:61 / /srv/freezer rw - cgroup cgroup rw,freezer\n"
               "73 72 0:62 / /srv/freezer rw - tmpfs tmpfs rw\n")
    assert [(m.mountpoint, m.root) for m in parse_mountinfo(stacked)] == [("/sys/fs/cgroup", "/kubepods/pod1")]
    assert place_of("/sys/fs/cgroup/app", stacked) == Place(V2, "/sys/fs/cgroup/app", "/kubepods/pod1/app")
    assert own_places("0::/kubepods/pod1/c\n6:freezer:/x\n", stacked) == [
        Place(V2, "/sys/fs/cgroup/c", "/kubepods/pod1/c")]
    assert place_of("/srv/freezer/x", stacked) is None


def test_a_cgroup_named_with_a_trailing_x_or_at_the_root_keeps_its_name():
    # (the names' trailing slashes are cut, never another character)
    assert own_places("0::/appX\n", V2_MOUNTS) == [Place(V2, "/sys/fs/cgroup/appX", "/appX")]
    assert own_places("0::/\n", "63 1 0:53 / / rw - cgroup2 cgroup2 rw\n") == [Place(V2, "/", "/")]
    assert place_of("/sys/fs/cgroup/appX", V2_MOUNTS) == Place(V2, "/sys/fs/cgroup/appX", "/appX")


def test_a_cgroup_mount_hidden_by_a_later_mount_on_a_directory_above_it_is_no_place():
    # a tmpfs mounted over /sys/fs after the hybrid layout (what a container runtime that
    # masks the host's hierarchy does), and a second hybrid layout mounted under it after
    covered = HYBRID_MOUNTS + ("90 23 0:70 / /sys/fs rw - tmpfs tmpfs rw\n"
                               "91 90 0:71 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    assert [(m.mountpoint, m.kind) for m in parse_mountinfo(covered)] == [("/sys/fs/cgroup/unified", V2)]
    assert place_of("/sys/fs/cgroup/freezer/mesos/x", covered) is None
    # a mount under a sibling whose name only begins alike, and one over /, hide nothing
    beside = HYBRID_MOUNTS + ("92 23 0:72 / /sys/fs/cgroup/freeze rw - tmpfs tmpfs rw\n"
                              "93 1 0:73 / / rw - tmpfs tmpfs rw\n")
    assert [m.mountpoint for m in parse_mountinfo(beside)] == [m.mountpoint for m in parse_mountinfo(HYBRID_MOUNTS)]
    assert len(parse_mountinfo(HYBRID_MOUNTS)) == 5
