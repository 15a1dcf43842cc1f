"""A filesystem-image task's sandbox preparation (executor/mesos/imagefs.py, imageusers.py)
against a hostile image: the image is the job submitter's, the executor root. Nothing from
the image may run as root, nothing outside the image may be written, mounted or unmounted,
and no file in it may hang the executor; each refusal names what it refused.

What mounts runs in a child in a mount namespace of its own (`in_private_mounts`), with a
timeout, so that a regression can neither touch the host's mount table nor hang the suite."""
from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from executor.mesos.imagefs import ImageError, ImageSandbox
from tests.support import seccomp
from tests.support.rootfs import copy_rootfs, session_rootfs

REPO = Path(__file__).resolve().parents[2]
RAN = "ran-as-root"  # what an image's program leaves behind when it runs


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return session_rootfs(tmp_path_factory)


@pytest.fixture(autouse=True)
def no_mount_left(tmp_path):
    yield
    left = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(tmp_path) in line]
    assert not left, left


def in_private_mounts(tmp_path: Path, body: str) -> dict:
    """BODY (Python; `taskfs`, `sandbox` and `decoy` are tmp_path's directories of those
    names) run in a child in a private mount namespace; the dict it leaves in `result`."""
    code = textwrap.dedent("""
        import json, os, subprocess, sys
        from pathlib import Path
        from executor.mesos.imagefs import ImageError, ImageSandbox
        tmp = Path(sys.argv[1])
        taskfs, sandbox, decoy = tmp / "taskfs", tmp / "sandbox", tmp / "decoy"
        result = {}
        def mounted():
            return [l.split()[4] for l in open("/proc/self/mountinfo") if str(tmp) in l]
        def with_bash():  # what the executor asks of an image first
            (taskfs / "bin").mkdir(parents=True)
            (taskfs / "bin/bash").write_text("")
            (taskfs / "bin/bash").chmod(0o755)
    """) + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", code,
                           str(tmp_path)], capture_output=True, text=True, timeout=20, cwd=REPO, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def booby_trapped(rootfs: Path, dest: Path) -> Path:
    """A copy of ROOTFS whose programs a user tool or a check could run (nscd and sss_cache,
    which useradd and groupadd run to flush caches; id and getent, Thermos' checks) each
    leave RAN behind."""
    taskfs = copy_rootfs(rootfs, dest)
    (taskfs / "usr/sbin").mkdir(parents=True, exist_ok=True)
    for program in ("usr/sbin/nscd", "usr/sbin/sss_cache", "usr/bin/id", "usr/bin/getent"):
        path = taskfs / program
        path.unlink(missing_ok=True)
        path.write_text(f'#!/bin/bash\necho "$0 uid=$EUID" >> /{RAN}\n')
        path.chmod(0o755)
    return taskfs


def test_the_task_s_user_is_made_in_the_image_without_running_anything_from_it(rootfs, tmp_path):
    taskfs = booby_trapped(rootfs, tmp_path / "taskfs")
    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid).gr_name
    ImageSandbox(taskfs, tmp_path, "/mnt/mesos/sandbox", [])._create_user("nobody")
    assert not (taskfs / RAN).exists(), (taskfs / RAN).read_text()  # useradd -R ran the image's nscd as root
    etc = taskfs / "etc"
    assert etc.joinpath("passwd").read_text().endswith(
        f"\nnobody:x:{user.pw_uid}:{user.pw_gid}::/home/nobody:/bin/bash\n")
    assert etc.joinpath("group").read_text().endswith(f"\n{group}:x:{user.pw_gid}:\n")
    assert etc.joinpath("gshadow").read_text().endswith(f"\n{group}:!::\n")
    assert etc.joinpath("shadow").read_text().splitlines()[-1].startswith("nobody:!:")
    again = ImageSandbox(taskfs, tmp_path, "/mnt/mesos/sandbox", [])  # now the image has them: checked, kept
    again._create_user("nobody")
    assert not (taskfs / RAN).exists()  # Thermos' check would have run the image's id and getent as root
    assert etc.joinpath("passwd").read_text().count("\nnobody:") == 1
    assert again.notes == [f"group {group}({user.pw_gid}) already exists in the task's filesystem",
                           f"user nobody ({user.pw_uid}) already exists in the task's filesystem"]


