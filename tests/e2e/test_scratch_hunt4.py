from __future__ import annotations
import os, signal, time, subprocess, sys, json
import pytest
from tests.e2e.test_service_discovery import write_job, root, readers, runs  # noqa
from tests.support.stoker_proc import task_pids, live, REPO
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(120)]


def test_kill9_status(zk, readers, runs, tmp_path):
    path = f"{root()}/www-data/prod/hello"
    run = runs(write_job(tmp_path, zk.ensemble, path, health=None, cmdline="sleep 60", announce=f"Announcer(zk_path='{path}')"), "--announce", zk.ensemble)
    reader = readers(zk.ensemble)
    wait_for(lambda: reader.members(path), 20, message="member")
    pids = task_pids(run.sandbox)
    time.sleep(1)
    os.kill(run.pid, signal.SIGKILL)
    wait_for(lambda: not reader.members(path), 20, message="member gone")
    wait_for(lambda: not live(pids), 20, message="task gone")
    st = subprocess.run([sys.executable, "-m", "executor", "status", str(run.sandbox)], cwd=REPO, capture_output=True, text=True)
    print(st.stdout, st.stderr)
    ps = subprocess.run([sys.executable, "-m", "executor", "ps"], cwd=REPO, capture_output=True, text=True)
    print(ps.stdout)
