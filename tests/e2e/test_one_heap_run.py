"""`stoker run` and `stoker executor` ask for one C heap before their first thread
(`executor/cli/start.py`, `earlyfork.one_heap`): the supervisor's six threads allocate from
glibc's main heap, none has an arena of its own (five before: each one a mapping aligned to
the 64 MiB an arena may grow to; the executor's eight threads had 0.29 MiB of USS in theirs);
and that setting, which a fork keeps, stops at an exec: a task's own Python gets an arena
for each of its threads as ever. tests/integration/test_one_heap.py has the call itself."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_one_heap import CHILD, arenas_in
from tests.support.agent_sim import make_task_info
from tests.support.executor_e2e import EXECUTOR, HELLO, agent_for, document
from tests.support.shellwords import in_aurora, python_sh
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif("MALLOC_ARENA_MAX" in os.environ, reason="the environment sets the arenas already")]

CONFIG = """
counted = Process(name='counted', cmdline='{command} 2> {out} && sleep 300')
jobs = [Job(cluster='local', role='me', environment='test', name='heaps',
            task=Task(processes=[counted], resources=Resources(cpu=0.1, ram=16*MB, disk=1*MB)))]
"""


def arena_maps(pid: int) -> int:
    """The mappings of process `pid` that start at a multiple of 64 MiB (glibc's arenas)."""
    starts = [int(line.split("-", 1)[0], 16) for line in Path(f"/proc/{pid}/maps").read_text().splitlines()]
    return sum(1 for start in starts if start % (64 << 20) == 0)


def test_the_supervisors_threads_share_one_heap_and_the_tasks_do_not(tmp_path):
    child, out, sandbox = tmp_path / "arenas.py", tmp_path / "arenas.json", tmp_path / "sb"
    child.write_text(CHILD)
    config = tmp_path / "job.aurora"
    config.write_text(CONFIG.format(command=in_aurora(python_sh(child, REPO, "each")), out=out))  # "/a b/" too
    proc = StokerProcess(["run", str(config), "--sandbox", str(sandbox), "--root", str(tmp_path / "root")],
                         tmp_path)
    try:
        # (malloc_stats' last line: "max mmap bytes = N")
        wait_for(lambda: out.exists() and "max mmap bytes" in out.read_text() or proc.proc.poll() is not None, 30,
                 message="the task's count of its arenas")
        assert arenas_in(out.read_text()) >= 5, proc.stderr()  # the main one, and one for each of its four threads
        assert arena_maps(proc.pid) <= 1  # (one mapping may happen to start there)
    finally:
        proc.close()
        kill_leftovers(task_pids(sandbox))


@pytest.fixture
def agent(tmp_path):
    yield from agent_for(tmp_path)


def test_the_executors_threads_share_one_heap(agent, tmp_path):
    proc = agent.launch_executor(EXECUTOR, cwd=agent.sandbox)
    agent.wait_subscribed(timeout_secs=10)
    agent.launch(make_task_info("task-1", document(tmp_path, HELLO)))
    agent.wait_for_state("task-1", "TASK_RUNNING", timeout_secs=30)
    assert arena_maps(proc.pid) <= 1  # (8 before: the driver's, the supervisor's)