def within(secs: float, work, unblock) -> BaseException | None:
    """What WORK raised (None: nothing) when it ends within SECS; fails the test (after
    `unblock()`, which lets a blocked WORK end) when it does not."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(secs)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail("the executor blocked on a file of the image")
    return caught[0] if caught else None


def test_fifos_and_oversized_files_in_the_image_s_etc_never_block_the_executor(rootfs, tmp_path):
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    hosts = taskfs / "etc/hosts"
    os.mkfifo(hosts)
    source = tmp_path / "hosts"
    source.write_text("127.0.0.1 localhost\n")
    image = ImageSandbox(taskfs, tmp_path, "/mnt/mesos/sandbox", [])

    def unblock() -> None:
        os.close(os.open(hosts, os.O_RDONLY | os.O_NONBLOCK))

    image._root = os.open(taskfs, os.O_PATH | os.O_CLOEXEC)  # what the seal holds: the files go in through it
    try:
        assert within(5, lambda: image._copy(source), unblock) is None
    finally:
        os.close(image._root)
    assert hosts.read_text() == "127.0.0.1 localhost\n"  # the FIFO replaced by the copy
    (taskfs / "etc/passwd").unlink()
    os.mkfifo(taskfs / "etc/passwd")
    refused = within(5, lambda: image._create_user("nobody"), lambda: None)
    assert isinstance(refused, ImageError) and str(refused) == "the image's /etc/passwd is not a regular file"
    (taskfs / "etc/passwd").unlink()
    with (taskfs / "etc/passwd").open("wb") as huge:
        huge.truncate((4 << 20) + 1)
    with pytest.raises(ImageError, match=r"^the image's /etc/passwd is larger than 4 MiB$"):
        image._create_user("nobody")


def test_a_mount_point_behind_a_symlink_out_of_the_image_is_refused(rootfs, tmp_path):
    result = in_private_mounts(tmp_path, """
        for d in (taskfs, sandbox, decoy):
            d.mkdir()
        with_bash()
        (taskfs / "mnt").symlink_to(decoy)  # an image whose /mnt leads to the host
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare(None)
        except ImageError as exc:
            result = {"error": str(exc), "problems": image.release(), "mounted": mounted()}
        result["decoy"] = os.listdir(decoy)
    """)
    assert result == {"error": f"cannot make the mount point {tmp_path}/taskfs/mnt/mesos/sandbox for "
                               f"{tmp_path}/sandbox: a symlink is on the way (a path inside the image is never "
                               "followed through one)", "problems": [], "mounted": [], "decoy": []}


def test_release_detaches_the_image_s_mounts_even_where_the_task_put_a_symlink(rootfs, tmp_path):
    result = in_private_mounts(tmp_path, """
        for d in (taskfs, sandbox, decoy / "sandbox"):
            d.mkdir(parents=True)
        with_bash()
        subprocess.run(["mount", "-t", "tmpfs", "decoy", str(decoy / "sandbox")], check=True)
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        # the task, whose image left /mnt writable, swaps the mount point's parent for a symlink
        os.rename(taskfs / "mnt/mesos", taskfs / "mnt/moved")
        os.symlink(decoy, taskfs / "mnt/mesos")
        result = {"problems": image.release(), "mounted": mounted()}
    """)
    assert result == {"problems": [], "mounted": [str(tmp_path / "decoy/sandbox")]}  # the host's mount stays


def test_mount_points_that_are_fifos_or_the_image_s_root_are_refused_before_any_mount(rootfs, tmp_path):
    result = in_private_mounts(tmp_path, """
        for d in (taskfs, sandbox):
            d.mkdir(parents=True)
        with_bash()
        os.mkfifo(taskfs / "app.conf")
        (sandbox / "app.conf").write_text("x")
        for volumes, mount_point in ((["app.conf"], "/m"), (["/"], "/m"), (["."], "/m"),
                                     ([], "/mnt/../../escape"), ([], "/")):
            image = ImageSandbox(taskfs, sandbox, mount_point, volumes)
            try:
                image.prepare(None)
            except ImageError as exc:
                image.release()
                result[" ".join([*volumes, mount_point])] = [str(exc), mounted()]
    """)
    base, sandbox = tmp_path / "taskfs", tmp_path / "sandbox"
    root = "names no mount point below the image's root"
    assert result == {  # a relative volume is the agent's, in the sandbox
        "app.conf /m": [f"cannot make the mount point {base}/app.conf for {sandbox}/app.conf: app.conf is there, "
                        "but not a regular file", []],
        "/ /m": [f"cannot make the mount point {base} for /: '/' {root}", []],
        ". /m": [f"cannot make the mount point {base} for {sandbox}: '.' {root}", []],
        "/mnt/../../escape": [f"cannot make the mount point {base}/mnt/../../escape for {sandbox}: "
                              "'/mnt/../../escape' has a '..' in it", []],
        "/": [f"cannot make the mount point {base} for {sandbox}: '/' {root}", []],
    }


@pytest.mark.parametrize("by_path", [False, True], ids=["open_tree", "mount-by-path"])
def test_a_setuid_root_program_or_device_in_the_image_gives_the_task_no_privilege(rootfs, tmp_path, by_path):
    # (by_path: as on a kernel before 5.2, where there is no open_tree: the seal by mount(2))
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    suid = taskfs / "usr/bin/suid-id"
    suid.write_bytes((taskfs / "usr/bin/id").read_bytes())
    suid.chmod(0o4755)  # the image's author's setuid-root id
    os.mknod(taskfs / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a device open to all
    result = in_private_mounts(tmp_path, """
        from executor.mesos import mounttree
        from executor.mesos.containerizer import ContainerizerLaunch
        from executor.task.wiring import RunAs
        from tests.support.rootfs import containerizer_script
        if BY_PATH:
            mounttree.clone_onto = lambda fd: -1
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        wrap = ContainerizerLaunch(path=str(containerizer_script(tmp / "mc")), rootfs=str(taskfs),
                                   working_directory="/mnt/mesos/sandbox", sandbox=str(sandbox))
        nobody = RunAs(name="nobody", uid=65534, gid=65534)
        ran = subprocess.run(wrap.argv("suid-id -u; echo x > /null", nobody), capture_output=True, text=True)
        result = {"out": ran.stdout, "err": ran.stderr.splitlines()[-1], "mounts": mounted()}
        result["problems"] = image.release()
        result["after"] = mounted()
    """.replace("BY_PATH", str(by_path)))
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
    result = in_private_mounts(tmp_path, SUBMOUNTS + way + textwrap.dedent("""
        from executor.mesos.containerizer import ContainerizerLaunch
        from executor.task.wiring import RunAs
        from tests.support.rootfs import containerizer_script
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        wrap = ContainerizerLaunch(path=str(containerizer_script(tmp / "mc")), rootfs=str(taskfs),
                                   working_directory="/mnt/mesos/sandbox", sandbox=str(sandbox))
        nobody = RunAs(name="nobody", uid=65534, gid=65534)
        ran = subprocess.run(wrap.argv("/opt/vol/suid-id -u; /opt/vol/deeper/suid-id -u; echo x > /opt/vol/null",
                                       nobody), capture_output=True, text=True)
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


