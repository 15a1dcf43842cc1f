"""The early start (executor/cli/launch.py): a re-run of an unchanged config has its first
processes started before `stoker run` loads itself, and the supervisor adopts them; the run
is the run it would have been without (output, checkpoint, exit status), a supervisor
killed meanwhile leaves nothing, and whatever the supervisor would not have started is
killed before it counts."""
from __future__ import annotations

import marshal
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from executor.cli.main import main
from executor.local import planfiles
from tests.support import pidnames
from tests.support.earlyjob import HOLD_FOR_KILL, early_run, stdout_of, write
from tests.support.importhook import patched_at_load
from tests.support.shellwords import in_aurora, python_sh
from tests.support.stoker_proc import REPO, StokerProcess, checkpoint_records, kill_leftovers, live, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


# What the run's parent looks like when the run starts: one thread before the supervisor
# is loaded (the early start), several once it runs (its reaper, its control socket).
THREADS = "Process(name='first', cmdline='grep Threads: /proc/$PPID/status; echo {{thermos.task_id}}')"


@pytest.fixture
def stoker(tmp_path):
    """`stoker run CONFIG --sandbox NEW` (`early_run`: the test's plan cache, DEBUG logs);
    every process of every run is gone after the test."""
    cache = tmp_path / "plans"  # the plan cache early_run gives its runs
    sandboxes: list[Path] = []

    def start(config: Path, env: dict[str, str] | None = None) -> tuple[StokerProcess, Path]:
        proc, sandbox = early_run(tmp_path, config, f"sandbox{len(sandboxes)}", env)
        sandboxes.append(sandbox)
        return proc, sandbox

    def finish(config: Path, code: int = 0, env: dict[str, str] | None = None) -> tuple[StokerProcess, Path]:
        proc, sandbox = start(config, env)
        return proc.exited(code), sandbox

    start.finish = finish  # type: ignore[attr-defined]
    start.cache = cache  # type: ignore[attr-defined]
    yield start
    for sandbox in sandboxes:
        kill_leftovers(task_pids(sandbox))


def adopted(proc: StokerProcess) -> list[str]:
    return re.findall(r"process_adopted task=\S+ process=(\S+) run=0", proc.stderr())


def console(proc: StokerProcess) -> list[str]:
    """The console lines without their times, sandbox paths and pids."""
    lines = []
    for line in proc.stdout().splitlines():
        line = re.sub(r"^\d\d:\d\d:\d\d\.\d{3}\s+", "", line)
        lines.append(re.sub(r"sandbox\d+", "SANDBOX", line))
    return lines


def test_a_rerun_starts_its_first_process_before_stoker_loads_and_adopts_it(stoker, tmp_path):
    config = write(tmp_path, THREADS)
    first, sandbox1 = stoker.finish(config, env={"STOKER_EARLY_START": "off"})  # planned and kept
    again, sandbox2 = stoker.finish(config)
    assert adopted(first) == [] and adopted(again) == ["first"]
    threads1, task1 = stdout_of(sandbox1, "first").split("\n")[:2]
    threads2, task2 = stdout_of(sandbox2, "first").split("\n")[:2]
    assert threads2.split() == ["Threads:", "1"]  # started before the supervisor was loaded
    assert int(threads1.split()[1]) > 1  # started by the supervisor, as ever
    # the task id the early start chose is the attempt's, in the command and the checkpoint
    header = next(r for r in checkpoint_records(sandbox2) if r.get("kind") == "header")
    assert re.fullmatch(r"early-0-[0-9a-f]{8}", task2) and task2 != task1 and header["task_id"] == task2
    pid = int(re.search(r"process_adopted task=\S+ process=first run=0 pid=(\d+)", again.stderr())[1])
    assert task_pids(sandbox2) == {pid}


