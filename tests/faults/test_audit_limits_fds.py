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

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from healthcheck.shell import CommandResult, ShellChecker

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

# A supervisor (cgroups off) in a child: a command run, then one with no descriptor left
# (the soft limit set to the lowest free one), then one with the limit back. What each
# returned and every line logged, as a JSON line.
COMMAND_CHILD = r"""
import json, logging, os, resource, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from executor.procs.supervisor import Supervisor
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append([record.levelname, record.getMessage(), record.exc_info is not None])
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.INFO)
sup = Supervisor(sandbox=Path(sys.argv[1]), task_label="fd.0", env={"PATH": os.environ["PATH"]},
                 post=lambda event: None, cgroups="off")
out = {}
try:
    sup.start()
    out["before"] = sup.run_command("exit 0", 5).exit_code
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.dup(0)
    os.close(lowest)
    del lines[:]
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))  # none left
    try:
        out["short"] = sup.run_command("exit 0", 5).error
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    out["log"] = list(lines)
    out["after"] = sup.run_command("exit 0", 5).exit_code
finally:
    sup.close()
print(json.dumps(out), flush=True)
"""


def test_a_health_command_with_no_descriptor_left_fails_naming_it_with_no_traceback(tmp_path: Path) -> None:
    from tests.support.stoker_proc import REPO

    done = subprocess.run([sys.executable, "-c", COMMAND_CHILD, str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["before"] == 0 and out["after"] == 0, out
    assert out["short"] == "no pipe for its output: Too many open files (EMFILE)", out
    assert [line for line in out["log"] if line[0] in ("ERROR", "CRITICAL") or line[2]] == [], out["log"]


def test_a_check_whose_runner_has_no_descriptor_fails_with_one_line_saying_why(caplog):
    """The command runner's module loaded at the first command, with no descriptor to open
    it (an HTTP check's socket too): before, "internal health check error: OSError: [Errno
    24] Too many open files: '.../commands.py'", at ERROR with a traceback, every attempt."""
    import errno

    def no_descriptor(command: str, timeout_secs: float) -> CommandResult:
        raise OSError(errno.EMFILE, "Too many open files", "/x/executor/procs/commands.py")

    with caplog.at_level(logging.INFO, logger="healthcheck"):
        attempt = ShellChecker("x", 1.0, no_descriptor).check()
    assert attempt.reason == ("internal health check error: no file descriptor was left for the "
                              "check (Too many open files, EMFILE: the supervisor's limit, ulimit -n, is reached)")
    assert [(r.levelname, r.exc_info) for r in caplog.records] == [("WARNING", None)]
