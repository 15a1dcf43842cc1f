"""The `mesos-containerizer launch` command line a filesystem-image task's processes and shell
checks go through (executor/mesos/containerizer.py), against Thermos'
`wrap_with_mesos_containerizer`, and the executor's checks of the containerizer."""
from __future__ import annotations

import json
import os

import pytest

from executor.mesos.containerizer import ContainerizerLaunch
from executor.mesos.imagetask import ImageLaunchError, check_containerizer, executor_volumes
from executor.task.wiring import RunAs

LAUNCH = ContainerizerLaunch(path="/usr/libexec/mesos/mesos-containerizer", rootfs="/var/lib/mesos/run/1/taskfs",
                             working_directory="/mnt/mesos/sandbox", sandbox="/var/lib/mesos/run/1")
ROLE = RunAs(name="www-data", uid=33, gid=33)
COMMAND = {"shell": False, "value": "/bin/bash", "arguments": ["/bin/bash", "-c", "echo 'hi' && exec sleep 1"]}


def test_the_launch_info_form_is_thermos_one_json_flag_byte_for_byte():
    # Thermos' own test (thermos/core/test_process.py), its Python 2 dicts' key order included
    thermos = ContainerizerLaunch(path="/fake-mesos-containerizer", rootfs="/some/path/taskfs",
                                  working_directory="/sandbox", sandbox="/sandbox")
    assert thermos.argv("echo hello world", RunAs(name="None", uid=1, gid=1)) == [
        "/fake-mesos-containerizer", "launch", "--unshare_namespace_mnt",
        '--launch_info={"command": {"shell": false, "arguments": ["/bin/bash", "-c", "echo hello world"], '
        '"value": "/bin/bash"}, "working_directory": "/sandbox", "user": "None", "rootfs": "/some/path/taskfs"}']
    info = json.loads(LAUNCH.argv("echo 'hi' && exec sleep 1", ROLE)[3].removeprefix("--launch_info="))
    assert info == {"rootfs": "/var/lib/mesos/run/1/taskfs", "user": "www-data",
                    "working_directory": "/mnt/mesos/sandbox", "command": COMMAND}


def test_the_older_form_gives_each_field_its_flag_byte_for_byte():
    legacy = ContainerizerLaunch(path="/mc", rootfs="/some/path/taskfs", working_directory="/sandbox",
                                 sandbox="/sandbox", launch_info=False)
    assert legacy.argv("echo hello world", RunAs(name="None", uid=1, gid=1)) == [
        "/mc", "launch", "--unshare_namespace_mnt", "--working_directory=/sandbox", "--rootfs=/some/path/taskfs",
        "--user=None", '--command={"shell": false, "arguments": ["/bin/bash", "-c", "echo hello world"], '
        '"value": "/bin/bash"}']


def test_a_non_utf8_command_line_s_bytes_go_into_the_json_as_themselves():
    cmdline = os.fsdecode(b"echo \xff\xe9 \xc3\xa9 \\udcff")  # two stray bytes, one UTF-8 e-acute, a literal
    flag = os.fsencode(LAUNCH.argv(cmdline, ROLE)[3])
    assert b'"echo \xff\xe9 \\u00e9 \\\\udcff"' in flag  # no \udcXX escape (Mesos refuses one); UTF-8 as Thermos
    assert json.loads(os.fsdecode(flag).removeprefix("--launch_info="))["command"]["arguments"][2] == cmdline


def test_characters_beyond_ascii_are_escaped_as_thermos_json_dumps_escapes_them():
    # BMP ones as one \\uXXXX, the last of the BMP included; astral ones as a surrogate pair
    cmdline = "echo é \uffff \U00010000 😀 \U0010ffff"
    flag = LAUNCH.argv(cmdline, ROLE)[3]
    assert flag.isascii()
    assert json.dumps(cmdline) in flag
    assert '"echo \\u00e9 \\uffff \\ud800\\udc00 \\ud83d\\ude00 \\udbff\\udfff"' in flag


def test_a_command_given_no_user_runs_as_the_executor_s_own():
    info = json.loads(LAUNCH.argv("true", None)[3].removeprefix("--launch_info="))
    assert info["user"] == "root"


