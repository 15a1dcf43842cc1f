"""`stoker kill` and `restart` on a path another user controls: root's `stoker kill
~alice/sandbox` goes through directories alice may change while it looks, and must reach
no supervisor but the one of the sandbox it names: not through her symlink to another
user's sandbox (executor/host/operatorpath.py), nor through a socket name she swaps for a
symlink after the check (executor/host/controlclient.py, `connect`).

The swap has to land between the client's check and its connect. Rather than race for
that window, the client runs traced (ptrace, as a debugger does): it stops as it enters
its `connect` system call, the test swaps the name then, and lets it go on."""
from __future__ import annotations

import errno
import os
import platform
import socket
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.host.entry import FrontEnd
from executor.host.operatorpath import open_sandbox
from executor.host.session import HostSession
from tests.support.statuscli import supervisor_elsewhere
from tests.support.syscall_stop import STOP_TO_BE_TRACED, SYS_CONNECT, traced
from tests.support.users import STRANGER, needs_root

pytestmark = [pytest.mark.timeout(30),
              pytest.mark.skipif(platform.machine() != "x86_64", reason="reads x86-64 registers")]

# The client, as `stoker kill` runs it: it stops itself to be traced, then connects once
# and prints the path of the socket it reached (or the error).
CLIENT = """
import ctypes, os, signal, sys
from executor.host.controlclient import ControlUnavailable, connect
from executor.host.sandbox import open_stoker_dir
fd = open_stoker_dir(sys.argv[1])
""" + STOP_TO_BE_TRACED + """
try:
    print(connect(fd, sys.argv[1], None).getpeername(), flush=True)
except ControlUnavailable as exc:
    print(exc, flush=True)
"""


def test_a_symlink_swapped_in_after_the_check_leads_to_no_other_socket(tmp_path: Path) -> None:
    """The client checked with an lstat that the name was a socket, then connected by the
    name, which follows a symlink: a user swapping a symlink to another supervisor's socket
    in and out of their own sandbox's `.stoker` (renameat2 RENAME_EXCHANGE in a loop) had
    root's `stoker kill` of that sandbox kill that other task (1 try in 4, by hand). The
    client now connects to the inode it checked, whatever the name is by then."""
    sandbox = tmp_path / "sandbox"
    (sandbox / ".stoker").mkdir(parents=True)
    own, other = sandbox / ".stoker" / "control.sock", tmp_path / "other.sock"
    listeners = [_listen(own), _listen(other)]
    (tmp_path / "swap").symlink_to(other)
    try:
        reached = traced(CLIENT, [str(sandbox)], SYS_CONNECT, lambda: os.rename(tmp_path / "swap", own))
    finally:
        for listener in listeners:
            listener.close()
    assert reached == str(own)


@needs_root
def test_root_s_kill_does_not_follow_a_user_s_symlink_to_another_user_s_sandbox(tmp_path: Path, capsys) -> None:
    """`sudo stoker kill ~alice/sb`, where alice had made `sb` a symlink to bob's sandbox,
    killed bob's task. A symlink of another user's now leads only to a directory of that
    user's: root's own links, and alice's to her own sandboxes, still do."""
    sandbox = tmp_path / "bob-sandbox"
    sandbox.mkdir()
    os.chown(sandbox, STRANGER + 1, STRANGER + 1)  # bob
    alice_link, own_link = tmp_path / "alice-sb", tmp_path / "bobs-own-sb"
    for link, uid in ((alice_link, STRANGER), (own_link, STRANGER + 1)):
        link.symlink_to(sandbox)
        os.lchown(link, uid, uid)
    session = HostSession.open(sandbox, front_end=FrontEnd.RUN)  # bob's supervisor: no task yet
    try:
        assert main(["restart", str(alice_link), "web"]) == 1
        refused = capsys.readouterr().err
        assert main(["restart", str(own_link), "web"]) == 1
        reached = capsys.readouterr().err
    finally:
        session.close()
    assert f"{alice_link} is a symlink of uid {STRANGER} to a directory of uid {STRANGER + 1}" in refused, refused
    assert "no task is running" not in refused
    assert "no task is running" in reached, reached  # the supervisor's answer: it was reached