def test_the_run_is_the_one_it_would_be_without_an_early_start(stoker, tmp_path):
    config = write(tmp_path, "Process(name='a', cmdline='echo a')", "Process(name='b', cmdline='echo b')",
                   "Process(name='c', cmdline='echo c')")
    config.write_text(config.read_text().replace("finalization_wait=2)", "finalization_wait=2, "
                                                 "constraints=[Constraint(order=['a', 'c'])])")
                      .replace("name='early',", "name='early', container=Docker(image='python:3.11'),"))
    stoker.finish(config)  # planned, and kept
    early, sandbox1 = stoker.finish(config)
    plain, sandbox2 = stoker.finish(config, env={"STOKER_EARLY_START": "off"})
    assert sorted(adopted(early)) == ["a", "b"] and adopted(plain) == []  # `c` waits for `a`
    # the same lines, in the same order for each process and for the task (how the lines of
    # different processes interleave depends on when each exits)
    for who in ("a[0]", "b[0]", "c[0]", " task ", " supervisor ", " stoker "):
        assert [line for line in console(early) if who in line] == [line for line in console(plain) if who in line]
    assert sorted(console(early)) == sorted(console(plain))
    # the kept plan's run says what the planned one said of the job's container, once
    said = [line for line in console(early) if "is not used" in line]
    assert said == ["stoker run: warning: the job's container (Docker image python:3.11) is not used: its "
                    "processes run on this host, not in the image"]
    for process in "abc":
        assert stdout_of(sandbox1, process) == stdout_of(sandbox2, process) == f"{process}\n"

    def states(sandbox: Path, process: str) -> list[tuple[str, str]]:
        return [(r["from"], r["to"]) for r in checkpoint_records(sandbox)
                if r.get("kind") == "process" and r.get("process") == process and "to" in r]

    for process in "abc":
        assert states(sandbox1, process) == states(sandbox2, process) != []


def test_a_rerun_with_no_sandbox_argument_runs_in_the_one_sandbox_its_early_start_made(tmp_path):
    """Without --sandbox each run makes `sandbox-JOB-TIME-HEX` in its working directory: a
    re-run's early start makes the next one, and the run takes it (its name is read as this
    job's), not a second one beside it."""
    config = write(tmp_path, THREADS)
    work = tmp_path / "work"
    work.mkdir()
    env = {"STOKER_PLAN_CACHE": str(tmp_path / "plans"), "STOKER_LOG_LEVEL": "DEBUG"}
    runs = []
    try:
        for early in ("off", "on"):
            runs.append(StokerProcess(["run", str(config)], work, env={**env, "STOKER_EARLY_START": early}).exited(0))
    finally:
        for sandbox in work.glob("sandbox-*"):
            kill_leftovers(task_pids(sandbox))
    named = [Path(re.search(r"^stoker run: sandbox (\S+)$", run.stdout(), re.M)[1]) for run in runs]
    assert sorted(work.glob("sandbox-*")) == sorted(named) and named[0] != named[1]
    assert all(re.fullmatch(r"sandbox-early-\d{8}-\d{6}-[0-9a-f]{6}", path.name) for path in named)
    assert adopted(runs[0]) == [] and adopted(runs[1]) == ["first"]
    (threads1, task1), (threads2, task2) = (stdout_of(path, "first").split("\n")[:2] for path in named)
    assert int(threads1.split()[1]) > 1 and threads2.split() == ["Threads:", "1"]
    assert re.fullmatch(r"early-0-[0-9a-f]{8}", task1) and re.fullmatch(r"early-0-[0-9a-f]{8}", task2)
    assert task1 != task2


def test_a_process_that_exits_before_it_is_adopted_is_reported_with_its_status(stoker, tmp_path):
    config = write(tmp_path, "Process(name='quick', cmdline='exit 7')")
    stoker.finish(config, code=1)
    again, _ = stoker.finish(config, code=1)
    assert adopted(again) == ["quick"]
    assert re.search(r"quick\[0\]\s+RUNNING → FAILED\s+exit status 7;", again.stdout()), again.stdout()


