"""`stoker run` as an ordinary user (no root: a throwaway user, through `setpriv`), with a
home that user owns but may not write (a read-only network home, a locked-down account):
the run works, and says why it keeps no plan. Was: the plan cache's directory could not be
made under that home, each run planned the job afresh (slower) and nothing said why, while
the registry's WARNING beside it did. Needs root to make the user; skipped elsewhere."""
from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support.stoker_proc import kill_leftovers, task_pids
from tests.support.users import needs_root, open_sandbox, stoker_as, throwaway_user

pytestmark = [needs_root, pytest.mark.timeout(120)]

ONCE = """
    say = Process(name='say', cmdline='echo hi')
    jobs = [Job(cluster='c', role='me', environment='e', name='once',
                task=Task(processes=[say], resources=Resources(cpu=0.1, ram=8*MB, disk=8*MB)))]
"""


def test_a_run_whose_home_is_not_writable_says_why_it_keeps_no_plan():
    with throwaway_user() as (user, _group), open_sandbox() as top:
        stoker = stoker_as(user.pw_uid, user.pw_gid)
        if stoker is None:
            pytest.skip("no Python an unprivileged user may run this checkout with")
        os.chmod(top, 0o755)
        home, work, registry = top / "home", top / "work", top / "registry"
        for directory in (home, work, registry):
            directory.mkdir(mode=0o700)
            os.chown(directory, user.pw_uid, user.pw_gid)
        (work / "once.aurora").write_text(textwrap.dedent(ONCE))
        home.chmod(0o555)  # the user's own, read-only
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "STOKER_ROOT": str(registry), "LANG": "C.UTF-8"}
        try:
            runs = [_run(stoker, work, env, f"sandbox{n}") for n in range(2)]
        finally:
            for n in range(2):
                kill_leftovers(task_pids(work / f"sandbox{n}"))
        for run in runs:
            assert run.returncode == 0, run.stderr
            unkept = [line for line in run.stderr.splitlines() if "plan_not_kept" in line]
            assert len(unkept) == 1, run.stderr
            assert f'reason="cannot make {home}/.cache/stoker/plans: Permission denied (EACCES)"' in unkept[0]
            assert "Traceback" not in run.stderr
        assert (work / "sandbox1/.logs/say/0/stdout").read_text() == "hi\n"
        assert os.listdir(home) == []


def _run(stoker: list[str], work: Path, env: dict[str, str], sandbox: str) -> subprocess.CompletedProcess:
    return subprocess.run([*stoker, "run", "once.aurora", "--sandbox", sandbox], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