def _listen(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(4)  # the client's connect completes in the backlog, never accepted
    return listener


def test_the_operator_s_path_resolves_as_the_kernel_resolves_it(tmp_path: Path) -> None:
    """`open_sandbox` walks the path itself: relative and absolute links, `..` after a link
    (the link's target's parent, as the kernel has it), a relative path, and a loop."""
    real = tmp_path / "a" / "b" / "sandbox"
    real.mkdir(parents=True)
    (tmp_path / "rel").symlink_to("a/b")
    (tmp_path / "abs").symlink_to(tmp_path / "a")
    (tmp_path / "loop").symlink_to("loop")
    for path in (tmp_path / "rel" / "sandbox", tmp_path / "abs" / "b" / "sandbox",
                 tmp_path / "rel" / ".." / "b" / "." / "sandbox", Path(os.path.relpath(real))):
        fd = open_sandbox(path)
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(real)), path
        finally:
            os.close(fd)
    with pytest.raises(OSError) as loop:
        open_sandbox(tmp_path / "loop")
    assert loop.value.errno == errno.ELOOP
    (real / "file").touch()
    with pytest.raises(NotADirectoryError):
        open_sandbox(tmp_path / "rel" / "sandbox" / "file")


def test_a_task_id_two_running_tasks_have_names_neither(tmp_path: Path, capsys) -> None:
    """A task id is unique only within its framework: another framework's task on the host
    (another tenant's) may take the id of one that runs. `stoker status|kill|restart|tail
    ID` and the observer's /tasks/ID then showed, killed or restarted whichever registered
    later, the tenant's. Now they say that the id is two running tasks', naming the sandboxes;
    the observer offers each by its supervisor (it answered 404, hiding both), and shows
    either when the supervisor is named."""
    from config.registry import RegistrySettings
    from executor.observe.reader import Ambiguous, Reader

    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    session = HostSession.open(mine)
    session.task_started(task_id="dup", job_key="c/r/e/mine", label="mine.0", marker="m1", post=lambda e: None)
    try:
        with supervisor_elsewhere(theirs, "dup") as other:
            assert main(["status", "dup"]) == 2
            said = capsys.readouterr().err
            reader = Reader(RegistrySettings.from_env(os.environ))
            with pytest.raises(Ambiguous) as observed:
                reader.task("dup")
            shown = {c.supervisor_pid: reader.task("dup", c.supervisor).row["sandbox"]
                     for c in observed.value.choices}
    finally:
        session.close()
    both = f"task id 'dup' is the id of 2 running tasks, in {mine}, {theirs}"
    assert f"{both}: name the sandbox instead" in said, said
    # the observer takes no sandbox: it names each by its supervisor, and shows it so
    assert str(observed.value) == f"{both}: name one by its supervisor (`?supervisor=PID-START`)"
    assert shown == {os.getpid(): str(mine), other.pid: str(theirs)}


def test_task_ids_the_same_as_unicode_text_name_neither(tmp_path: Path, capsys) -> None:
    """`café` written composed (NFC) and decomposed (NFD) are two ids to the registry, and
    `stoker ps` shows them alike: a task of another framework that took the other form of a
    running task's id was not an ambiguity, and which one `stoker kill café` reached hung on
    how the operator's keyboard or paste wrote it. Two running tasks whose ids are the same
    as Unicode text (canonically equivalent) name neither now, as two with one id."""
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    session = HostSession.open(mine)
    session.task_started(task_id=composed, job_key="c/r/e/mine", label="mine.0", marker="m1", post=lambda e: None)
    try:
        with supervisor_elsewhere(theirs, decomposed):
            assert [main(["status", composed]), main(["status", decomposed])] == [2, 2]
            said = capsys.readouterr().err
            offered = _observed_choices(composed)
        assert main(["status", composed]) == 0  # the other gone: the id is one task's again
    finally:
        session.close()
    assert said.count(f"is the id of 2 running tasks (the same as Unicode text, written differently), "
                      f"in {mine}, {theirs}: name the sandbox instead") == 2, said
    # the observer's 300 links each by the id its entry is known as: the one asked for, in
    # the other form, named with the other's supervisor was a 404
    assert offered == {composed: (200, str(mine)), decomposed: (200, str(theirs))}


def _observed_choices(task_id: str) -> dict[str, tuple[int, str]]:
    """The observer's answer to each link of its 300 for `task_id`: (status, sandbox) by the
    id each choice is known as."""
    import json

    from config.registry import RegistrySettings
    from executor.observe.reader import Reader
    from executor.observe.server import ObserverApp

    app = ObserverApp(Reader(RegistrySettings.from_env(os.environ)), loopback=True)

    def get(url: str) -> tuple[int, dict]:
        path, _, query = url.partition("?")
        got: list[str] = []
        body = b"".join(app({"REQUEST_METHOD": "GET", "RAW_URI": url, "PATH_INFO": path, "QUERY_STRING": query,
                             "HTTP_HOST": "localhost"}, lambda status, headers: got.append(status)))
        return int(got[0].split()[0]), json.loads(body)
    from urllib.parse import quote
    status, doc = get(f"/api/tasks/{quote(task_id)}")
    assert status == 300, doc
    return {c["task_id"]: (s, d.get("task", {}).get("sandbox", d.get("error")))
            for c in doc["choices"] for s, d in [get(c["url"])]}