def test_a_supervisor_killed_before_it_adopts_its_early_runs_leaves_nothing(stoker, tmp_path, capsys):
    # The run SIGKILLs its own parent at once: under an early start that is `stoker run`
    # still loading itself. Its watchdog must kill the run and the daemon it started.
    # `stoker status` of that sandbox (a lock file, logs, no checkpoint) says so: LOST.
    config = write(tmp_path, "Process(name='killer', cmdline='setsid sleep 1000 & echo $$ $! > pids; "
                             "kill -9 $PPID; exec sleep 1000')")
    for env in ({"STOKER_EARLY_START": "off"}, {}):  # planned (its supervisor killed after the fork), then
        proc, sandbox = stoker(config, env)  # the early start
        try:
            assert proc.wait() == -signal.SIGKILL
            pids = wait_for(lambda s=sandbox: pidnames.pid_file(s / "pids"), 10, message="the run's pids")
            wait_for(lambda p=pids: not live(p), 10, message=f"the task's processes {pids} killed")
        finally:
            proc.close()
            kill_leftovers(pids)
    assert "process_adopted" not in proc.stderr()
    assert not (sandbox / ".stoker" / "checkpoint.jsonl").exists()
    assert main(["status", str(sandbox)]) == 0
    assert capsys.readouterr().out.startswith(
        f"sandbox {sandbox}  state=LOST\n  no checkpoint in {sandbox}/.stoker: its supervisor died "
        "before it recorded anything, in its early start")


def test_an_edited_config_is_started_early_from_its_new_plan_never_the_kept_one(stoker, tmp_path):
    config = write(tmp_path, "Process(name='say', cmdline='echo before')")
    stoker.finish(config)
    config.write_text(config.read_text().replace("before", "after"))
    again, sandbox = stoker.finish(config)
    assert adopted(again) == ["say"] and stdout_of(sandbox, "say") == "after\n"
    assert "early_start_given_up" not in again.stderr()


