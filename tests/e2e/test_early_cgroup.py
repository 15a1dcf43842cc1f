"""The task's cgroup after an early start (executor/procs/cgrouplife.py, `begin`): made, and
`stoker run` and its early runs moved in, as soon as it has read its settings, before the
supervisor's own modules load (the move's wait for the kernel is then off the path to the
first RUNNING line); the early watchdog stays out. An early start given up takes `stoker
run` back out and its cgroup goes, so the task gets its own."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from executor.local import planfiles
from executor.procs.cgroup_paths import own_places
from tests.support import cgroups
from tests.support.earlyjob import early_run, kept_then_hooked, planned, write
from tests.support.importhook import patched_at_load
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

# What `stoker run` is in as `module` loads (`_where`): polled for up to 10 s until it is in a
# `stoker-*` cgroup, and meanwhile nothing goes on (the module's import is held); then its own
# /proc/PID/cgroup, and each child's with its command line, as JSON in `path`.
WHERE = """
    import json

    def _cgroup(pid):
        try:
            with open(f"/proc/{pid}/cgroup") as lines:
                return lines.read()
        except OSError:
            return ""

    def _children():
        found = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/children") as kids:
                    found += [int(x) for x in kids.read().split()]
            except FileNotFoundError:  # the thread ended since the listing
                continue
        return found

    def _where(path, settled):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not settled():
            time.sleep(0.005)
        seen = {"self": _cgroup(os.getpid()), "children": []}
        for pid in _children():
            with open(f"/proc/{pid}/cmdline", "rb") as argv:
                seen["children"].append([argv.read().decode(errors="replace"), _cgroup(pid)])
        with open(path, "a") as out:
            out.write(json.dumps(seen) + "\\n")
"""


def task_cgroups(proc_cgroup: str) -> list[str]:
    """The directories of the `stoker-*` cgroups a /proc/PID/cgroup text names."""
    mountinfo = Path("/proc/self/mountinfo").read_text()
    return [p.directory for p in own_places(proc_cgroup, mountinfo)
            if re.fullmatch(r"stoker-[0-9a-f]{32}", os.path.basename(p.directory))]


# `settled` for WHERE: this process in a `stoker-*` cgroup, and its children but the early
# watchdog (its early run) with it
SETTLED = """
    def _settled():
        mine = [line for line in _cgroup(os.getpid()).splitlines() if "/stoker-" in line]
        runs = 0
        for pid in _children():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as argv:
                    if b"STOKER_WATCHDOG_SCRIPT" in argv.read():
                        continue
            except OSError:
                continue
            runs += 1
            if any(line not in _cgroup(pid).splitlines() for line in mine):
                return False
        return bool(mine) and runs > 0
"""


def containment(stderr: str) -> str:
    """The cgroup the supervisor's `containment` line names ("" when none)."""
    match = re.search(r'mechanism=(\S+) how="(?:cgroup2|cgroup1-freezer) cgroup (\S+) ', stderr)
    if match is None:
        if "mechanism=fallback" in stderr:
            pytest.skip(f"stoker run has no cgroup here: {stderr[-500:]}")
        return ""
    return match[2]


@pytest.fixture(params=["v2", "freezer"])
def cgroup_env(request) -> dict[str, str]:
    """STOKER_CGROUPS for a cgroup2 task cgroup (`auto`) or a v1 freezer one (skipped, with
    the reason, where the host cannot make it)."""
    setting = {"v2": "auto", "freezer": cgroups.FREEZER}[request.param]
    if (why := cgroups.unavailable(setting)) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    return {"STOKER_CGROUPS": setting}


def test_a_rerun_is_in_its_task_cgroup_with_its_early_run_before_the_supervisor_loads(tmp_path, cgroup_env):
    # The import of the supervisor's modules (`executor.local.run`) is held until `stoker
    # run` and its early run are in a task cgroup: made and entered before that import,
    # they are there at once; made by the supervisor (as before), never.
    where = tmp_path / "where.jsonl"
    config = write(tmp_path, "Process(name='early', cmdline='exec sleep 1013')")
    hooked = patched_at_load("executor.local.run", WHERE + SETTLED + f"""
    def _patch(module):
        _where({str(where)!r}, _settled)
    """)
    proc, sandbox = kept_then_hooked(tmp_path, config, hooked, cgroup_env)
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=60)
        task = containment(proc.stderr())
        [seen] = [json.loads(line) for line in where.read_text().splitlines()]
        assert task_cgroups(seen["self"]) == [task], seen
        runs = [cg for argv, cg in seen["children"] if "STOKER_WATCHDOG_SCRIPT" not in argv]
        watchdogs = [cg for argv, cg in seen["children"] if "STOKER_WATCHDOG_SCRIPT" in argv]
        assert len(runs) == 1 and task_cgroups(runs[0]) == [task], seen
        assert len(watchdogs) == 1 and task_cgroups(watchdogs[0]) == [], seen  # the early watchdog: out
        assert re.findall(r"process_adopted task=\S+ process=(\S+) run=0", proc.stderr()) == ["early"]
    finally:
        proc.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))
    wait_for(lambda: not os.path.exists(task), 10, message=f"{task} removed")