# What the image's /usr/bin/bash is instead: a symlink taken as the containerizer's chroot takes
# it, never out of the image (an absolute one; one whose '..'s go past the image's root, to an
# executable beside the image; a loop, given up at the kernel's 40 hops)
NO_BASH = {"absolute": "/bin/sh-on-the-host", "past-the-root": "../../../outside/bash", "loop": "bash"}


@pytest.mark.parametrize("link", NO_BASH.values(), ids=NO_BASH.keys())
def test_an_image_without_bin_bash_fails_the_task_saying_so_before_anything_is_changed(rootfs, tmp_path, link):
    taskfs = copy_rootfs(rootfs, tmp_path / "taskfs")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/bash").write_bytes((taskfs / "usr/bin/bash").read_bytes())
    (tmp_path / "outside/bash").chmod(0o755)
    (taskfs / "usr/bin/bash").unlink()
    (taskfs / "usr/bin/bash").symlink_to(link)
    passwd = (taskfs / "etc/passwd").read_text()
    result = in_private_mounts(tmp_path, """
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare("nobody")
        except ImageError as exc:
            result = {"error": str(exc), "mounted": mounted()}
        image.release()
    """)
    assert result == {"error": "the task's image has no /bin/bash that can run (every process and shell health "
                               "check runs inside it as /bin/bash -c CMDLINE, as under Thermos)", "mounted": []}
    assert (taskfs / "etc/passwd").read_text() == passwd