def tamper(cache: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the one launch record in `cache` with `change` applied to it."""
    [path] = [cache / n for n in os.listdir(cache) if n.endswith(planfiles.START_SUFFIX)]
    record = marshal.loads(path.read_bytes())
    change(record)
    planfiles.write_private(str(path), marshal.dumps(record))


def test_a_plan_kept_by_a_stoker_installed_elsewhere_is_never_started_early(stoker, tmp_path):
    """Stoker upgraded into another place (a venv per build; a zipapp's next build, unpacked
    beside the last) leaves the old build's config package, unchanged, where the kept plan
    and its launch record name it. Its stamp still matched: the early start started the old
    plan's first runs, the supervisor, whose config package is another, killed them (one
    WARNING) and started them again: a first process ran twice."""
    runs = tmp_path / "runs"
    config = write(tmp_path, f"Process(name='say', cmdline='echo once >> {runs}')")
    stoker.finish(config)
    old = tmp_path / "old-build" / "config"
    shutil.copytree(REPO / "config", old, ignore=shutil.ignore_patterns("__pycache__"))

    def from_old(key: tuple) -> tuple:  # type: ignore[type-arg]
        roots = (str(old), *planfiles.code_roots()[1:])
        return (*key[:2], planfiles.code_stamp(roots), *key[3:]), roots

    def elsewhere(record: dict) -> None:
        record["key"], record["roots"] = from_old(record["key"])

    tamper(stoker.cache, elsewhere)
    [kept] = [stoker.cache / n for n in os.listdir(stoker.cache) if n.endswith(planfiles.PLAN_SUFFIX)]
    key, sources, plan = marshal.loads(kept.read_bytes())
    planfiles.write_private(str(kept), marshal.dumps((from_old(key)[0], sources, plan)))
    again, _ = stoker.finish(config)
    assert "early_start_given_up" not in again.stderr() and adopted(again) == []
    assert runs.read_text() == "once\n" * 2


def test_an_early_run_the_supervisor_would_not_start_is_killed_and_the_right_one_started(stoker, tmp_path):
    config = write(tmp_path, "Process(name='say', cmdline='echo right; exec sleep 1000')")
    proc, _ = stoker(config)  # planned and kept; stopped once running
    proc.wait_output("WAITING → RUNNING", timeout_secs=30)
    proc.sigterm_and_close()

    def wrong(record: dict) -> None:
        record["wave"] = [("say", "echo wrong > wrong; exec sleep 1000"),
                          ("ghost", "echo ghost > ghost; exec sleep 1000")]

    tamper(stoker.cache, wrong)
    proc, sandbox = stoker(config)
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
        wait_for(lambda: "reason=\"the task did not start it first\"" in proc.stderr(), 10,
                 message="the ghost run given up")
        err = proc.stderr()
        assert "early_run_killed task=early.0 process=say run=0" in err
        assert "early_run_killed task=early.0 process=ghost run=0" in err
        assert adopted(proc) == []
        wait_for(lambda: stdout_of(sandbox, "say") == "right\n", 10, message="the right command's output")
        assert (sandbox / "wrong").read_text() == (sandbox / "ghost").read_text().replace("ghost", "wrong")
        strays = pidnames.as_of(proc.stderr_path, [  # each named alive as it was given up
            int(p) for p in re.findall(r"early_run_killed task=\S+ process=\S+ run=0 pid=(\d+)", err)])
        wait_for(lambda: not live(strays), 10, message=f"the runs given up {strays} killed")
        assert task_pids(sandbox) - strays == task_pids(sandbox)  # never in the checkpoint
    finally:
        proc.sigterm_and_close()


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/unified") and not os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
                    reason="no cgroup2 hierarchy here")
def test_early_runs_and_what_they_started_join_the_task_cgroup(stoker, tmp_path):
    config = write(tmp_path, "Process(name='tree', cmdline='sleep 1000 & echo $! > child; exec sleep 1000')")
    for _ in range(2):  # started early from the plan made ahead, then from the kept one
        proc, sandbox = stoker(config)
        try:
            proc.wait_output("WAITING → RUNNING", timeout_secs=30)
            match = re.search(r'mechanism=cgroup2 how="cgroup2 cgroup (\S+) ', proc.stderr())
            if match is None:
                pytest.skip(f"stoker run has no cgroup here: {proc.stderr()[-500:]}")
            child = int(wait_for(lambda s=sandbox: (s / "child").exists() and (s / "child").read_text().strip(),
                                 10, message="the run's child"))
            # the console's RUNNING line comes at the decision, the pid's record after the fork
            [top] = wait_for(lambda s=sandbox: task_pids(s), 10, message="the run's pid in the checkpoint")
            for pid in (top, child):
                name = os.path.basename(match[1])
                wait_for(lambda p=pid, n=name: f"/{n}\n" in Path(f"/proc/{p}/cgroup").read_text(), 10,
                         message=f"process {pid} in {match[1]}")
        finally:
            proc.sigterm_and_close()
    assert adopted(proc) == ["tree"]


def test_a_service_run_again_at_once_keeps_its_port_starts_early_and_turns_healthy(stoker, tmp_path):
    # Its last connections linger in TIME_WAIT on the port: a server may listen there again.
    config = tmp_path / "service.aurora"
    config.write_text((REPO / "examples" / "http_service.aurora").read_text())
    outputs = []
    for _ in range(2):
        proc, _ = stoker(config)
        try:
            proc.wait_output("task             STARTING → RUNNING  healthy", timeout_secs=30)
        finally:
            proc.sigterm_and_close()
        outputs.append((proc.stdout(), proc.stderr()))
    ports = [re.findall(r"stoker run: ports health=(\d+)", out) for out, _ in outputs]
    assert len(ports[0]) == 1 and ports[0] == ports[1]
    assert adopted(proc) == ["web"]  # the second run's


@pytest.mark.parametrize(("cgroups", "stop"), [("auto", signal.SIGTERM), ("auto", signal.SIGKILL),
                                              ("off", signal.SIGTERM)])
def test_a_daemon_that_left_everything_while_stoker_loaded_is_still_the_tasks(stoker, tmp_path, cgroups, stop):
    # Before the supervisor exists, the run starts a daemon with no marker (env -i), a
    # session of its own, and a parent that is gone: it re-parents to `stoker run`, the
    # subreaper. It is the task's: in its cgroup (so the watchdog kills it after a SIGKILL of
    # Stoker), and not a foreign child (so it goes when the task stops). Without a cgroup, a
    # SIGKILLed Stoker cannot find such a process: a documented limit, not tested here.
    config = write(tmp_path, "Process(name='spawner', cmdline=\"( setsid env -i /bin/sh -c "
                             "'echo $$ > daemon; exec sleep 1000' & ); exec sleep 1000\")")
    daemons = []
    for _ in range(2):  # started early from the plan made ahead, then from the kept one
        proc, sandbox = stoker(config, env={"STOKER_CGROUPS": cgroups})
        try:
            proc.wait_output("WAITING → RUNNING", timeout_secs=30)
            daemons.append(wait_for(lambda s=sandbox: pidnames.pid_file(s / "daemon"), 10,
                                    message="the daemon's pid").pop())
        finally:
            proc.signal(stop)
            proc.wait()
            proc.close()
        try:
            wait_for(lambda d=daemons[-1]: not live([d]), 10, message=f"daemon {daemons[-1]} killed with the task")
        finally:
            kill_leftovers(daemons)
    assert adopted(proc) == ["spawner"]


def hold_give_up_until_lines(path: Path, count: int) -> str:
    """A sitecustomize holding the early start's give-up (`RunStart.give_up_early`) until
    `path` has `count` lines, 10 s at most: what the early run starts is there when it is
    given up, however slowly its shell runs (under load it could be given up before)."""
    return patched_at_load("executor.local.runstart", f"""
        def _patch(module):
            real = module.RunStart.give_up_early

            def give_up_early(self, why):
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not _lines():
                    time.sleep(0.005)
                return real(self, why)

            module.RunStart.give_up_early = give_up_early

        def _lines():
            try:
                with open({str(path)!r}) as lines:
                    return len(lines.read().split()) >= {count}
            except FileNotFoundError:
                return False
        """)


def test_an_early_start_given_up_takes_its_daemons_with_it(stoker, tmp_path):
    # The kept plan is damaged after its launch record was read: the run gives its early
    # start up before the supervisor exists, and plans afresh. What the early run started,
    # a daemon gone from its session, marker and parent included, is killed then.
    pids = tmp_path / "daemons"
    config = write(tmp_path, f"Process(name='spawner', cmdline=\"( setsid env -i /bin/sh -c "
                             f"'echo $$ >> {pids}; exec sleep 1000' & ); exec sleep 1000\")")
    proc, _ = stoker(config)  # planned and kept
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 1, 10, message="the daemon")
    finally:
        proc.sigterm_and_close()
    [plan] = [stoker.cache / n for n in os.listdir(stoker.cache) if n.endswith(planfiles.PLAN_SUFFIX)]
    plan.write_bytes(b"damaged")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hold_give_up_until_lines(pids, 2))
    proc, sandbox = stoker(config, env={"PYTHONPATH": f"{hook}:{REPO}"})
    try:
        proc.wait_output("WAITING → RUNNING", timeout_secs=30)
        wait_for(lambda: len(pids.read_text().split()) == 3, 10, message="the early daemon and the new one")
        (early_daemon,) = pidnames.as_of(pids, [int(pids.read_text().split()[1])])
        wait_for(lambda: not live([early_daemon]), 10, message=f"the given-up daemon {early_daemon} killed")
        assert "early start given up: its plan is not the one kept" in proc.stderr()
        assert adopted(proc) == []
    finally:
        proc.sigterm_and_close()
        every = pidnames.pid_file(pids)
        try:
            wait_for(lambda: not live(every), 10, message=f"the daemons {every} killed")
        finally:
            kill_leftovers(every)


def test_a_process_named_after_the_task_id_is_started_once_and_adopted(stoker, tmp_path):
    # The plan names it with the plan's stand-in task id; started early, it must carry the
    # attempt's id in its name as in its command, or the supervisor does not know it, kills
    # it and starts it again: the run's work done twice, and a log directory of a stranger.
    starts = tmp_path / "starts"
    config = write(tmp_path, f"Process(name='w_{{{{thermos.task_id}}}}', "
                             f"cmdline='echo {{{{thermos.task_id}}}} >> {starts}')")
    stoker.finish(config)
    again, sandbox = stoker.finish(config)
    later = starts.read_text().split()[1:]
    assert len(later) == 1, f"the second run started {len(later)} times"
    task = later[0]
    assert os.listdir(sandbox / ".logs") == [f"w_{task}"]
    assert adopted(again) == [f"w_{task}"] and "early_run_killed" not in again.stderr()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_ctrl_c_while_stoker_loads_stops_the_early_runs_gracefully(stoker, tmp_path, stop):
    # The run sends SIGINT to its parent as it starts: `stoker run` before its supervisor
    # runs (a first run's early start), or still loading itself (a re-run's). There
    # the Ctrl-C ended the command at once and the watchdog SIGKILLed the running service:
    # no SIGTERM, no final process, not a line. Now the stop waits for the supervisor, which
    # adopts the run and stops it as any running process: SIGTERM first. So do a SIGTERM and
    # a SIGHUP (their handler while loading, `start.WHILE_LOADING`, is put back after the run).
    config = write(tmp_path, "Process(name='serve', cmdline='trap \"echo termed > termed; exit 0\" TERM; "
                             f"kill -{stop.name[3:]} $PPID; while true; do sleep 0.05; done')",
                   "Process(name='last', cmdline='echo last > last', final=True)")
    for _ in range(2):  # started early from the plan made ahead, then from the kept one
        proc, sandbox = stoker.finish(config, code=128 + stop)
        assert (sandbox / "termed").exists() and (sandbox / "last").exists(), proc.stdout() + proc.stderr()
    assert adopted(proc) == ["serve"]
    assert re.search(r"serve\[0\]\s+RUNNING → KILLED\s+", proc.stdout()), proc.stdout()


def test_a_second_stop_signal_while_stoker_loads_still_kills_at_once(stoker, tmp_path):
    # As above, but a SIGTERM follows the SIGINT, and the run ignores SIGTERM: the second
    # signal kills every process at once and skips the final one, as once loaded.
    config = write(tmp_path, "Process(name='serve', cmdline='trap \"\" TERM; kill -INT $PPID; "
                             "sleep 0.01; kill -TERM $PPID; while true; do sleep 0.05; done')",
                   "Process(name='last', cmdline='echo last > last', final=True)")
    for _ in range(2):
        proc, sandbox = stoker.finish(config, code=130)
        assert not (sandbox / "last").exists(), proc.stdout() + proc.stderr()
        assert "second stop signal (SIGTERM)" in proc.stdout()
    assert adopted(proc) == ["serve"]


def test_a_stray_signal_while_stoker_loads_is_ignored_and_ctrl_backslash_stops_gracefully(stoker, tmp_path):
    # The run tells its parent it is ready (`kill -USR1 $PPID`) as it starts, then sends it
    # Ctrl-\'s SIGQUIT. Started early, its parent was `stoker run` still loading itself:
    # before, the SIGUSR1 ended the command on the spot (exit 138, not a line), or the SIGQUIT
    # dumped core, and the watchdog SIGKILLed the service: no SIGTERM, no final process. Now
    # both wait for the supervisor, as a Ctrl-C does: the stray is ignored with its line,
    # the SIGQUIT is a graceful stop.
    config = write(tmp_path, "Process(name='serve', cmdline='trap \"echo termed > termed; exit 0\" TERM; "
                             "kill -USR1 $PPID; kill -RTMIN+3 $PPID; kill -TRAP $PPID; kill -QUIT $PPID; "
                             "while true; do sleep 0.05; done')",
                   "Process(name='last', cmdline='echo last > last', final=True)")
    for _ in range(2):  # started early from the plan made ahead, then from the kept one
        proc, sandbox = stoker.finish(config, code=131)
        assert (sandbox / "termed").exists() and (sandbox / "last").exists(), proc.stdout() + proc.stderr()
        for name in ("SIGUSR1", "SIGRTMIN+3", "SIGTRAP"):
            assert f"signal_ignored signal={name}" in proc.stderr()
    assert adopted(proc) == ["serve"]



def test_an_operator_kill_while_stoker_loads_keeps_its_grace(stoker, tmp_path):
    # `stoker kill SANDBOX --grace 0.1` from a run started early, landing as `stoker run`
    # still prepared its task (no owner yet): the stop that followed took the task's own
    # grace (finalization_wait, 2 s here) for the run that ignores SIGTERM, not the
    # operator's. Now the operator's grace holds, as once the task runs.

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_FOR_KILL)
    kill = f"{in_aurora(python_sh('-m', 'executor'))} kill \"$PWD\" --grace 0.1 > killed 2>&1"
    config = write(tmp_path, f"Process(name='serve', cmdline='trap \"\" TERM; {kill} & "
                             "while true; do sleep 0.05; done')")
    stoker.finish(config)  # planned: the plan is kept, the next run starts early
    proc, sandbox = stoker.finish(config, env={"PYTHONPATH": f"{hook}:{REPO}"})
    assert adopted(proc) == ["serve"]
    assert "the task was starting; it stops" in (sandbox / "killed").read_text()
    assert "SIGTERM now, SIGKILL 0.1 s later" in proc.stdout(), proc.stdout()
