"""`spawn.fork_exec`, the runs and commands Popen starts: as another user (its uid, gid,
groups and umask), as this process with a umask, and through an image task's wrapper (its
argv given the user, the environment as the wrapper sees it): each in its own session, in
its directory, with the descriptors given and none it inherited. Real children, which say
what they got."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from executor.procs.identity import RunAs
from executor.procs.spawn import fork_exec
from tests.support.users import needs_root, open_sandbox, throwaway_user

pytestmark = pytest.mark.timeout(30)

# What the child says it got, as one JSON line on its stdout.
SAY = ("import json, os; m = os.umask(0); "
       "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': sorted(os.getgroups()), "
       "'umask': m, 'session': os.getsid(0) == os.getpid(), 'cwd': os.getcwd(), 'env': dict(os.environ), "
       "'fds': sorted(int(f) for f in os.listdir('/proc/self/fd')), "
       "'stdin': os.readlink('/proc/self/fd/0'), 'stderr': os.readlink('/proc/self/fd/2')}))")
CMDLINE = f"exec /usr/bin/python3 -c \"{SAY}\""
ADDED = {"PWD", "SHLVL", "_", "LC_CTYPE"}  # what bash and Python's start add to an environment


def given(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ADDED}


def said(sandbox: Path, **how) -> dict:
    """Start CMDLINE by `fork_exec` in `sandbox`, stdin, stdout and stderr files
    there, with an inheritable descriptor open that it must not get; what the child said."""
    planted = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(planted, True)
    (sandbox / "in").write_bytes(b"")
    stdin = os.open(sandbox / "in", os.O_RDONLY)  # (not /dev/null: the test's own stdin may be that)
    out = os.open(sandbox / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    err = os.open(sandbox / "err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        child = fork_exec(CMDLINE, cwd=sandbox, env={"PATH": "/usr/bin:/bin", "MARK": "m1"},
                          stdin=stdin, stdout=out, stderr=err, **how)
        assert child.wait(20) == 0, (sandbox / "err").read_text()
    finally:
        for fd in (planted, stdin, out, err):
            os.close(fd)
    return json.loads((sandbox / "out").read_text())


def test_a_run_as_another_user_has_its_ids_groups_umask_and_session_and_nothing_inherited():
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root")
    with throwaway_user() as (user, group), open_sandbox() as sandbox:
        os.chmod(sandbox, 0o777)
        who = RunAs(user.pw_name, user.pw_uid, user.pw_gid, (user.pw_gid, group.gr_gid), umask=0o027)
        got = said(sandbox, run_as=who)
    assert (got["uid"], got["gid"]) == (user.pw_uid, user.pw_gid)
    assert got["groups"] == sorted({user.pw_gid, group.gr_gid})
    assert got["umask"] == 0o027 and got["session"] and got["cwd"] == str(sandbox)
    assert given(got["env"]) == {"PATH": "/usr/bin:/bin", "MARK": "m1"}
    assert got["fds"] == [0, 1, 2, 3] and got["stdin"] == str(sandbox / "in")  # (3: the listing's own)
    assert got["stderr"] == str(sandbox / "err")


@needs_root
def test_a_run_as_this_process_s_user_switches_nothing_and_takes_its_umask():
    with open_sandbox() as sandbox:
        me = RunAs("root", os.geteuid(), os.getegid(), tuple(os.getgroups()), umask=0o077)
        got = said(sandbox, run_as=me)
    assert (got["uid"], got["gid"]) == (os.geteuid(), os.getegid())
    assert got["groups"] == sorted(set(os.getgroups()))
    assert got["umask"] == 0o077 and got["session"] and got["fds"] == [0, 1, 2, 3]


def test_with_no_user_the_run_keeps_this_process_s_umask(tmp_path):
    old = os.umask(0o023)
    try:
        got = said(tmp_path)
    finally:
        os.umask(old)
    assert got["umask"] == 0o023 and got["session"] and got["cwd"] == str(tmp_path)


class Wrapper:
    """An image task's wrapper as `fork_exec` uses it: `env` runs the command line, with
    the user it was given noted; the environment gets a key as the wrapper's translation."""

    def __init__(self) -> None:
        self.users: list[RunAs | None] = []

    def argv(self, cmdline: str, user: RunAs | None) -> list[str]:
        self.users.append(user)
        return ["/usr/bin/env", "WRAPPED=1", "/bin/bash", "-c", cmdline]

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {**env, "SEEN": "inside"}


def test_a_wrapped_run_is_the_wrapper_s_given_the_user_with_the_environment_it_sees(tmp_path):
    wrap = Wrapper()
    who = RunAs("someone", 4242, 4242, (4242,), umask=0o007)
    old = os.umask(0o022)
    try:
        got = said(tmp_path, run_as=who, wrap=wrap)
    finally:
        os.umask(old)
    assert wrap.users == [who]
    assert got["uid"] == os.getuid()  # the wrapper switches, not the fork
    assert given(got["env"]) == {"PATH": "/usr/bin:/bin", "MARK": "m1", "SEEN": "inside", "WRAPPED": "1"}
    assert got["umask"] == 0o007 and got["session"] and got["cwd"] == str(tmp_path)
    assert got["fds"] == [0, 1, 2, 3] and got["stdin"] == str(tmp_path / "in") and got["stderr"] == str(tmp_path / "err")


def test_a_wrapped_run_with_no_user_keeps_this_process_s_umask(tmp_path):
    wrap = Wrapper()
    old = os.umask(0o026)
    try:
        got = said(tmp_path, wrap=wrap)
    finally:
        os.umask(old)
    assert wrap.users == [None] and got["umask"] == 0o026
