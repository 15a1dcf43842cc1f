"""A filesystem-image task's seal against a hostile image (executor/mesos/imagefs.py,
mounttree.py): the image, its submounts (the agent's volumes, a layer, a tmpfs) and a mount
propagated in after the seal are nosuid,nodev, whichever way the seal is made (open_tree or
mount(2); mount_setattr, or each submount remounted), and each submount keeps its other
flags. What mounts runs in a child in a mount namespace of its own (`in_private_mounts`,
tests/support/imagemounts.py); the image's other hostile parts are test_image_hostile.py's."""
from __future__ import annotations

import os
import stat
import textwrap

import pytest

from tests.support import imagemounts, seccomp
from tests.support.imagemounts import in_private_mounts
from tests.support.rootfs import copy_rootfs

rootfs, no_mount_left = imagemounts.rootfs, imagemounts.no_mount_left  # the shared fixtures, this module's too


# A child's lines that seal the image (`image`) and define `as_nobody(command)`: the command
# run in it as nobody through the containerizer (tests/support/rootfs.py's stand-in)
AS_NOBODY = textwrap.dedent("""
    from executor.mesos.containerizer import ContainerizerLaunch
    from executor.task.wiring import RunAs
    from tests.support.rootfs import containerizer_script
    sandbox.mkdir()
    image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
    image.prepare(None)
    def as_nobody(command):
        wrap = ContainerizerLaunch(path=str(containerizer_script(tmp / "mc")), rootfs=str(taskfs),
                                   working_directory="/mnt/mesos/sandbox", sandbox=str(sandbox))
        nobody = RunAs(name="nobody", uid=65534, gid=65534)
        return subprocess.run(wrap.argv(command, nobody), capture_output=True, text=True)
""")


