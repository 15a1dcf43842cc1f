"""Two live `stoker run`s are never given the same chosen loopback port. A port is chosen free
(bound, then closed) and the task binds it later, so a run started while another's task had not
bound yet was offered it again: in a storm of 40 runs of two ports each, the kernel's random
choice offered one port twice in 41 of 200 storms, and the later server could not bind it at
any attempt. Here the host offers a single port (a network namespace of the test's own whose
`ip_local_port_range` is one number, entered by both runs), so the second run is offered the
first one's port every time, by a fresh plan or by the plan a run of its config kept: it is
refused (exit 2), not started on the port another live run was given."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from executor.host.identity import boot_id, host_identity
from executor.host.registry import claims_name
from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

PORT = 40001
CONFIG = """\
jobs = [Service(cluster='local', role='me', environment='test', name='{name}',
                task=Task(processes=[Process(name='p', cmdline='echo port {{{{thermos.ports[http]}}}}; exec sleep 600')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""
REFUSED = "no free loopback port could be chosen for http: each one offered, 8 times, was claimed by another process"


@pytest.fixture
def one_port_host():
    """A network namespace whose loopback is up and offers only PORT: the command prefix that
    enters it (`nsenter`), its holder killed afterwards."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("needs root, unshare and nsenter (a network namespace of the test's own)")
    holder = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up 2>/dev/null || exit 3; "
                                      f"echo '{PORT} {PORT}' > /proc/sys/net/ipv4/ip_local_port_range || exit 4; "
                                      "echo ready; exec sleep 600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if holder.stdout is None or holder.stdout.readline() != b"ready\n":
            pytest.skip(f"no network namespace with one port here (exit {holder.wait()})")
        yield ("nsenter", f"--net=/proc/{holder.pid}/ns/net")
    finally:
        holder.kill()
        holder.wait()


def _run(tmp_path, name: str, launcher: tuple[str, ...], plans: str, *options: str) -> StokerProcess:
    config = tmp_path / f"{name}.aurora"
    config.write_text(CONFIG.format(name=name))
    work = tmp_path / f"work-{name}"
    work.mkdir(exist_ok=True)
    return StokerProcess(["run", str(config), "--sandbox", str(tmp_path / f"sandbox-{name}"), *options], work,
                         env={"STOKER_PLAN_CACHE": plans}, launcher=launcher)


@pytest.mark.parametrize(("kept", "plans"), [(False, "off"), (False, "plans"), (True, "plans")],
                         ids=["no-plan-cache", "first-run-planned-ahead", "kept-plan"])
def test_a_port_another_live_run_was_given_is_not_given_again(tmp_path, one_port_host, kept, plans):
    plans = str(tmp_path / plans) if plans != "off" else plans
    runs: list[StokerProcess] = []
    try:
        if kept:  # a run of `second`'s config kept its plan, PORT, and ended
            once = _run(tmp_path, "second", one_port_host, plans)
            runs.append(once)
            once.wait_output("STARTING → RUNNING", 60)
            once.sigterm_and_close()
        second = _second_refused_the_first_s_port(tmp_path, runs, (one_port_host, one_port_host), plans)
        assert REFUSED in second.stderr()
    finally:
        _closed(tmp_path, runs)


def _second_refused_the_first_s_port(tmp_path, runs: list[StokerProcess], launchers: tuple[tuple[str, ...], ...],
                                     plans: str, *args: str) -> StokerProcess:
    """`first` run (through the first launcher) and given PORT, then `second` (through the
    second) refused it, naming `first` as its holder, `first` running on; both added to
    `runs` as they start. The second run."""
    first = _run(tmp_path, "first", launchers[0], plans, *args)
    runs.append(first)
    first.wait_output("STARTING → RUNNING", 60)
    assert f"ports http={PORT}" in first.stdout()
    second = _run(tmp_path, "second", launchers[1], plans, *args)
    runs.append(second)
    _refused_the_port(second)
    assert f"(the last, {PORT}, by pid {first.proc.pid} (" in second.stderr(), second.stderr()
    assert first.proc.poll() is None
    return second


def _closed(tmp_path, runs: list[StokerProcess], names: tuple[str, ...] = ("first", "second")) -> None:
    """Every run closed, and what the runs of those names left killed."""
    for run in runs:
        run.close()
    kill_leftovers(set().union(*(task_pids(tmp_path / f"sandbox-{n}") for n in names)))


def _refused_the_port(run: StokerProcess) -> None:
    """RUN, given no port another live run claims, ends: exit 2, its ports never said."""
    wait_for(lambda: "stoker run: ports" in run.stdout() or run.proc.poll() is not None, 60,
             message="the run's ports, or its exit")
    assert f"ports http={PORT}" not in run.stdout()
    assert run.wait() == 2, run.stdout() + run.stderr()


def test_a_port_claimed_by_a_process_not_a_run_names_that_process(tmp_path, one_port_host):
    """Any process that can open the claims file may lock a port's byte of it: the refusal
    said "another live `stoker run`" of it. It names the holder as /proc/locks does."""
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
                               "fcntl.lockf(fd, fcntl.LOCK_EX, 1, int(sys.argv[2]))\n"
                               "print('held', flush=True)\ntime.sleep(600)\n",
         str(root / claims_name(boot_id(), host_identity())), str(PORT), "not-a-stoker-run"], stdout=subprocess.PIPE)
    run = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        run = _run(tmp_path, "refused", one_port_host, "off", "--root", str(root))
        assert run.wait(60) == 2, run.stdout() + run.stderr()
        assert REFUSED in run.stderr()
        assert f"(the last, {PORT}, by pid {holder.pid} ({sys.executable} -c " in run.stderr(), run.stderr()
    finally:
        holder.kill()
        holder.wait()
        if run is not None:
            run.close()
            kill_leftovers(task_pids(tmp_path / "sandbox-refused"))


def test_a_claim_holder_whose_command_line_has_control_characters_is_named_in_one_printable_line(
        tmp_path, one_port_host):
    """The holder's command line is any process's: a newline in it split the refusal over two
    lines (the second one looked like a line of Stoker's own), and an escape sequence in it
    (a screen clear) reached the operator's terminal raw. Written out, as a console line is."""
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    holder = subprocess.Popen(
        ["holder\nstoker run: forged\x1b[2J", "-c", "import fcntl, os, sys, time\n"
                                                 "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
                                                 "fcntl.lockf(fd, fcntl.LOCK_EX, 1, int(sys.argv[2]))\n"
                                                 "print('held', flush=True)\ntime.sleep(600)\n",
         str(root / claims_name(boot_id(), host_identity())), str(PORT)], executable=sys.executable, stdout=subprocess.PIPE)
    run = None
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        run = _run(tmp_path, "escaped", one_port_host, "off", "--root", str(root))
        assert run.wait(60) == 2, run.stdout() + run.stderr()
        refusal = [line for line in run.stderr().splitlines() if REFUSED in line]
        assert len(refusal) == 1, run.stderr()
        assert f"by pid {holder.pid} (" in refusal[0], refusal[0]
        assert "\x1b" not in run.stderr() and "\n" + "stoker run: forged" not in run.stderr(), run.stderr()
        assert "stoker run: forged" in refusal[0], refusal[0]
    finally:
        holder.kill()
        holder.wait()
        if run is not None:
            run.close()
            kill_leftovers(task_pids(tmp_path / "sandbox-escaped"))


def test_a_port_given_with_port_is_claimed_not_refused(tmp_path, one_port_host):
    """A `--port` number is claimed too: a run whose task has not bound it yet held it for
    nothing, and another run was chosen it (the host offers one port). Two runs that both ask
    for it are not refused for it: the user's number is not a chosen one."""
    runs: list[StokerProcess] = []
    try:
        first = _run(tmp_path, "first", one_port_host, "off", f"--port=http={PORT}")
        runs.append(first)
        first.wait_output("STARTING → RUNNING", 60)
        assert f"ports http={PORT}" in first.stdout()
        chosen = _run(tmp_path, "chosen", one_port_host, "off")
        runs.append(chosen)
        _refused_the_port(chosen)
        assert REFUSED in chosen.stderr()
        again = _run(tmp_path, "again", one_port_host, "off", f"--port=http={PORT}")
        runs.append(again)
        again.wait_output("STARTING → RUNNING", 60)
        assert first.proc.poll() is None
    finally:
        _closed(tmp_path, runs, ("first", "chosen", "again"))


def test_a_port_stays_claimed_between_two_attempts(tmp_path, one_port_host):
    """A run's attempts keep its ports: while it waits to start its next attempt (nothing of
    its task holds the port then), another run is still not given it."""
    runs: list[StokerProcess] = []
    try:
        config = tmp_path / "failing.aurora"
        config.write_text(CONFIG.format(name="failing").replace("exec sleep 600", "exit 3"))
        (tmp_path / "work-failing").mkdir()
        first = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sandbox-failing"),
                               "--restart-backoff", "60"], tmp_path / "work-failing",
                              env={"STOKER_PLAN_CACHE": "off"}, launcher=one_port_host)
        runs.append(first)
        first.wait_output("restarting in 60.0 s", 60)
        assert f"ports http={PORT}" in first.stdout()
        second = _run(tmp_path, "second", one_port_host, "off")
        runs.append(second)
        _refused_the_port(second)
        assert first.proc.poll() is None
    finally:
        _closed(tmp_path, runs, ("failing", "second"))


def test_a_run_whose_registry_root_cannot_be_made_chooses_its_ports_unclaimed(tmp_path):
    """No claims file (its root cannot be made: a file is where a directory should be): the
    ports are taken unclaimed, as the registry goes without its entry. Was: `lockf` given no
    file (-1) raised ValueError, not OSError, and every run that chose a port crashed."""
    (tmp_path / "afile").write_text("")
    run = _run(tmp_path, "unclaimed", (), "off", "--root", str(tmp_path / "afile" / "root"))
    try:
        run.wait_output("STARTING → RUNNING", 60)
        assert "stoker run: ports http=" in run.stdout()
        assert "crashed" not in run.stderr(), run.stderr()
    finally:
        run.close()
        kill_leftovers(task_pids(tmp_path / "sandbox-unclaimed"))


def test_a_chosen_port_is_never_a_number_the_run_gives_another_name(tmp_path, one_port_host):
    """A run's `--port admin=PORT` is free when the run plans (its task binds it later), so the
    kernel offered it again for the name the run chooses (http): both of the task's servers were
    given one port. The host offers only PORT: http has no port to be chosen, and the run says so
    (exit 2) rather than start on it."""
    config = tmp_path / "two.aurora"
    config.write_text(CONFIG.replace("ports[http]}}}}", "ports[http]}}}} {{{{thermos.ports[admin]}}}}").format(name="two"))
    (tmp_path / "work-two").mkdir()
    run = StokerProcess(["run", str(config), "--sandbox", str(tmp_path / "sandbox-two"), f"--port=admin={PORT}"],
                        tmp_path / "work-two", env={"STOKER_PLAN_CACHE": "off"}, launcher=one_port_host)
    try:
        wait_for(lambda: "stoker run: ports" in run.stdout() or run.proc.poll() is not None, 60,
                 message="the run's ports, or its exit")
        assert f"http={PORT}" not in run.stdout()
        assert run.wait() == 2, run.stdout() + run.stderr()
        assert "no free loopback port could be chosen for http" in run.stderr()
    finally:
        run.close()
        kill_leftovers(task_pids(tmp_path / "sandbox-two"))


def test_a_port_a_run_was_given_before_the_host_was_renamed_is_not_given_again(tmp_path, one_port_host):
    """A run that started under the host's earlier name (a UTS namespace of its own: it read
    another name, as one does across `hostnamectl set-hostname`), and a run started after, in
    one root on one loopback: the second is refused the first one's port. The claims file was
    named by the host name, so the two claimed in two files and were given the same port."""
    if not shutil.which("hostname"):
        pytest.skip("needs hostname (a UTS namespace of the test's own)")
    root = tmp_path / "root"
    renamed = ("unshare", "-u", "sh", "-c", 'hostname stoker-test-earlier-name && exec "$@"', "sh", *one_port_host)
    runs: list[StokerProcess] = []
    try:
        _second_refused_the_first_s_port(tmp_path, runs, (renamed, one_port_host), "off", "--root", str(root))
    finally:
        _closed(tmp_path, runs)