def test_a_launch_that_fails_half_way_leaves_nothing_mounted(rootfs, tmp_path):
    result = in_private_mounts(tmp_path, r"""
        from executor.mesos.imagetask import ImageLaunchError, ImageSettings, start_image_task
        from executor.task.wiring import RunAs
        from tests.support.rootfs import containerizer_script
        for d in (taskfs, sandbox, tmp / "volume"):
            d.mkdir()
        with_bash()
        settings = ImageSettings(str(containerizer_script(tmp / "mc")), "/mnt/mesos/sandbox", create_user=False)
        try:  # the first volume is mounted, the second (from the task's JSON) is no file name
            start_image_task(settings, sandbox=sandbox, mesos_directory=str(tmp), run_as=RunAs(name="root", uid=0,
                             gid=0), volumes=[str(tmp / "volume"), "/x\ud800"])
        except ImageLaunchError as exc:
            result = {"error": str(exc), "mounted": mounted()}
    """)
    assert result == {"error": "Failed to initialize sandbox: cannot open /x\ud800 to mount it into the task "
                               "filesystem: 'utf-8' codec can't encode character '\\ud800' in position 2: "
                               "surrogates not allowed", "mounted": []}


def test_a_taskfs_that_is_a_symlink_in_the_sandbox_is_refused_and_what_it_names_is_untouched(rootfs, tmp_path):
    # A fetched archive can leave a `taskfs` symlink in the sandbox, the task owner's directory.
    # (was: the path's realpath taken as the image: the task's user was written into the
    # /etc/passwd it named, the host's /etc files copied there, the sandbox mounted into it)
    decoy = copy_rootfs(rootfs, tmp_path / "decoy")
    before = {name: (decoy / "etc" / name).read_bytes() for name in sorted(os.listdir(decoy / "etc"))}
    tree = sorted(str(path.relative_to(decoy)) for path in decoy.rglob("*"))  # (the template's: others use it)
    result = in_private_mounts(tmp_path, r"""
        from executor.mesos.imagetask import ImageLaunchError, ImageSettings, start_image_task
        from executor.task.wiring import RunAs
        from tests.support.rootfs import containerizer_script
        sandbox.mkdir()
        (sandbox / "taskfs").symlink_to(decoy)
        settings = ImageSettings(str(containerizer_script(tmp / "mc")), "/mnt/mesos/sandbox", create_user=True)
        try:
            start_image_task(settings, sandbox=sandbox, mesos_directory=None, run_as=RunAs(name="nobody",
                             uid=65534, gid=65534), volumes=[])
        except ImageLaunchError as exc:
            result = {"error": str(exc), "mounted": mounted()}
    """)
    assert result == {"error": f"Failed to initialize sandbox: the task's filesystem image is not at {tmp_path}/"
                               f"sandbox/taskfs: a symlink is there, to '{tmp_path}/decoy' (the agent mounts the image "
                               "there; a symlink in the sandbox is never followed)", "mounted": []}
    assert {name: (decoy / "etc" / name).read_bytes() for name in sorted(os.listdir(decoy / "etc"))} == before
    assert sorted(str(path.relative_to(decoy)) for path in decoy.rglob("*")) == tree  # no mount point made


SWAPPED = {
    None: "cannot look at the task filesystem {taskfs}",  # the seal is the first to open it
    "nobody": "Failed to create user in sandbox for task image: {taskfs}/etc",  # the user's files are
}


@pytest.mark.parametrize("user, failed", SWAPPED.items(), ids=["no-user", "user"])
def test_a_taskfs_swapped_for_a_symlink_after_the_check_is_never_followed(rootfs, tmp_path, user, failed):
    # The sandbox is the task owner's: `taskfs` can be renamed and a symlink put in its place
    # between the check and the mounts (here, deterministically, as the check of /bin/bash
    # returns). (was: `_seal` bind-mounted `taskfs` onto itself by its name, through the
    # symlink: what it named was mounted over, nosuid and nodev, and the mount was left behind,
    # its detach refusing the symlink; the user's files refused it as "Not a directory")
    copy_rootfs(rootfs, tmp_path / "taskfs")
    (tmp_path / "decoy").mkdir()
    result = in_private_mounts(tmp_path, rf"""
        from executor.mesos import imagefs
        checked = imagefs._runs_in
        def swapped(root, path):
            ran = checked(root, path)
            os.rename(taskfs, tmp / "moved")
            taskfs.symlink_to(decoy)
            return ran
        imagefs._runs_in = swapped
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare({user!r})
        except ImageError as exc:
            result = {{"error": str(exc), "mounted": mounted(), "decoy": os.listdir(decoy)}}
        result["left"] = image.release()
    """)
    assert result == {"error": failed.format(taskfs=tmp_path / "taskfs") + ": a symlink is on the way (a path "
                               "inside the image is never followed through one)", "mounted": [], "decoy": [],
                      "left": []}


