"""A filesystem-image task made ready to start: the containerizer checked, the sandbox prepared.

Owns `start_image_task(...)`, which `stoker executor` calls for an Aurora task whose container
is `Mesos(image = ...)` (docs/aurora.md §13) once it knows who the processes run as and
before the task's owner exists, as Thermos' executor does between its sandbox and its runner:

1. the containerizer (`--mesos-containerizer-path`) must be a file this process may execute,
   else the task fails with Thermos' words (`Cannot launch task using a filesystem image:
   mesos_containerizer_path  PATH does not exist.` / `... is not marked as executable.`);
2. the executor must be root (the image is prepared with root's tools and the
   containerizer enters it as root before switching to the user);
3. the containerizer is asked once which command line it takes (`launch_info_supported`, here:
   `mesos-containerizer launch` with no flag names `launch_info` in its error when it knows
   it; Thermos asks before every process), the ask ended by a SHUTDOWN;
4. the sandbox is prepared (`imagefs.ImageSandbox`: the user in the image unless
   `--no-create-user`, the volumes and the sandbox mounted in it, the host's name files
   copied).

It returns the `ImageTask`: the `ContainerizerLaunch` every run and shell check goes through
(`containerizer.py`) and `release()`, which detaches the mounts once the task is over. Every
failure is a `LaunchError` whose message goes out with TASK_FAILED (no REASON_TASK_INVALID:
the task is fine, the agent's setup is not). Loaded only for a filesystem-image task.
"""
from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from executor.mesos.containerizer import TASKFS, ContainerizerLaunch
from executor.mesos.imagefs import ImageError, ImageSandbox
from executor.mesos.launch import LaunchError
from executor.task.wiring import ExitBy, RunAs, current_user

CANNOT = "Cannot launch task using a filesystem image:"
TOOL_SECS = 60.0  # the containerizer's answer to `launch` with no flag comes within this
ANSWER_BYTES = 64 << 10  # and is no longer than this (Mesos' is one line)


class ImageLaunchError(LaunchError):
    """A filesystem-image task cannot start on this agent as it is set up."""

    reason = None


@attrs.frozen(slots=True)
class ImageSettings:
    containerizer: str  # --mesos-containerizer-path
    mount_point: str  # --sandbox-mount-point
    create_user: bool  # not --no-create-user


@attrs.define
class ImageTask:
    wrap: ContainerizerLaunch
    sandbox: ImageSandbox

    def release(self) -> tuple[int, list[str]]:
        """Detaches the image's mounts: how many there were, and the problems in words."""
        count = len(self.sandbox.mounted)
        return count, self.sandbox.release()


def check_containerizer(path: str | None) -> None:
    """Thermos' three checks (`DefaultThermosTaskRunnerProvider.from_assigned_task`), with
    its words, double space included. Raises ImageLaunchError."""
    if not path:
        raise ImageLaunchError(f"{CANNOT} no mesos_containerizer_path was set.")
    if not os.path.isfile(path):
        raise ImageLaunchError(f"{CANNOT} mesos_containerizer_path  {path} does not exist.")
    if not os.access(path, os.X_OK):
        raise ImageLaunchError(f"{CANNOT} mesos_containerizer_path  {path} is not marked as executable.")


def executor_volumes(task_info: Mapping[str, Any]) -> list[str]:
    """The container paths of the executor's container volumes (Thermos'
    `extract_mount_paths_from_task`): Aurora's scheduler puts the task's volumes there, and
    the image's at `taskfs`."""
    executor = task_info.get("executor")
    container = executor.get("container") if isinstance(executor, Mapping) else None
    volumes = container.get("volumes") if isinstance(container, Mapping) else None
    if not isinstance(volumes, list):
        return []
    paths = [v.get("container_path") for v in volumes if isinstance(v, Mapping)]
    return [p for p in paths if isinstance(p, str) and p and "\0" not in p]


def start_image_task(settings: ImageSettings, *, sandbox: Path, mesos_directory: str | None, run_as: RunAs,
                     volumes: list[str], exit_by: ExitBy | None = None) -> ImageTask:
    """Steps 1-4 above. `mesos_directory`: $MESOS_DIRECTORY (None: the sandbox), where the
    agent mounted the image at `taskfs`; `exit_by`: the executor's exit time, whose setting
    (SHUTDOWN) ends the containerizer's ask. Raises ImageLaunchError."""
    check_containerizer(settings.containerizer)
    if os.geteuid() != 0:
        raise ImageLaunchError(f"{CANNOT} the executor runs as {current_user().name}, not root: preparing the image (the "
                               "task's user in it, the sandbox mounted into it) and mesos-containerizer launch, "
                               "which enters it before switching to the task's user, need root")
    host_sandbox = os.path.abspath(sandbox)  # `..` resolved by name, as HOME is translated
    if os.path.realpath(host_sandbox) != os.path.realpath(sandbox):
        raise ImageLaunchError(f"{CANNOT} the sandbox {sandbox} is {os.path.realpath(sandbox)}, but read with its "
                               f"'..' resolved by name it is {host_sandbox}: a symbolic link before a '..' in it; "
                               "give the sandbox (MESOS_SANDBOX, MESOS_DIRECTORY) without '..'")
    # the directory's real path (the containerizer wants the rootfs as one), `taskfs` itself
    # not followed: a symlink there (a fetched archive's) is refused by `prepare`
    taskfs = Path(os.path.realpath(mesos_directory or host_sandbox)) / TASKFS
    image = ImageSandbox(taskfs, Path(host_sandbox), settings.mount_point, volumes)
    try:
        wrap = ContainerizerLaunch(path=settings.containerizer, rootfs=str(taskfs),
                                   working_directory=settings.mount_point, sandbox=host_sandbox,
                                   launch_info=launch_info_supported(settings.containerizer, exit_by))
        image.prepare(run_as.name if settings.create_user and run_as.uid != 0 else None)
    except ImageError as exc:
        image.release()
        raise ImageLaunchError(f"Failed to initialize sandbox: {exc}") from None
    except BaseException:  # whatever failed half way: nothing it mounted is left behind
        image.release()
        raise
    return ImageTask(wrap=wrap, sandbox=image)