@pytest.mark.parametrize("by_path", [False, True], ids=["open_tree", "mount-by-path"])
def test_a_setuid_root_program_or_device_in_the_image_gives_the_task_no_privilege(rootfs, tmp_path, by_path):
    # (by_path: as on a kernel before 5.2, where there is no open_tree: the seal by mount(2))
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    suid = taskfs / "usr/bin/suid-id"
    suid.write_bytes((taskfs / "usr/bin/id").read_bytes())
    suid.chmod(0o4755)  # the image's author's setuid-root id
    os.mknod(taskfs / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a device open to all
    way = textwrap.dedent(f"""
        from executor.mesos import mounttree
        if {by_path}:
            mounttree.clone_onto = lambda fd: -1
    """)
    result = in_private_mounts(tmp_path, way + AS_NOBODY + textwrap.dedent("""
        ran = as_nobody("suid-id -u; echo x > /null")
        result = {"out": ran.stdout, "err": ran.stderr.splitlines()[-1], "mounts": mounted()}
        result["problems"] = image.release()
        result["after"] = mounted()
    """))
    assert result["out"] == "65534\n", result  # 0 when the image's setuid bit is honoured
    assert result["err"].endswith("/null: Permission denied"), result  # the device is no device
    assert result["mounts"] == [str(taskfs), str(taskfs / "mnt/mesos/sandbox")]  # the image's nosuid,nodev bind
    assert result["problems"] == [] and result["after"] == []


# The mounts inside the image when the executor starts (the agent's volumes, a layer, a
# tmpfs): a tmpfs with a setuid-root id and a device open to all, a tmpfs inside it with
# another setuid id, and the host's /bin bound in
INSIDE = ("opt/vol", "opt/vol/deeper", "opt/hostbin")
SUBMOUNTS = textwrap.dedent("""
    import ctypes, shutil, stat
    libc = ctypes.CDLL(None, use_errno=True)
    def mount(source, at, kind, flags):
        at.mkdir(parents=True, exist_ok=True)
        assert libc.mount(source, str(at).encode(), kind, flags, None) == 0, (at, ctypes.get_errno())
    def setuid_id(directory):
        shutil.copy(taskfs / "usr/bin/id", directory / "suid-id")
        (directory / "suid-id").chmod(0o4755)
    mount(b"none", taskfs / "opt/vol", b"tmpfs", 0)
    setuid_id(taskfs / "opt/vol")
    os.mknod(taskfs / "opt/vol/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    mount(b"none", taskfs / "opt/vol/deeper", b"tmpfs", 0)
    setuid_id(taskfs / "opt/vol/deeper")
    mount(b"/bin", taskfs / "opt/hostbin", None, 0x1000)  # MS_BIND
    def sealed():  # each submount's nosuid and nodev, as statvfs sees them
        return {p: [bool(os.statvfs(taskfs / p).f_flag & f) for f in (os.ST_NOSUID, os.ST_NODEV)] for p in PATHS}
""").replace("PATHS", repr(INSIDE))

# How the seal is made: open_tree, or mount(2) (a kernel before 5.2); mount_setattr, or
# where it is missing (a kernel before 5.12: its number made -1, which the kernel answers
# ENOSYS) each submount remounted
SEALS = {"open_tree": (False, False), "mount-by-path": (True, False),
         "open_tree-no-mount_setattr": (False, True), "mount-by-path-no-mount_setattr": (True, True)}
KERNEL = tuple(int(n) for n in os.uname().release.split("-")[0].split(".")[:2])


def seal_way(by_path: bool, no_setattr: bool) -> str:
    """The lines that make a child's seal take the way asked (`SEALS`), before its script;
    the test skipped where the kernel has no mount_setattr(2) for the way that uses it."""
    if not no_setattr and KERNEL < (5, 12):
        pytest.skip(f"mount_setattr(2) came with Linux 5.12; this kernel is {os.uname().release}")
    return textwrap.dedent(f"""
        from executor.mesos import mounttree
        if {by_path}:
            mounttree.clone_onto = lambda fd: -1
        if {no_setattr}:
            mounttree.SYS_MOUNT_SETATTR = -1
    """)


@pytest.mark.parametrize("by_path, no_setattr", SEALS.values(), ids=SEALS.keys())
def test_setuid_programs_and_devices_in_the_image_s_submounts_give_the_task_no_privilege(rootfs, tmp_path, by_path,
                                                                                       no_setattr):
    # (was: the seal's remount made the image's own mount nosuid,nodev, not the mounts the
    # recursive bind copied with it: the submount's setuid id ran as root)
    way = seal_way(by_path, no_setattr)
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, SUBMOUNTS + way + AS_NOBODY + textwrap.dedent("""
        ran = as_nobody("/opt/vol/suid-id -u; /opt/vol/deeper/suid-id -u; echo x > /opt/vol/null")
        result = {"out": ran.stdout, "err": ran.stderr.splitlines()[-1], "sealed": sealed(),
                  "note": [n for n in image.notes if "onto itself" in n]}
        result["problems"] = image.release()
        result["after"] = mounted()
    """))
    assert result["out"] == "65534\n65534\n", result  # 0 where a submount's setuid bit is honoured
    assert result["err"].endswith("/opt/vol/null: Permission denied"), result  # the device is no device
    assert result["sealed"] == {p: [True, True] for p in INSIDE}, result
    how = "mount(2), each of 4 mounts" if no_setattr else "mount_setattr, recursively"
    assert result["note"] == [f"bind-mounted the task filesystem {taskfs} onto itself nosuid,nodev, its submounts "
                              f"too ({how})"]
    assert result["problems"] == [] and result["after"] == [str(taskfs / p) for p in INSIDE]  # the test's own


def test_where_seccomp_denies_mount_setattr_each_submount_is_remounted_or_the_task_refused(rootfs, tmp_path):
    # A submount hidden by a mount on its own mount point is out of the task's reach; one
    # that cannot be reached by its path (a mount on a directory above it, not on its own
    # mount point) cannot be remounted by mount(2): the task is refused, naming it, rather
    # than run with it unsaid.
    seccomp.require()
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, SUBMOUNTS + textwrap.dedent("""
        import errno
        from tests.support import seccomp
        seccomp.install([("mount_setattr", None, errno.EPERM)])  # as a container runtime's profile may
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        result = {"sealed": sealed(), "note": [n for n in image.notes if "onto itself" in n]}
        result["problems"] = image.release()
        mount(b"none", taskfs / "opt/vol", b"tmpfs", 0)  # on opt/vol: it and opt/vol/deeper hidden, not refused
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        result["problems"] += image.release()
        libc.umount2(str(taskfs / "opt/vol").encode(), 0)
        mount(b"none", taskfs / "opt", b"tmpfs", 0)  # on opt: opt/vol's name leads elsewhere, its mount still there
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare(None)
        except ImageError as exc:
            result["error"] = str(exc)
        result["problems"] += image.release()
        libc.umount2(str(taskfs / "opt").encode(), 0)
        result["after"] = mounted()
    """))
    assert result["sealed"] == {p: [True, True] for p in INSIDE}, result
    assert result["note"] == [f"bind-mounted the task filesystem {taskfs} onto itself nosuid,nodev, its submounts "
                              "too (mount(2), each of 4 mounts)"]
    assert result["error"] == (f"Failed to make the task filesystem {taskfs} and every mount in it nosuid,nodev (the "
                               f"task is not run with a setuid program working): the mount at {taskfs}/opt/vol "
                               "is still relatime,rw: mount_setattr(2) is missing or denied here, and it could not be "
                               "reached by its path (No such file or directory)")
    assert result["problems"] == [] and result["after"] == [str(taskfs / p) for p in INSIDE]


