"""The control socket's own file, as its supervisor makes it (executor/host/control.py,
`ControlServer.start`): bound, then made 0600. Between the two, whoever may write in
`.stoker` could swap the socket's name for a symlink; a chmod by that name followed it, so
a root supervisor made any file of the host 0600 (`/etc/passwd`: no user can log in). By
hand, a role's process swapping a symlink in a loop won in 15 binds of 2000 under a
`.stoker` the role had made first. Now the socket is made 0600 through an `O_PATH |
O_NOFOLLOW` descriptor of the name, refused when the name is no socket; and a supervisor
refuses a `.stoker` another user made (executor/host/sandbox.py, `open_stoker_dir`).

The swap has to land between the bind and the chmod. Rather than race for that window,
the supervisor's side runs traced (ptrace, as a debugger does): it stops as its `bind`
system call returns, the test swaps the name then, and lets it go on."""
from __future__ import annotations

import os
import platform
import stat
from pathlib import Path

import pytest

from executor.host.session import HostSession
from executor.procs.saferead import UnsafeEntry
from tests.support.syscall_stop import STOP_TO_BE_TRACED, SYS_BIND, traced
from tests.support.users import STRANGER, needs_root

pytestmark = [pytest.mark.timeout(30)]

# The server's side, as a supervisor's session starts it: it stops itself to be traced,
# then binds its control socket once and prints what came of it.
SERVER = """
import ctypes, os, signal, sys
from executor.host.control import ControlServer
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
""" + STOP_TO_BE_TRACED + """
server = ControlServer(fd, lambda request, replier: None)
try:
    server.start()
    print("started", flush=True)
except OSError as exc:
    print(f"refused: {exc}", flush=True)
server.close()
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="reads x86-64 registers")
def test_a_symlink_swapped_in_after_the_bind_is_not_followed_by_the_chmod(tmp_path: Path) -> None:
    stoker = tmp_path / ".stoker"
    stoker.mkdir()
    target = tmp_path / "outside"
    target.write_text("a file the supervisor must not change\n")
    target.chmod(0o644)
    (tmp_path / "swap").symlink_to(target)
    said = traced(SERVER, [str(stoker)], SYS_BIND, lambda: os.rename(tmp_path / "swap", stoker / "control.sock"),
                  returning=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644, said
    assert said == "refused: [Errno 40] control.sock is no longer the socket just bound", said
    assert (stoker / "control.sock").is_symlink()  # the planted link stays; nothing followed it


@needs_root
def test_a_supervisor_keeps_nothing_in_a_stoker_another_user_made(tmp_path: Path) -> None:
    """A role's process that makes `.stoker` in its sandbox before root's supervisor does
    (the sandbox is the role's: another instance of the job on the host can watch for it)
    owns every name in it: root's session refuses it, touching nothing in it."""
    sandbox = tmp_path / "sandbox"
    stoker = sandbox / ".stoker"
    stoker.mkdir(parents=True)
    target = tmp_path / "outside"
    target.write_text("a file the supervisor must not change\n")
    target.chmod(0o644)
    (stoker / "control.sock").symlink_to(target)
    for path in (sandbox, stoker, stoker / "control.sock"):
        os.chown(path, STRANGER, STRANGER, follow_symlinks=False)
    with pytest.raises(UnsafeEntry, match=rf"^{stoker} belongs to uid {STRANGER}, not to this supervisor's user "
                                          r"\(uid 0\): .* remove that directory \(or rename it\) and start again$"):
        HostSession.open(sandbox)
    assert HostSession._open == {}
    assert sorted(p.name for p in stoker.iterdir()) == ["control.sock"]
    assert (stoker / "control.sock").is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o644
