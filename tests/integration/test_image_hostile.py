"""A filesystem-image task's sandbox preparation (executor/mesos/imagefs.py, imageusers.py)
against a hostile image: the image is the job submitter's, the executor root. Nothing from
the image may run as root, nothing outside the image may be written, mounted or unmounted,
and no file in it may hang the executor; each refusal names what it refused. Here: the
image's /etc files and the task's user, its mount points, its /bin/bash, the sandbox's
volumes, a launch that fails half way, an executor without /proc. The seal and the flags it
keeps are test_image_seal.py's; a `taskfs` the task's owner swaps, test_image_taskfs_swaps.py's.

What mounts runs in a child in a mount namespace of its own (`in_private_mounts`,
tests/support/imagemounts.py), with a timeout, so that a regression can neither touch the
host's mount table nor hang the suite."""
from __future__ import annotations

import grp
import os
import pwd
import threading
from pathlib import Path

import pytest

from executor.mesos.imagefs import ImageError, ImageSandbox
from tests.support import imagemounts
from tests.support.imagemounts import in_private_mounts
from tests.support.rootfs import copy_rootfs

rootfs, no_mount_left = imagemounts.rootfs, imagemounts.no_mount_left  # the shared fixtures, this module's too

RAN = "ran-as-root"  # what an image's program leaves behind when it runs


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
