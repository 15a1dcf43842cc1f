"""`stoker run` SIGKILLed at each step of its task cgroup's early life after an early start
(executor/procs/cgrouplife.py, `begin`): as its move into the cgroup begins, before the
early runs are moved; once they are in, before the supervisor loads; right after the
supervisor's own watchdog is forked (from inside the cgroup, which it leaves first); right
after the early watchdog retired. Each time the runs die and the cgroup goes: the early
watchdog, told the cgroup before it was made, or the supervisor's, kills and removes it.
Under cgroup v2 and the v1 freezer. Every process and cgroup a test learns of is gone at its
end, failed or not."""
from __future__ import annotations

import json
import os

import pytest

from tests.support import cgroups, pidnames
from tests.support.earlyjob import kept_then_hooked, write
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

# `_die(path)`: this process's children and /proc/self/cgroup written to `path`, then SIGKILL
DIE = """
    import json, signal, threading

    def _die(path):
        kids = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except FileNotFoundError:  # the thread ended since the listing
                continue
        with open("/proc/self/cgroup") as f:
            cg = f.read()
        with open(path, "w") as out:
            json.dump({"children": kids, "cgroup": cg}, out)
        os.kill(os.getpid(), signal.SIGKILL)
"""

# the step: (the module whose load patches it, the patch)
STEPS = {
    "moved_in_runs_not_yet": ("executor.procs.cgrouplife", """
    def _patch(module):
        real = module.take_in

        def take_in(cg, roots, *args, **kwargs):
            if threading.current_thread().name.startswith("stoker-cgroup-enter early"):
                _die(PATH)
            return real(cg, roots, *args, **kwargs)

        module.take_in = take_in
    """),
    "runs_in_supervisor_not_loaded": ("executor.local.run", """
    def _patch(module):
        sys.modules["executor.procs.cgrouplife"].wait_moved()
        _die(PATH)
    """),
    "supervisor_watchdog_forked": ("executor.procs.watchdog", """
    def _patch(module):
        real = module.start_watchdog

        def start_watchdog(*args, **kwargs):
            real(*args, **kwargs)
            _die(PATH)

        module.start_watchdog = start_watchdog
    """),
    "early_watchdog_retired": ("executor.procs.adoption", """
    def _patch(module):
        real = module.EarlyRuns.retire_watchdog

        def retire_watchdog(self):
            real(self)
            _die(PATH)

        module.EarlyRuns.retire_watchdog = retire_watchdog
    """),
}


def _task_cgroups(proc_cgroup: str) -> list[str]:
    """The `stoker-*` cgroup directories a /proc/PID/cgroup text names (v2, v1 freezer)."""
    found = []
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "/stoker-" in path and controllers in ("", "freezer"):
            found.append(("/sys/fs/cgroup/unified" if not controllers else "/sys/fs/cgroup/freezer") + path)
    return found


@pytest.mark.parametrize("kind", ["v2", "freezer"])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_stoker_run_killed_at_each_step_of_its_early_cgroup_leaves_no_process_and_no_cgroup(tmp_path, step, kind):
    setting = {"v2": "auto", "freezer": cgroups.FREEZER}[kind]
    if (why := cgroups.unavailable(setting)) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    env = {"STOKER_CGROUPS": setting}
    config = write(tmp_path, "Process(name='early', cmdline='exec sleep 1017')")
    module, patch = STEPS[step]
    died = tmp_path / "died.json"
    proc, sandbox = kept_then_hooked(tmp_path, config, patched_at_load(module, DIE + patch.replace("PATH", repr(str(died)))),
                                     env)
    seen: dict = {"children": [], "cgroup": ""}
    children: set[int] = set()
    try:
        assert proc.wait(30) == -9, proc.stderr()
        seen = json.loads(died.read_text())
        children = pidnames.as_of(died, seen["children"])  # written alive, just before the kill
        task = _task_cgroups(seen["cgroup"])
        assert task, seen  # it was in the task's cgroup as it died
        wait_for(lambda: not pidnames.live(children), 15,
                 message=f"the runs and watchdogs of {seen} gone")
        wait_for(lambda: not any(os.path.exists(d) for d in task), 15, message=f"{task} removed")
    finally:
        proc.close()
        kill_leftovers(children | task_pids(sandbox))
        for directory in _task_cgroups(seen["cgroup"]):
            cgroups.remove(directory)
        assert not live(children)
