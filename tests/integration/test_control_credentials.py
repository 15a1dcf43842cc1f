"""The control socket's peer credentials (executor/host/control.py, `peer`): struct ucred's
pid, uid and gid are three C ints (`pid_t` signed, `uid_t` and `gid_t` unsigned), read in
the machine's byte order."""
from __future__ import annotations

import os
import traceback
from pathlib import Path

from executor.events import ControlReply
from executor.host.control import ControlServer, ask, connect
from executor.host.controlwire import KillControl
from tests.support.users import as_user, needs_root, open_sandbox

HIGH_ID = 4294967294  # (uid_t)-2: nfsnobody of 64-bit RHEL; a user namespace's ids above 2**31 too


def _kill_own(stoker_dir_path: Path) -> str:
    """What a supervisor's control socket in `stoker_dir_path` answers its own process's
    `stoker kill` (or the traceback)."""
    try:
        stoker_dir = os.open(stoker_dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        server = ControlServer(stoker_dir, lambda request, reply: reply(
            ControlReply(ok=True, done=True, message="answered")))
        try:
            server.start()
            with connect(stoker_dir, str(stoker_dir_path), os.getpid()) as sock:
                return " ".join(reply.message for reply in ask(sock, KillControl(grace_secs=None)))
        finally:
            server.close()
            os.close(stoker_dir)
    except Exception:
        return traceback.format_exc()


@needs_root
def test_a_supervisor_whose_uid_is_above_2_31_answers_its_own_user() -> None:
    """The uid was read as a signed int (-2 for 4294967294), never equal to `os.geteuid()`:
    a supervisor running as such a user refused its own user's `stoker kill` and `restart`
    ("only the supervisor's user may control it")."""
    with open_sandbox() as sandbox:
        os.chown(sandbox, HIGH_ID, HIGH_ID)
        assert as_user(HIGH_ID, HIGH_ID, lambda: _kill_own(sandbox)) == "answered"


def test_the_supervisor_s_own_user_is_answered() -> None:
    """The same, as the test's own user (the pid read as the supervisor's own)."""
    with open_sandbox() as sandbox:
        assert _kill_own(sandbox) == "answered"