def launch_info_supported(path: str, exit_by: ExitBy | None = None) -> bool:
    """Whether the containerizer takes `--launch_info` (Mesos >= 1.2): Thermos' question,
    `PATH launch` with no flag, whose error then names it. Raises ImageError, at once
    when EXIT_BY (the executor's exit time) is set: a SHUTDOWN needs no answer.

    The one child the executor waits for itself (`subprocess.Popen.wait`), which the reaper's
    rule forbids once a supervisor holds it (`executor/procs/reaper.py`: its thread would reap
    the child as an orphan of the task). It is asked before: an executor runs one task
    (`launchTask` refuses a second), and `_run_task` prepares the image before it makes the
    task's owner, whose supervisor takes the reaper; refused should that order ever change.
    Only stderr is read (`_answer`): the exit status, which a reaper left over from a
    supervisor gone (its thread ends at its next wake) could take, is never used."""
    from executor.task.wiring import reaper_in_use  # the executor's, loaded already

    if reaper_in_use():
        raise ImageError(f"cannot ask {path} which flags it takes: a task's supervisor already runs in this "
                         "executor, whose reaper would take the answer as its task's orphan")
    try:
        child = subprocess.Popen([path, "launch"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
    except OSError as exc:
        raise ImageError(f"cannot ask {path} which flags it takes ({path} launch): {exc}") from None
    try:
        return b"launch_info" in _answer(child, path, exit_by)
    finally:
        if child.returncode is None:
            child.kill()
        child.wait()
        child.stderr.close()  # type: ignore[union-attr]  # a pipe: stderr=PIPE


def _answer(child: subprocess.Popen[bytes], path: str, exit_by: ExitBy | None) -> bytes:
    """What CHILD (`PATH launch`) writes on stderr until it exits, its stderr reaches EOF
    or TOOL_SECS pass; at most ANSWER_BYTES of it (ImageError past them, or past the time,
    or once EXIT_BY is set: its eventfd wakes the wait). The wait ends at the child's own
    exit (its pidfd), what is in the pipe then read without blocking: a daemon it left
    behind holding stderr neither keeps the executor waiting nor, writing on, fills its
    memory (as `subprocess.run` would)."""
    asking = f"cannot ask {path} which flags it takes ({path} launch)"
    pipe = child.stderr.fileno()  # type: ignore[union-attr]  # a pipe: stderr=PIPE
    os.set_blocking(pipe, False)
    poller = select.poll()
    answer, deadline = bytearray(), time.monotonic() + TOOL_SECS
    pidfd = _pidfd(child.pid)
    try:
        with exit_by.waking() if exit_by is not None else contextlib.nullcontext(-1) as waking:
            for fd in (pipe, pidfd, waking):
                if fd >= 0:
                    poller.register(fd, select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                exited = bool(dict(poller.poll(max(0.0, left) * 1000)).get(pidfd))
                if not _read_into(answer, pipe):
                    return bytes(answer)  # every writer is gone
                if len(answer) > ANSWER_BYTES:
                    raise ImageError(f"{asking}: it wrote more than {ANSWER_BYTES >> 10} KiB on stderr")
                if exited:
                    return bytes(answer)
                if exit_by is not None and exit_by() is not None:
                    raise ImageError(f"{asking}: {exit_by.reason or 'the executor is shutting down'}")
                if left <= 0:
                    if child.poll() is not None:  # (no pidfd) it is gone, a daemon of its holding stderr
                        return bytes(answer)
                    raise ImageError(f"{asking}: no answer within {TOOL_SECS:g} seconds")
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _read_into(answer: bytearray, pipe: int) -> bool:
    """What PIPE (non-blocking) holds now added to ANSWER, up to one byte past ANSWER_BYTES;
    False at its EOF (every writer gone)."""
    while len(answer) <= ANSWER_BYTES:
        try:
            data = os.read(pipe, ANSWER_BYTES + 1 - len(answer))
        except BlockingIOError:
            return True
        if not data:
            return False
        answer += data
    return True


def _pidfd(pid: int) -> int:
    """A pidfd of PID, readable once it exits; -1 where pidfds are denied (a kernel before
    5.3, a seccomp profile): the wait then ends at stderr's EOF or TOOL_SECS only, when
    the answer is what was written if the containerizer is gone by then."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1