def test_a_taskfs_symlink_s_target_is_quoted_in_the_refusal(tmp_path):
    # What the link names is the task owner's bytes: shown as repr shows them, so the message
    # stays one line, and no surrogate escape (`\udcff`, which Mesos' JSON parser refuses as
    # a lone surrogate) reaches the TASK_FAILED update. (was: put in as it was)
    (tmp_path / "sandbox").mkdir()
    os.symlink(b"/etc\n\xff", os.fsencode(tmp_path / "sandbox/taskfs"))
    with pytest.raises(ImageError) as caught:
        ImageSandbox(tmp_path / "sandbox/taskfs", tmp_path / "sandbox", "/mnt/mesos/sandbox", []).prepare(None)
    assert str(caught.value) == (f"the task's filesystem image is not at {tmp_path}/sandbox/taskfs: a symlink is "
                                 "there, to '/etc\\n\\xff' (the agent mounts the image there; a symlink in the "
                                 "sandbox is never followed)")


def test_a_volume_in_the_sandbox_that_is_a_symlink_is_never_mounted_through(rootfs, tmp_path):
    # A volume with a relative container path is the sandbox's entry of that name, which a
    # fetched archive can make a symlink to a host directory: its programs, setuid ones
    # included, would be mounted into the image past the nosuid seal, where the image's own
    # loader and /etc serve them. (was: `mount --rbind` of the path, through the symlink)
    copy_rootfs(rootfs, tmp_path / "taskfs")
    (tmp_path / "decoy").mkdir()
    (tmp_path / "decoy/secret").write_text("the host's\n")
    result = in_private_mounts(tmp_path, r"""
        sandbox.mkdir()
        (sandbox / "vol").symlink_to(decoy)
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", ["vol"])
        try:
            image.prepare(None)
        except ImageError as exc:
            result = {"error": str(exc), "inside": None}
        else:
            result = {"inside": os.listdir(taskfs / "vol")}
        result["left"] = image.release()
        result["mounted"] = mounted()
    """)
    assert result == {"error": f"cannot open {tmp_path}/sandbox/vol to mount it into the task filesystem: "
                               "a symlink is on the way (a path inside the image is never followed through one)",
                      "inside": None, "left": [], "mounted": []}


def test_volumes_in_the_sandbox_a_directory_and_a_file_are_mounted_at_their_paths(rootfs, tmp_path):
    copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, r"""
        (sandbox / "data/sub").mkdir(parents=True)
        (sandbox / "data/sub/seen").write_text("dir\n")
        (sandbox / "app.conf").write_text("file\n")
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", ["data/sub", "./app.conf"])
        image.prepare(None)
        result = {"dir": (taskfs / "data/sub/seen").read_text(), "file": (taskfs / "app.conf").read_text(),
                  "mounted": image.mounted[1:]}
        result["left"] = image.release()
    """)
    assert result == {"dir": "dir\n", "file": "file\n", "left": [],
                      "mounted": [f"{tmp_path}/taskfs/data/sub", f"{tmp_path}/taskfs/app.conf",
                                  f"{tmp_path}/taskfs/mnt/mesos/sandbox"]}


def test_release_detaches_the_sealed_image_even_where_taskfs_was_renamed_from_another_namespace(rootfs, tmp_path):
    # The sandbox is the task owner's: from a mount namespace where `taskfs` is no mount point
    # (the host's, another container's), its processes can rename it and put a symlink in its
    # place; the executor's mount of the image moves with the directory. (was: detached by
    # its name, which the symlink then held, so it was refused and the image stayed mounted)
    copy_rootfs(rootfs, tmp_path / "taskfs")
    (tmp_path / "decoy").mkdir()
    result = in_private_mounts(tmp_path, r"""
        sandbox.mkdir()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        image.prepare(None)
        subprocess.run(["nsenter", f"--mount=/proc/{os.getppid()}/ns/mnt", "--", "sh", "-c",
                        f"mv {taskfs} {tmp}/moved && ln -s {decoy} {taskfs}"], check=True, timeout=20)
        result = {"problems": image.release(), "mounted": mounted()}
    """)
    assert result == {"problems": [], "mounted": []}