# A submount's own flags, which the seal must keep: read-only stays read-only; a kernel
# before 5.10 has no nosymfollow
FLAGGED = {"ro": "ro", "noexec": "noexec", "noatime": "noatime", "strictatime": "strictatime",
           "nodiratime": "nodiratime"} | ({"nosymfollow": "nosymfollow"} if KERNEL >= (5, 10) else {})


@pytest.mark.parametrize("by_path, no_setattr", SEALS.values(), ids=SEALS.keys())
def test_the_seal_keeps_each_submount_s_other_flags(tmp_path, by_path, no_setattr):
    # (was: remounted one by one, a nosymfollow submount lost its nosymfollow)
    way = seal_way(by_path, no_setattr)
    result = in_private_mounts(tmp_path, way + textwrap.dedent("""
        def options():
            return {l.split()[4].rpartition("/")[2]: set(l.split()[5].split(",")) - {"nosuid", "nodev"}
                    for l in open("/proc/self/mountinfo") if str(taskfs) + "/" in l}
        with_bash()
        for name, flags in FLAGGED.items():
            (taskfs / name).mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", flags, "none", str(taskfs / name)], check=True)
        before = options()
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        after = options()
        sealed = {l.split()[4].rpartition("/")[2] for l in open("/proc/self/mountinfo")
                  if str(taskfs) + "/" in l and {"nosuid", "nodev"} <= set(l.split()[5].split(","))}
        result = {"lost": {n: sorted(before[n] - after[n]) for n in FLAGGED if before[n] - after[n]},
                  "sealed": sorted(sealed & set(FLAGGED))}
        result["problems"] = image.release()
    """).replace("FLAGGED", repr(FLAGGED)))
    assert result["lost"] == {}, result
    assert result["sealed"] == sorted(FLAGGED), result
    assert result["problems"] == [], result


@pytest.mark.parametrize("by_path, no_setattr", SEALS.values(), ids=SEALS.keys())
def test_a_mount_propagated_into_the_image_after_the_seal_is_no_way_past_it(tmp_path, by_path, no_setattr):
    # (was: the seal's copy stayed a peer (or slave) of the agent's taskfs mount: a mount the
    # agent made there after the seal, a volume resized in, arrived in the task's image with
    # its setuid bits and devices working; and the volumes bound in after the seal showed in
    # the agent's own taskfs)
    way = seal_way(by_path, no_setattr)
    result = in_private_mounts(tmp_path, way + textwrap.dedent("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        def mount(source, at, kind, flags):
            at.mkdir(parents=True, exist_ok=True)
            assert libc.mount(source, str(at).encode(), kind, flags, None) == 0, (at, ctypes.get_errno())
        agent = tmp / "agent"  # the agent's view of taskfs: a peer of the executor's
        mount(b"none", taskfs, b"tmpfs", 0)
        mount(None, taskfs, None, 1 << 20)  # MS_SHARED
        mount(str(taskfs).encode(), agent, None, 0x1000)  # MS_BIND
        with_bash()
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        mount(b"none", agent / "opt/late", b"tmpfs", 0)  # after the seal, before the task starts
        flags = os.statvfs(taskfs / "opt/late").f_flag
        result["late"] = [bool(flags & os.ST_NOSUID), bool(flags & os.ST_NODEV)]
        result["agent sees"] = sorted({os.path.relpath(p, agent) for p in mounted() if p.startswith(str(agent) + "/")})
        result["problems"] = image.release()
    """))
    assert result["late"] == [True, True], result  # nosuid,nodev, or not there at all
    assert result["agent sees"] == ["opt/late"], result  # not the sandbox the executor bound into the image
    assert result["problems"] == [], result