def test_the_sandbox_s_paths_are_given_as_the_task_sees_them_inside_the_image():
    env = {"HOME": "/var/lib/mesos/run/1", "MESOS_SANDBOX": "/var/lib/mesos/run/1",
           "MESOS_DIRECTORY": "/var/lib/mesos/run/1", "BASH_ENV": "/var/lib/mesos/run/1/.thermos_profile",
           "PATH": "/usr/bin:/bin", "STOKER_TASK_MARKER": "m"}
    assert LAUNCH.env(env) == {**env, "HOME": "/mnt/mesos/sandbox", "MESOS_SANDBOX": "/mnt/mesos/sandbox",
                               "BASH_ENV": "/mnt/mesos/sandbox/.thermos_profile"}
    # a path beside the sandbox, or a HOME elsewhere (--nosetuid-health-checks' root), is kept
    assert LAUNCH.env({"HOME": "/root", "BASH_ENV": "/var/lib/mesos/run/10/x"}) == {
        "HOME": "/root", "BASH_ENV": "/var/lib/mesos/run/10/x"}
    # a sandbox at the host's root holds every path
    at_root = ContainerizerLaunch(path="/mc", rootfs="/taskfs", working_directory="/mnt/mesos/sandbox", sandbox="/")
    assert at_root.env({"HOME": "/", "BASH_ENV": "/home/x/.thermos_profile"}) == {
        "HOME": "/mnt/mesos/sandbox", "BASH_ENV": "/mnt/mesos/sandbox/home/x/.thermos_profile"}


def test_a_containerizer_that_is_missing_or_not_executable_is_refused_in_thermos_words(tmp_path):
    missing = tmp_path / "none"
    with pytest.raises(ImageLaunchError) as caught:
        check_containerizer(str(missing))
    assert str(caught.value) == (f"Cannot launch task using a filesystem image: mesos_containerizer_path  "
                                 f"{missing} does not exist.")
    assert caught.value.reason is None  # not REASON_TASK_INVALID: the agent's setup is wrong, not the task
    with pytest.raises(ImageLaunchError, match=r"no mesos_containerizer_path was set\.$"):
        check_containerizer("")
    with pytest.raises(ImageLaunchError, match=r"  .* does not exist\.$"):
        check_containerizer(str(tmp_path))  # a directory is no file
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    with pytest.raises(ImageLaunchError, match=r"is not marked as executable\.$"):
        check_containerizer(str(plain))
    plain.chmod(0o755)
    check_containerizer(str(plain))


def test_the_volumes_mounted_into_the_image_are_the_executor_container_s():
    info = {"executor": {"container": {"volumes": [{"container_path": "/data", "host_path": "/srv/data"},
                                                   {"container_path": "taskfs", "image": {}}, {"mode": "RO"}]}}}
    assert executor_volumes(info) == ["/data", "taskfs"]  # taskfs is the image itself: never mounted into it
    assert executor_volumes({"executor": {}}) == [] == executor_volumes({})
    odd = [{"container_path": p} for p in (5, "", "/a\0b", ["/x"], "/data")]  # only a path the kernel can take
    assert executor_volumes({"executor": {"container": {"volumes": odd}}}) == ["/data"]


def test_a_sandbox_path_spelled_with_dot_dot_is_the_sandbox_inside_the_image():
    """MESOS_SANDBOX given as `/var/lib/mesos/x/../run/1` names the sandbox: HOME and
    MESOS_SANDBOX are the mount point inside the image, as for the plain spelling (they were
    left as host paths, which do not exist inside the image)."""
    env = {"HOME": "/var/lib/mesos/x/../run/1", "MESOS_SANDBOX": "/var/lib/mesos/run/./1/",
           "BASH_ENV": "/var/lib//mesos/run/1/sub/../.thermos_profile"}
    assert LAUNCH.env(env) == {"HOME": "/mnt/mesos/sandbox", "MESOS_SANDBOX": "/mnt/mesos/sandbox",
                               "BASH_ENV": "/mnt/mesos/sandbox/.thermos_profile"}
    # what leads out of the sandbox once resolved stays as it is
    assert LAUNCH.env({"HOME": "/var/lib/mesos/run/1/../10"}) == {"HOME": "/var/lib/mesos/run/1/../10"}
