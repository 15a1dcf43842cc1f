"""The test seccomp filter itself (`tests/support/seccomp.py`): a denied call gets the errno
its rule names, in the launched program and in what that program execs; every other call,
and the same call with another first argument, works."""
from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import seccomp

PROBE = """
import ctypes, errno, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def errname(result):
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
def pidfd():
    try:
        os.close(os.pidfd_open(os.getpid()))
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print("pidfd_open", pidfd())
print("close_range", errname(libc.syscall(436, 1000, 1000, 0)))
print("subreaper", errname(libc.prctl(36, 1, 0, 0, 0)))
print("get_dumpable", errname(libc.prctl(3, 0, 0, 0, 0)))
print("getppid", "ok" if os.getppid() > 0 else "no")
if sys.argv[1:] == ["parent"]:
    sys.stdout.flush()
    subprocess.run([sys.executable, sys.argv[0], "child"], check=True)
"""


def probe(tmp_path: Path, rules: list[str], child: bool = False) -> list[str]:
    """The probe's lines, run under `rules`; then (`child`) its child's, an exec of a fresh Python."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    result = subprocess.run([*seccomp.launcher(rules), sys.executable, str(script), "parent" if child else "alone"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture(autouse=True)
def _filter() -> None:
    seccomp.require()  # skips where no filter can be installed (another arch, no seccomp)


def test_a_denied_call_gets_its_errno_in_the_program_and_in_what_it_execs(tmp_path):
    lines = probe(tmp_path, ["pidfd_open=EPERM", "close_range=ENOSYS"], child=True)
    answers = ["pidfd_open EPERM", "close_range ENOSYS", "subreaper ok", "get_dumpable ok", "getppid ok"]
    assert lines == answers + answers  # the exec'd child is under the same filter


def test_a_rule_on_the_first_argument_denies_that_option_only(tmp_path):
    assert probe(tmp_path, ["prctl:36=EINVAL"]) == ["pidfd_open ok", "close_range ok", "subreaper EINVAL", "get_dumpable ok", "getppid ok"]


def test_a_profile_names_its_calls():
    assert seccomp.parse(["no-pidfds"]) == seccomp.PROFILES["no-pidfds"]
    assert ("pidfd_open", None, errno.ENOSYS) in seccomp.parse(["no-pidfds"])
    assert seccomp.parse(["prctl:36=EINVAL", "clone3=EPERM"]) == [("prctl", 36, errno.EINVAL),
                                                                  ("clone3", None, errno.EPERM)]


def test_the_program_is_refused_for_a_machine_without_a_table(monkeypatch):
    monkeypatch.setattr(seccomp.platform, "machine", lambda: "sparc64")
    with pytest.raises(seccomp.Unsupported, match="no system call table for sparc64"):
        seccomp.machine()
