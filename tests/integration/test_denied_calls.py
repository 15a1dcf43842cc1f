"""`stoker run` under a real seccomp filter that denies what some hosts deny
(`tests/support/seccomp.py`; the broad matrix, every call alone and every profile, is
tests/faults/test_audit_denied_calls.py). The whole Stoker process tree runs under it, as in
a container whose runtime installed it.

- An older Docker or Podman profile (pidfd_open, pidfd_send_signal, pidfd_getfd EPERM;
  clone3 ENOSYS): the task runs, restarts, stops on SIGTERM with its final process and
  leaves nothing, with one warning naming the missing pidfds and what is done instead
  (before, nothing said so).
- A runtime that denies prctl: the config is planned and the task runs (before, the
  planning child's PR_SET_PDEATHSIG failed and `stoker run` said the config's code had
  ended its process).
- A profile that answers EPERM for clone3 (Docker before 20.10.10, with glibc 2.34 or
  later: no thread can start): the error names clone3 (before, it blamed the process limit).
- A task cgroup killed by freezing where there are no pidfds: its members are SIGKILLed by
  kill() (before, each was skipped and the cgroup stayed, its processes alive).
- A profile that allows pidfd_open but answers pidfd_send_signal with EPERM: the signal goes
  by kill() (before, the EPERM was taken for the process's own refusal, a setuid
  program's, and an escaped daemon lived on).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.support import glibcsignals, pidnames, seccomp
from tests.support.cgroups import FREEZER  # the test run's own (tests/support/sessioncgroup.py)
from tests.support.cgroups import remove as remove_cgroup
from tests.support.denied_calls import runs, seccomp_required  # noqa: F401  (fixtures)
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, live
from tests.support.waiting import wait_for


def test_under_an_old_docker_profile_the_task_runs_restarts_and_stops_cleanly(runs):  # noqa: F811
    run = runs(["old-docker"])
    run.wait_healthy()
    assert run.restart_secs() < 5
    status, final_ran, left = run.stop()
    assert (status, final_ran, left) == (143, True, set()), run.log()[-3000:]
    log = run.log()
    lines = [line for line in log.splitlines() if "pidfds_unavailable" in line]
    assert len(lines) == 1, log[-3000:]
    assert "PermissionError" in lines[0] and "kill()" in lines[0]
    assert "Traceback" not in log


def hello(tmp_path: Path) -> Path:
    """A batch job's config: one process that prints hello."""
    config = tmp_path / "hello.aurora"
    config.write_text(textwrap.dedent("""\
        jobs = [Job(cluster='local', role='me', environment='test', name='hello',
                    task=Task(processes=[Process(name='hello', cmdline='echo hello')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    return config


def test_where_prctl_is_denied_the_config_is_planned_and_the_task_runs(tmp_path):
    run = StokerProcess(["run", str(hello(tmp_path)), "--sandbox", str(tmp_path / "sandbox")], tmp_path,
                        launcher=tuple(seccomp.launcher(["prctl=EPERM"])))
    run.exited(0)
    assert (tmp_path / "sandbox/.logs/hello/0/stdout").read_text() == "hello\n"
    assert run.stderr().count("subreaper_failed") == 1, run.stderr()
    assert "Traceback" not in run.stdout() + run.stderr()


NO_THREAD = """
import threading
from executor.logs import no_room
try:
    threading.Thread(target=print).start()
except RuntimeError as exc:
    print(no_room(exc))
"""


def test_where_clone3_is_refused_the_error_names_it():
    """What `stoker run` and `stoker executor` say as they stop when no thread starts
    (`cannot go on: ...`), asked in a process under the filter: a whole `stoker run` takes
    half a second more to say the same."""
    result = subprocess.run([*seccomp.launcher(["clone3=EPERM"]), sys.executable, "-c", NO_THREAD],
                            capture_output=True, text=True, timeout=20, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("no thread could be started: this host's seccomp profile denies the clone3 system "
                             "call (EPERM), which the C library starts threads with (glibc 2.34 and later); a "
                             "profile that answers ENOSYS for it lets glibc use clone (Docker 20.10.10 and later "
                             "do)\n"), result.stdout


def test_a_run_that_cannot_go_on_leaves_its_registry_entry_ended_with_the_reason(tmp_path, capsys):
    """A whole `stoker run` where no thread starts: its control socket's thread is the first,
    just after it registered. It exits 2 saying why, and its entry says so too (before, it
    stayed `ended: null`: `stoker ps` and `status` showed it LOST, "died before it recorded
    anything")."""
    from executor.cli.main import main

    config, sandbox = tmp_path / "job.aurora", tmp_path / "sandbox"
    config.write_text(textwrap.dedent("""\
        jobs = [Job(cluster='local', role='me', environment='test', name='t',
                    task=Task(processes=[Process(name='s', cmdline='sleep 100')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
        """))
    result = subprocess.run([*seccomp.launcher(["clone3=EPERM"]), sys.executable, "-m", "executor", "run",
                             str(config), "--sandbox", str(sandbox)], capture_output=True, text=True, timeout=30,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    said = "cannot go on: no thread could be started: this host's seccomp profile denies the clone3 system call"
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert main(["ps", "--all", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["sandbox"] == str(sandbox)]
    assert row["ended"] and not row["supervisor_alive"] and row["state"] == "NEW", row
    assert f"its supervisor (pid {row['supervisor_pid']}) stopped before it recorded anything: {said}" in row["problem"]
    assert main(["status", str(sandbox), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ended"] and doc["state"] == "NEW" and said in doc["problem"], doc


KILL_FROZEN = """
import subprocess, sys
from executor.procs import cgroups
group = cgroups.create(sys.argv[2], sys.argv[1])
assert isinstance(group, cgroups.TaskCgroup), group
member = subprocess.Popen(["sleep", "30"])
assert group.take_in(member.pid)
problem = group.kill_and_remove(1.0)
try:
    code = member.wait(2)
except subprocess.TimeoutExpired:  # not killed: the test's clean-up removes the cgroup
    code = "alive"
    member.kill()
print(problem, code)
"""


def test_a_frozen_cgroup_is_killed_without_pidfds(tmp_path):
    if not cgroup_freezer_usable():
        pytest.skip(f"no v1 freezer at {FREEZER} that this user may make a cgroup in")
    name = f"stoker-denied-{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run([*seccomp.launcher(["no-pidfds"]), sys.executable, "-c", KILL_FROZEN, FREEZER, name],
                                capture_output=True, text=True, timeout=20, cwd=REPO)
    finally:
        remove_cgroup(f"{FREEZER}/{name}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "None -9\n"  # removed; the member died of SIGKILL


def cgroup_freezer_usable() -> bool:
    from tests.support.cgroups import unavailable

    return unavailable(FREEZER) is None


SIGNAL_BY_PIDFD = """
import logging, signal, subprocess, sys
from executor.procs import proctree, reaper
logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
child = subprocess.Popen(["sleep", "30"])
refused = []
sent = proctree.send_checked([child.pid], signal.SIGKILL, lambda info, ours: True, refused=refused)
try:
    code = child.wait(2)
except subprocess.TimeoutExpired:
    code = "alive"
    child.kill()
print("sent" if sent == [child.pid] else "not sent", refused, code)
print("pidfds usable:", reaper.check_pidfds())
"""


def test_where_only_pidfd_send_signal_is_denied_the_signal_goes_by_kill(tmp_path):
    result = subprocess.run([*seccomp.launcher(["pidfd_send_signal=EPERM"]), sys.executable, "-c", SIGNAL_BY_PIDFD],
                            capture_output=True, text=True, timeout=20, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "sent [] -9", result.stdout  # before: refused, as a setuid program's refusal
    assert "pidfds_unavailable" in lines[1] and "PermissionError" in lines[1]
    assert lines[2:] == ["pidfds usable: False"]


def test_where_prctl_is_denied_a_killed_stoker_run_leaves_no_config_running(tmp_path):
    """The child planning the config ends within 0.1 s of `stoker run`'s end, watched by a
    thread where PR_SET_PDEATHSIG is denied. Before, it ran the config's code to its end: 30 s
    here, up to the planning limit, 60 s."""
    config = tmp_path / "slow.aurora"
    config.write_text(f"import os, time\nopen({str(tmp_path / 'planning.pids')!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
                      f"time.sleep(30)\n{hello(tmp_path).read_text()}")
    run = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sandbox")], tmp_path,
                        launcher=tuple(seccomp.launcher(["prctl=EPERM"])))
    pids: set[int] = set()
    try:
        pids = wait_for(lambda: pidnames.pid_file(tmp_path / "planning.pids"), 15, message="the config's code")
        os.kill(run.pid, signal.SIGKILL)
        wait_for(lambda: not live(pids), 10, message="the planning child's end after stoker run was killed")
    finally:
        run.close()
        kill_leftovers(pids)


def test_where_unshare_is_denied_the_runs_are_forked_by_popen_in_their_sandbox(tmp_path):
    """A run as Stoker's own user is started by posix_spawn from a thread whose working
    directory is its own (unshare(CLONE_FS)); a runtime that denies unshare (Docker's profile
    without CAP_SYS_ADMIN) leaves that thread Popen, and the runs start as before, in their
    sandbox. What tells the two apart from the run: glibc's posix_spawn leaves its two
    reserved signals (32 and 33) ignored, where Popen's keeps them as Stoker has them: at
    their defaults here, whatever started the test (`make` starts it with them ignored)."""
    seen = {}
    for rules in ([], ["unshare=EPERM"]):
        config = tmp_path / f"show{len(rules)}.aurora"  # each its own, and no early start: the supervisor's runs
        config.write_text(textwrap.dedent("""\
            jobs = [Job(cluster='local', role='me', environment='test', name='show',
                        task=Task(processes=[Process(name='show', cmdline='grep ^SigIgn: /proc/self/status; pwd')],
                                  resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
        """))
        sandbox = tmp_path / f"sandbox-{len(rules)}"
        launcher = (*glibcsignals.launcher(), *(seccomp.launcher(rules) if rules else ()))
        run = StokerProcess(["run", str(config), "--sandbox", str(sandbox)], tmp_path, launcher=launcher,
                            env={"STOKER_EARLY_START": "off"})
        run.exited(0)
        ignored, cwd = (sandbox / ".logs/show/0/stdout").read_text().splitlines()
        assert cwd == str(sandbox)
        seen[bool(rules)] = int(ignored.split()[1], 16) & (1 << 31 | 1 << 32)
    assert seen == {False: 1 << 31 | 1 << 32, True: 0}