def test_an_early_start_given_up_leaves_its_cgroup_which_goes_and_the_task_gets_its_own(tmp_path, cgroup_env):
    # The kept plan is damaged after its launch record was read: the run gives its early
    # start up (`RunStart.give_up_early`, held until `stoker run` is in the early start's
    # cgroup) and plans afresh. It leaves that cgroup, which goes with the early run in it;
    # the task's own is a new one (not "this process already keeps another task").
    where = tmp_path / "where.jsonl"
    config = write(tmp_path, "Process(name='early', cmdline='exec sleep 1014')")
    hooked = patched_at_load("executor.local.runstart", WHERE + SETTLED + f"""
    def _patch(module):
        real = module.RunStart.give_up_early

        def give_up_early(self, why):
            if self._early is None:  # the run's close: nothing to give up, nothing to record
                return real(self, why)
            _where({str(where)!r}, _settled)
            real(self, why)
            _where({str(where)!r}, lambda: True)

        module.RunStart.give_up_early = give_up_early
    """)
    planned(tmp_path, config, cgroup_env)
    [plan] = [tmp_path / "plans" / n for n in os.listdir(tmp_path / "plans") if n.endswith(planfiles.PLAN_SUFFIX)]
    plan.write_bytes(b"damaged")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hooked)
    proc, sandbox = early_run(tmp_path, config, "again", env={"PYTHONPATH": f"{hook}:{REPO}", **cgroup_env})
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=60)
        assert "early start given up: its plan is not the one kept" in proc.stderr()
        task = containment(proc.stderr())
        before, after = [json.loads(line) for line in where.read_text().splitlines()]
        [early] = task_cgroups(before["self"])
        assert task_cgroups(after["self"]) == [], after  # left at the give-up
        assert task and task != early, proc.stderr()
        wait_for(lambda: not os.path.exists(early), 10, message=f"the early start's cgroup {early} removed")
    finally:
        proc.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))


def test_an_http_check_after_an_early_start_loads_http_client_without_ssl_while_the_move_still_runs(tmp_path):
    # The move into the task's cgroup (on a thread) is held 0.5 s, so it still runs as the
    # plan says the job has a `health` port: `http.client` must still come without `ssl`
    # and OpenSSL (healthcheck/plainhttp.py does it only while the process has one thread;
    # the run waits for the move first). Was: `ssl` loaded, OpenSSL mapped, 2.6 MiB.
    held = tmp_path / "held"
    config = write(tmp_path, "Process(name='early', cmdline='exec sleep 1016 {{thermos.ports[health]}}')")
    hooked = patched_at_load("executor.procs.cgrouplife", f"""
    def _patch(module):
        real = module.EarlyCgroup._enter

        def _enter(self):
            open({str(held)!r}, "w").close()
            time.sleep(0.5)
            real(self)

        module.EarlyCgroup._enter = _enter
    """)
    # INFO: a DEBUG line before the plan starts the log spool's thread (executor/logs.py),
    # and with it `ssl` comes anyway, as the spool's docstring says
    proc, sandbox = kept_then_hooked(tmp_path, config, hooked, env={"STOKER_LOG_LEVEL": "INFO"})
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=60)
        assert held.exists(), "the move was not held: no early cgroup"
        mapped = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libssl" not in mapped and "_ssl" not in mapped, [m for m in mapped.splitlines() if "ssl" in m]
    finally:
        proc.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))


def test_more_early_runs_than_begin_moves_are_left_to_the_supervisor_which_moves_them(tmp_path, cgroup_env):
    # `begin` moves `stoker run` itself in, but not runs past EARLY_RUNS_MOVED (moved as their
    # shells start, they slowed them: every cgroup.procs write holds what each fork, exec and
    # exit on the host waits for): the supervisor's settle moves them, every one.
    from executor.procs.cgrouplife import EARLY_RUNS_MOVED

    where = tmp_path / "where.jsonl"
    count = EARLY_RUNS_MOVED + 1
    config = write(tmp_path, *(f"Process(name='p{i}', cmdline='exec sleep 1017')" for i in range(count)))
    hooked = patched_at_load("executor.local.run", WHERE + """
    def _self_in():
        return any("/stoker-" in line for line in _cgroup(os.getpid()).splitlines())
    """ + f"""
    def _patch(module):
        _where({str(where)!r}, _self_in)
    """)
    proc, sandbox = kept_then_hooked(tmp_path, config, hooked, cgroup_env)
    try:
        wait_for(lambda: proc.stdout().count("WAITING → RUNNING") >= count, 60, message=f"{count} runs RUNNING")
        task = containment(proc.stderr())
        [seen] = [json.loads(line) for line in where.read_text().splitlines()]
        assert task_cgroups(seen["self"]) == [task], seen
        runs = [cg for argv, cg in seen["children"] if "STOKER_WATCHDOG_SCRIPT" not in argv]
        assert len(runs) == count and all(task_cgroups(cg) == [] for cg in runs), seen  # not moved by begin
        pids = task_pids(sandbox)
        assert len(pids) >= count, pids
        for pid in pids:  # moved by the supervisor as it adopted them
            assert task_cgroups(Path(f"/proc/{pid}/cgroup").read_text()) == [task], pid
    finally:
        proc.sigterm_and_close()
        kill_leftovers(task_pids(sandbox))
