"""Stoker's health checks when its supervisor has no file descriptor left (EMFILE: a low
`ulimit -n`, or one the task's logs and sockets filled). Found by `prlimit --nofile=N` on a
`stoker run` of three processes with a shell health check, N from 8 to 64: from 20 to 32 each
attempt was logged at ERROR with a traceback (`command_failed`: the pipe for the command's
output, made before the handled spawn; `health_check_internal_error`: the command runner's
module, loaded at the first command, could not be opened), and the attempt's reason read
"internal error: OSError: [Errno 24] Too many open files". Now: the attempt fails with a
reason that names the shortage, one line at most, no traceback; the next attempt with a
descriptor free runs as ever. Below 20 the task cannot start at all: one `stoker: error:`
line, exit 2, as before."""
from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from healthcheck.shell import CommandResult, ShellChecker
from tests.support.limits import KEEP_LOG_RECORDS

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

# A supervisor (cgroups off) in a child: a command with FREE descriptors left (`limits.
# no_descriptor_left`: 0, the output's pipe cannot be made; 2, the pipe is, what the start
# opens next is not), then one with the limit back. What each returned and
# every line logged, as a JSON line. The command runner's module is loaded first (a runner
# with no room to load it: the second test); `subprocess` is not (the start by Popen loads it).
COMMAND_CHILD = r"""
import json, logging, os, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import executor.procs.commands
from executor.procs.supervisor import Supervisor
from tests.support.limits import no_descriptor_left
KEEP
sup = Supervisor(sandbox=Path(sys.argv[1]), task_label="fd.0", env={"PATH": os.environ["PATH"]},
                 post=lambda event: None, cgroups="off")
out = {}
try:
    sup.start()
    with no_descriptor_left(int(sys.argv[3])):
        out["short"] = sup.run_command("exit 0", 5).error
    out["log"] = list(lines)
    out["after"] = sup.run_command("exit 0", 5).exit_code
finally:
    sup.close()
print(json.dumps(out), flush=True)
""".replace("KEEP", KEEP_LOG_RECORDS)


@pytest.mark.parametrize(("free", "error"), [
    (0, "no pipe for its output: Too many open files (EMFILE)"),
    (2, "cannot start /bin/bash for the health command: Too many open files (EMFILE)"),  # was: "in .../subprocess.py"
])
def test_a_health_command_with_no_descriptor_left_fails_naming_it_with_no_traceback(
        tmp_path: Path, free: int, error: str) -> None:
    from tests.support.stoker_proc import REPO

    done = subprocess.run([sys.executable, "-c", COMMAND_CHILD, str(tmp_path), str(REPO), str(free)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["short"] == error and out["after"] == 0, out
    assert [line for line in out["log"] if line[0] in ("ERROR", "CRITICAL") or line[2]] == [], out["log"]


@pytest.mark.parametrize(("code", "words"), [
    (errno.EMFILE, "Too many open files, EMFILE: the supervisor's limit, ulimit -n"),
    (errno.ENFILE, "Too many open files in system, ENFILE: the host's limit, fs.file-max"),
])
def test_a_check_whose_runner_has_no_descriptor_fails_with_one_line_saying_why(caplog, code: int, words: str):
    """The command runner's module loaded at the first command, with no descriptor to open
    it: before, "internal health check error: OSError: [Errno
    24] Too many open files: '.../commands.py'", at ERROR with a traceback, every attempt."""
    def no_descriptor(command: str, timeout_secs: float) -> CommandResult:
        raise OSError(code, os.strerror(code), "/x/executor/procs/commands.py")

    with caplog.at_level(logging.INFO, logger="healthcheck"):
        attempt = ShellChecker("x", 1.0, no_descriptor).check()
    assert attempt.reason == f"internal health check error: no file descriptor was left for the check ({words}, is reached)"
    assert [(r.levelname, r.exc_info, r.getMessage()) for r in caplog.records] == [
        ("WARNING", None, f'health_check_internal_error check="shell: x" error="{words.split(":")[0]}"')]


def test_another_os_error_of_a_check_is_a_bug_s_with_its_traceback(caplog):
    def refused(command: str, timeout_secs: float) -> CommandResult:
        raise PermissionError(errno.EACCES, "Permission denied")

    with caplog.at_level(logging.INFO, logger="healthcheck"):
        attempt = ShellChecker("x", 1.0, refused).check()
    assert attempt.reason == "internal health check error: PermissionError: [Errno 13] Permission denied"
    assert [(r.levelname, r.exc_info is not None) for r in caplog.records] == [("ERROR", True)]


# The task's owner not made for want of a descriptor (as `prlimit --nofile=13` made it: the
# supervisor's lock, its first file past the limit)
NO_OWNER = """
    def _patch(module):
        def owner_for(*args, **kwargs):
            import errno
            raise OSError(errno.EMFILE, "Too many open files")
        module.owner_for = owner_for
"""


@pytest.fixture
def agent(tmp_path):  # type: ignore[no-untyped-def]
    from tests.support.executor_e2e import agent_for

    yield from agent_for(tmp_path)


def test_a_task_whose_owner_had_no_descriptor_is_failed_to_the_agent(agent, tmp_path: Path) -> None:
    """Was: its TASK_FAILED never sent (the update was taken for the owner's, whose reporter
    had been made), and the executor waited for its acknowledgement until the agent's SIGKILL
    after SHUTDOWN's grace. Now TASK_FAILED naming the shortage, acknowledged, exit 2."""
    import os

    from tests.support.executor_e2e import HELLO, document, launch
    from tests.support.importhook import patched_at_load
    from tests.support.stoker_proc import REPO

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(patched_at_load("executor.task.wiring", NO_OWNER))
    launch(agent, document(tmp_path, HELLO), env_overrides={"PYTHONPATH": f"{hook}{os.pathsep}{REPO}"})
    failed = agent.wait_for_state("task-1", "TASK_FAILED", 10)
    assert agent.states("task-1") == ["TASK_FAILED"]
    assert failed.message == "the task could not go on: no file descriptor is left: Too many open files (ulimit -n)"
    assert agent.wait_exit(10) == 2


# A SUBSCRIBE with no descriptor left for its connection (a listener on 127.0.0.1 it never
# reaches): the transport's answer, as a JSON line
SUBSCRIBE_CHILD = r"""
import json, socket, sys
sys.path.insert(0, sys.argv[1])
from executor.mesos.transport import AgentTransport
from tests.support.limits import no_descriptor_left
listener = socket.create_server(("127.0.0.1", 0))
transport = AgentTransport(f"127.0.0.1:{listener.getsockname()[1]}")
with no_descriptor_left():
    result, stream = transport.subscribe(b"{}", 1.0, 1.0)
print(json.dumps({"no_room": result.no_room, "detail": result.detail, "stream": stream is not None}))
"""


def test_a_subscribe_with_no_descriptor_left_says_so_as_no_room() -> None:
    """What makes a first SUBSCRIBE's shortage end the executor at once (`ReconnectPolicy`:
    nothing it holds then can be let go), not a retry until the agent's registration timeout."""
    from tests.support.stoker_proc import REPO

    done = subprocess.run([sys.executable, "-c", SUBSCRIBE_CHILD, str(REPO)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"no_room": True, "stream": False,
                                       "detail": "no file descriptor is left: Too many open files (ulimit -n)"}