def test_a_taskfs_swapped_for_a_directory_after_the_seal_gets_no_mount_nor_file_and_is_refused(rootfs, tmp_path):
    # From a mount namespace where `taskfs` is no mount point, the task owner's processes can
    # rename it once it is sealed and make a directory of their own in its place. (was: the
    # volumes and the sandbox were mounted, and the host's /etc files written, into that
    # directory, found again by name, and the image prepared, though the containerizer,
    # given the path, would enter the owner's unsealed directory with its /etc/passwd)
    copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, r"""
        sandbox.mkdir()
        sealed = ImageSandbox._seal
        def swapped(self):
            sealed(self)
            subprocess.run(["nsenter", f"--mount=/proc/{os.getppid()}/ns/mnt", "--", "sh", "-c",
                            f"mv {taskfs} {tmp}/moved && mkdir -p {taskfs}/etc {taskfs}/mnt"], check=True, timeout=20)
        ImageSandbox._seal = swapped
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare(None)
        except ImageError as exc:
            result = {"error": str(exc)}
        result["owner's"] = sorted(str(p.relative_to(taskfs)) for p in taskfs.rglob("*"))
        result["left"] = image.release()
        result["mounted"] = mounted()
    """)
    assert result == {"error": f"the task filesystem {tmp_path}/taskfs was replaced while it was prepared (the "
                               "containerizer, given its path, would enter another directory)",
                      "owner's": ["etc", "mnt"], "left": [], "mounted": []}


def test_a_taskfs_swapped_as_the_seal_is_made_is_refused_and_nothing_is_left_mounted(rootfs, tmp_path):
    # The task owner renames `taskfs` between its opening and the bind onto itself: the mount
    # goes where the descriptor leads, the renamed image. (was: refused, but the mount was
    # then found again by name, which led to the owner's directory: it stayed on the image,
    # in the executor's mount namespace, its release refused as "Invalid argument")
    copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, r"""
        sandbox.mkdir()
        opened = ImageSandbox._open_taskfs
        def swapped(self):  # the first time: as the seal opens it
            got = opened(self)
            if not (tmp / "moved").exists():
                os.rename(taskfs, tmp / "moved")
                (taskfs / "etc").mkdir(parents=True)
            return got
        ImageSandbox._open_taskfs = swapped
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare(None)
        except ImageError as exc:
            result = {"error": str(exc)}
        result["left"] = image.release()
        result["mounted"] = mounted()
        result["owner's"] = sorted(str(p.relative_to(taskfs)) for p in taskfs.rglob("*"))
    """)
    assert result == {"error": f"the task filesystem {tmp_path}/taskfs was replaced while it was prepared (the "
                               "containerizer, given its path, would enter another directory)",
                      "left": [], "mounted": [], "owner's": ["etc"]}


def test_an_executor_without_proc_fails_the_task_saying_so_before_anything_is_mounted(rootfs, tmp_path):
    # The image's mounts are named through /proc/self/fd (the seal's remount, every detach):
    # in a mount namespace whose /proc is not procfs, none of that can work. (was: the seal
    # attached by open_tree, its remount refused "No such file or directory", and its
    # detach too: the image stayed mounted in the executor's namespace)
    copy_rootfs(rootfs, tmp_path / "taskfs")
    result = in_private_mounts(tmp_path, r"""
        import ctypes
        sandbox.mkdir()
        table = open("/proc/self/mountinfo")  # read once /proc is covered
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mount(b"none", b"/proc", b"tmpfs", 0, None) == 0, ctypes.get_errno()
        image = ImageSandbox(taskfs, sandbox, "/mnt/mesos/sandbox", [])
        try:
            image.prepare("nobody")
        except ImageError as exc:
            result = {"error": str(exc)}
        result["left"] = image.release()
        result["mounted"] = [line.split()[4] for line in table if str(tmp) in line]
    """)
    assert result == {"error": f"cannot prepare the task filesystem {tmp_path}/taskfs: /proc/self/fd does not show "
                               "this process's descriptors (procfs is not mounted at /proc in the executor's mount "
                               "namespace), and the image's mounts are made and detached through them",
                      "left": [], "mounted": []}
    assert "nobody" not in (tmp_path / "taskfs/etc/passwd").read_text()  # nothing changed in the image
