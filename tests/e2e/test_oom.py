"""The kernel's OOM killer under `stoker run`: real memory cgroups (v1, as root), real greedy
processes. Each test makes its cgroup with a small limit and removes it, even on failure."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.support.memcg import memory_cgroup
from tests.support.stoker_proc import REPO, checkpoint_records, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(60)

# run 0 reads /dev/zero, one line that never ends, into memory: the OOM killer takes it
# within milliseconds; run 1's child does the same and is taken, and the run fails; run 2 is SIGKILLed by itself: the OOM killer's kill
# during run 1 is not its; run 3 exits 0
JOB = textwrap.dedent('''\
    greedy = Process(name = 'greedy', min_duration = 0, max_failures = 3, cmdline = """
      n=$(cat n 2>/dev/null || echo 0); echo $((n + 1)) > n
      case $n in
        0) exec tail /dev/zero;;
        1) tail /dev/zero; exit 1;;
        2) kill -9 $$;;
      esac
    """)
    task = Task(processes = [greedy], resources = Resources(cpu = 1, ram = 16*MB, disk = 16*MB))
    jobs = [Job(task = task, cluster = 'c', role = 'r', environment = 'test', name = 'greedy')]
    ''')


def run_in(cgroup, tmp_path, config, sandbox_name: str = "sandbox",
           **more_env: str) -> subprocess.CompletedProcess[str]:
    """`stoker run CONFIG` born in `cgroup` (a shell enters it and execs stoker), to its end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_")}
    env.update(PYTHONPATH=str(REPO), **more_env)
    sandbox = tmp_path / sandbox_name
    command = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    try:
        return subprocess.run(
            ["/bin/sh", "-c", command, str(cgroup), sys.executable, "-m", "executor", "run",
             str(config), "--sandbox", str(sandbox)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, start_new_session=True)
    finally:
        kill_leftovers(task_pids(sandbox))


def test_a_run_the_oom_killer_took_says_so_and_no_other_sigkill_does(tmp_path):
    config = tmp_path / "greedy.aurora"
    config.write_text(JOB)
    with memory_cgroup("stoker-oom-test", 64 << 20) as cgroup:
        done = run_in(cgroup, tmp_path, config)
        kills = re.search(r"^oom_kill (\d+)$", (cgroup / "memory.oom_control").read_text(), re.M)
    assert kills and int(kills.group(1)) == 2, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    said = f"killed by the kernel's OOM killer (memory cgroup /{cgroup.name}: limit 64 MiB)"
    assert f"RUNNING → WAITING  {said}; restarting (loss 1" in done.stdout, done.stdout
    ends = [r["reason"].split(";")[0] for r in checkpoint_records(tmp_path / "sandbox")
            if r.get("process") == "greedy" and r.get("to") == "WAITING"]
    assert ends == [said, "exit status 1", "killed by SIGKILL"]


def test_an_early_run_the_oom_killer_took_at_once_says_so(tmp_path):
    """A re-run of an unchanged config forks its first run before the supervisor is loaded
    (the early start): a greedy run is taken before the supervisor starts, and its kill
    counts from its own fork, not the supervisor's start (which would hold it already)."""
    config = tmp_path / "early.aurora"
    count = tmp_path / "count"
    config.write_text(textwrap.dedent(f'''\
        greedy = Process(name = 'greedy', min_duration = 0, max_failures = 2, cmdline = """
          n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}
          [ $((n % 2)) = 0 ] && exec tail /dev/zero; exit 0
        """)
        task = Task(processes = [greedy], resources = Resources(cpu = 1, ram = 16*MB, disk = 16*MB))
        jobs = [Job(task = task, cluster = 'c', role = 'r', environment = 'test', name = 'early')]
        '''))
    env = {"STOKER_PLAN_CACHE": str(tmp_path / "plans"), "STOKER_LOG_LEVEL": "DEBUG"}
    with memory_cgroup("stoker-oom-early", 96 << 20) as cgroup:  # the supervisor (20-30 MB as it loads) never the largest
        first = run_in(cgroup, tmp_path, config, "sandbox1", **env)
        again = run_in(cgroup, tmp_path, config, "sandbox2", **env)
    said = f"killed by the kernel's OOM killer (memory cgroup /{cgroup.name}: limit 96 MiB)"
    assert "process_adopted task=" in again.stderr, again.stderr  # its run 0 was early
    for done in (first, again):
        assert done.returncode == 0 and f"RUNNING → WAITING  {said}" in done.stdout, done.stdout
