"""`owner_for` (`executor/task/wiring.py`): what a front end hands it reaches the adapter
that uses it, seen in what the task then does, in this process with real processes. The
users the runs and the shell checks run as; a wrapper every run starts through; the kill
grace, the bound on a stop and the stop timeout in the kill's words; the run cap, given and
by default; the lifecycle endpoints within the stop's bound; the health loop's interval;
the disk check with the agent's files left out or counted; the temporaries a killed writer
left; and the refusals no front end should meet (a lifecycle started for a task without
one, the task's files opened before its session, kazoo missing)."""
from __future__ import annotations

import importlib
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator

import attrs
import pytest

from config.registry import RegistrySettings
from config.spec import CheckKind, HealthSpec, LifecycleSpec, ProcessSpec
from executor.events import TaskState
from executor.host.controlwire import KillControl
from executor.host.registry import Registry
from executor.task import wiring
from executor.task.owner import TaskOwner
from executor.task.serverset import AnnounceError
from executor.task.status import Update
from executor.task.wiring import owner_for, user_named
from tests.integration.test_fork_exec import Wrapper
from tests.integration.test_owner import Recorder, job
from tests.support import cgroups as cgroup_support
from tests.support.control_socket import ask_all
from tests.support.ports import free_ports
from tests.support.shellwords import fake_sh
from tests.support.users import needs_root, open_sandbox
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)
ENV = {"PATH": "/usr/bin:/bin"}
SLEEPS = ProcessSpec(name="a", cmdline="exec sleep 30")


def run(owner: TaskOwner, kill_when: Callable[[], object] | None = None, reason: str = "stop asked") -> Update:
    """The owner run to its end; killed (no grace named) once `kill_when()` is true, when given."""
    if kill_when is not None:
        def later() -> None:
            wait_for(kill_when, 10, message="the moment to kill")
            owner.request_kill(reason)

        threading.Thread(target=later, daemon=True).start()
    return owner.run()


def kill_stages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.stoker_fields["stage"], r.stoker_fields["reason"]) for r in caplog.records
            if getattr(r, "stoker_event", None) == "kill_stage"]


@needs_root
def test_runs_start_as_run_as_and_shell_checks_as_check_as():
    spec = job(ProcessSpec(name="a", cmdline="id -u; exec sleep 30"),
               health=HealthSpec(kind=CheckKind.SHELL, shell_command="echo checked as $(id -u); exit 1",
                                 initial_interval_secs=0.0, interval_secs=0.05))
    with open_sandbox() as sandbox:  # (a directory nobody may reach)
        final = run(owner_for(spec, sandbox, ENV, Recorder(), run_as=user_named("nobody"),
                              check_as=user_named("daemon")))
        assert (sandbox / ".logs/a/0/stdout").read_text() == "65534\n"
    assert final.state is TaskState.FAILED
    assert final.message.endswith("health command exited with status 1: checked as 1"), final.message


def test_each_run_starts_through_the_wrapper_given(tmp_path):
    wrap = Wrapper()
    spec = job(ProcessSpec(name="a", cmdline='echo "$WRAPPED $SEEN"'))
    final = run(owner_for(spec, tmp_path, ENV, Recorder(), wrap=wrap))
    assert final.state is TaskState.FINISHED
    assert (tmp_path / ".logs/a/0/stdout").read_text() == "1 inside\n" and wrap.users == [None]


def test_by_default_the_task_s_runs_are_in_a_cgroup_of_its_own(tmp_path):
    """`cgroups` is `auto` unless a front end says otherwise: where a task cgroup can be made
    here, each run is in the task's `stoker-*` one (another word is read as a directory to
    make it under, and falls back to a process group where that fails)."""
    if (why := cgroup_support.unavailable()) is not None:
        pytest.skip(f"no task cgroup here: {why}")
    spec = job(ProcessSpec(name="a", cmdline="cat /proc/self/cgroup"))
    assert run(owner_for(spec, tmp_path, ENV, Recorder())).state is TaskState.FINISHED
    assert "/stoker-" in (tmp_path / ".logs/a/0/stdout").read_text()


@pytest.mark.parametrize(("bounds", "words"), [
    ({"kill_grace_secs": 0.25}, "SIGTERM now, SIGKILL 0.25 s later"),
    ({"stop_within_secs": 0.4}, "SIGTERM now, SIGKILL 0.4 s later"),  # the grace (30 s) cut to the bound
    ({"kill_grace_secs": 0.25, "stop_within_secs": 0.2}, "SIGTERM now, SIGKILL 0.2 s later"),
])
def test_a_kill_naming_no_grace_gets_the_front_end_s_grace_within_its_bound(tmp_path, bounds, words):
    rec = Recorder()
    owner = owner_for(job(SLEEPS, finalization_wait_secs=30), tmp_path, ENV, rec, **bounds)
    final = run(owner, lambda: rec.process_states("a") == ["RUNNING"])
    assert final.state is TaskState.KILLED
    assert [p.reason for p in rec.phases] == [f"stop asked; stopping 1 running process: {words}", "stop asked"]


def test_the_stop_timeout_sigkills_what_still_runs_once_it_is_over(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.task")
    pid_file = tmp_path / "a.pid"
    spec = job(ProcessSpec(name="a", cmdline=f"exec {fake_sh('--ignore-sigterm', '--pid-file', pid_file)}"),
               finalization_wait_secs=30)
    final = run(owner_for(spec, tmp_path, ENV, Recorder(), stop_timeout_secs=0.3), pid_file.exists)
    assert final.state is TaskState.KILLED
    assert ("now", "the stop is not over 0.3 s after it began (--stop-timeout-in-secs): SIGKILL to every process "
                   "now; the waits left and the final processes are skipped") in kill_stages(caplog)


@pytest.mark.parametrize(("cap", "runs"), [({"run_cap": 3}, 3), ({}, 100)], ids=["given", "by default"])
def test_a_process_failing_for_ever_ends_the_task_at_the_run_cap(tmp_path, cap, runs):
    rec = Recorder()
    spec = job(ProcessSpec(name="a", cmdline="exit 3", max_failures=0, min_duration_secs=0.0))
    final = run(owner_for(spec, tmp_path, ENV, rec, **cap))
    assert final.state is TaskState.FAILED
    assert final.message.endswith(f"{runs} runs failed or were lost ({runs} failures, 0 losses), reaching the run "
                                  f"cap of {runs}"), final.message
    assert rec.process_states("a").count("FAILED") == 1 and rec.process_states("a").count("RUNNING") == runs


def lifecycle_server(port: int) -> str:
    """A process that answers every POST with 200 and goes on running (the stop's bound ends it)."""
    return f"""exec {sys.executable} - <<'PY'
import http.server
class Answers(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), Answers).serve_forever()
PY"""


def test_the_lifecycle_endpoints_are_posted_within_the_stop_s_bound_with_each_step_said(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.task")
    (port,) = free_ports(1)
    spec = attrs.evolve(job(ProcessSpec(name="a", cmdline=lifecycle_server(port)), finalization_wait_secs=30),
                        lifecycle=LifecycleSpec(port=port, graceful_shutdown_wait_secs=20, shutdown_wait_secs=20))

    def serving() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    final = run(owner_for(spec, tmp_path, ENV, Recorder(), stop_within_secs=2.0), serving)
    assert final.state is TaskState.KILLED
    said = [reason for stage, reason in kill_stages(caplog) if stage == "lifecycle"]
    assert said[0] == "stop asked"
    assert said[1].startswith(f"POST http://localhost:{port}/quitquitquit answered HTTP 200; waiting up to 0.")
    assert said[1].endswith(" s for the processes to exit (graceful_shutdown_wait_secs=20, cut to fit the "
                            "stop's bound)"), said


def test_shell_checks_come_at_the_job_s_interval(tmp_path):
    checks = tmp_path / "checks"
    spec = job(SLEEPS, health=HealthSpec(kind=CheckKind.SHELL, shell_command=f"echo . >> {checks}",
                                         initial_interval_secs=0.0, interval_secs=0.05))

    def checked_thrice() -> bool:
        return checks.exists() and len(checks.read_text().split()) >= 3

    final = run(owner_for(spec, tmp_path, ENV, Recorder()), checked_thrice)
    assert final.state is TaskState.KILLED and len(checks.read_text().split()) >= 3


def test_a_snooze_file_in_the_sandbox_holds_the_checks_with_one_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="healthcheck")
    (tmp_path / ".healthchecksnooze").write_text("")
    rec = Recorder()
    spec = job(SLEEPS, health=HealthSpec(kind=CheckKind.SHELL, shell_command="exit 1", initial_interval_secs=0.0,
                                         interval_secs=0.05))
    final = run(owner_for(spec, tmp_path, ENV, rec), lambda: any(u.state is TaskState.RUNNING for u in rec.updates))
    assert final.state is TaskState.KILLED
    snoozed = [r.stoker_fields for r in caplog.records if getattr(r, "stoker_event", None) == "health_snooze"]
    assert [(f["task"], f["path"], f["snoozed"]) for f in snoozed] == [("t.0", tmp_path / ".healthchecksnooze", True)]


@pytest.mark.parametrize("under_agent", [True, False])
def test_the_disk_check_leaves_the_agent_s_files_out_under_the_agent_and_counts_them_elsewhere(tmp_path, caplog,
                                                                                              under_agent):
    caplog.set_level(logging.INFO, logger="executor.task")
    (tmp_path / "stdout").write_bytes(b"x" * (2 << 20))  # the agent's (its owner this process's user)
    spec = job(SLEEPS)
    spec = attrs.evolve(spec, task=attrs.evolve(spec.task, disk_bytes=1 << 20))
    usage = tmp_path / ".stoker" / "usage.json"

    def sampled() -> dict | None:
        return usage.exists() and json.loads(usage.read_text()).get("disk_sample")

    owner = owner_for(spec, tmp_path, ENV, Recorder(), disk_check_secs=0.05,
                      **({"under_agent": True} if under_agent else {}))
    final = run(owner, sampled) if under_agent else run(owner)
    if under_agent:
        assert final.state is TaskState.KILLED
        assert json.loads(usage.read_text())["disk_check_secs"] == 0.05 and sampled()["used_bytes"] < 1 << 20
    else:
        assert final.state is TaskState.FAILED
        assert final.message.startswith("Disk limit exceeded.  Reserved 1048576 bytes vs used "), final.message
        assert [r.stoker_fields["task"] for r in caplog.records
                if getattr(r, "stoker_event", None) == "disk_limit_exceeded"] == ["t.0"]


def test_without_a_disk_reservation_no_disk_check_runs_nor_is_an_interval_recorded(tmp_path):
    owner = owner_for(job(SLEEPS), tmp_path, ENV, Recorder(), disk_check_secs=0.05)
    usage = tmp_path / ".stoker" / "usage.json"
    final = run(owner, usage.exists)
    assert final.state is TaskState.KILLED
    recorded = json.loads(usage.read_text())
    assert (recorded["disk_reserved"], recorded["disk_check_secs"], recorded["disk_sample"]) == (None, None, None)


def test_temporaries_a_killed_writer_left_in_stoker_are_removed_with_one_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.task")
    (tmp_path / ".stoker").mkdir()
    left = [".task.json.0123abcd.tmp", ".usage.json.89abcdef.tmp"]
    for name in left:
        (tmp_path / ".stoker" / name).write_text("half written")
    final = run(owner_for(job(ProcessSpec(name="a", cmdline="true")), tmp_path, ENV, Recorder()))
    assert final.state is TaskState.FINISHED
    lines = [(r.levelno, r.stoker_fields) for r in caplog.records
             if getattr(r, "stoker_event", None) == "stale_temporaries_removed"]
    assert lines == [(logging.INFO, {
        "task": "t.0", "names": " ".join(left),
        "reason": "left by a supervisor killed as it wrote them (between their write and rename)"})]
    assert not any((tmp_path / ".stoker" / name).exists() for name in left)


def test_an_owner_s_own_session_lists_its_task_and_passes_an_operator_s_kill_to_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STOKER_ROOT", str(tmp_path / "registry"))
    rec, ended = Recorder(), []
    owner = owner_for(job(SLEEPS, finalization_wait_secs=30), tmp_path, ENV, rec)
    thread = threading.Thread(target=lambda: ended.append(owner.run()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: rec.process_states("a") == ["RUNNING"], 10, message="the run started")
        (listed,) = Registry(RegistrySettings(registry_root=str(tmp_path / "registry"))).entries()
        assert (listed.entry.job_key, listed.entry.label, listed.entry.task_id) == ("local/me/test/t", "t.0", "t-0")
        replies = ask_all(tmp_path, KillControl(0.2))
    finally:
        if thread.is_alive() and not ended:
            owner.request_kill("test done", 0.3)
        thread.join(10)
    assert ended[0].state is TaskState.KILLED
    assert replies[-1].message == "task t.0 KILLED: killed by the operator (stoker kill)", replies
    assert rec.phases[0].reason == "killed by the operator (stoker kill); stopping 1 running process: SIGTERM now, " \
                                   "SIGKILL 0.2 s later"


def test_a_lifecycle_started_for_a_task_without_one_is_refused(tmp_path):
    start = wiring._lifecycle_starter(job(SLEEPS))
    with pytest.raises(ValueError, match=r"^task t\.0 has no lifecycle endpoints to start$"):
        start(None, print, print)


def test_the_task_s_files_opened_before_its_session_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r": the task's files are opened before its host session$"):
        wiring._SessionPort(tmp_path).stoker_dir()


@pytest.fixture
def kazoo_modules() -> Iterator[dict[str, object]]:
    """kazoo's modules as this process has them (loaded first), put back as they were after
    the test, with the announcer's: a test that hides some of them re-imports none."""
    importlib.import_module("kazoo.client")
    ours = ("kazoo", "executor.task.announcer", "executor.task.membership")
    real = {name: module for name, module in sys.modules.items() if name.partition(".")[0] == "kazoo"}
    before = {name: sys.modules[name] for name in ours[1:] if name in sys.modules}
    try:
        yield real
    finally:
        for name in [name for name in sys.modules if name.startswith(ours)]:
            del sys.modules[name]
        sys.modules.update(real | before)


class NotInstalled:
    """A finder that says the package `name` is not installed, as the import system says it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == self.name:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def load_announcer_with(modules: dict[str, object], monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """`load_announcer()` with kazoo's modules (and the announcer's) as `modules` has them;
    with `monkeypatch`, and no kazoo among them, as if kazoo were not installed."""
    for name in [name for name in sys.modules if name.partition(".")[0] == "kazoo"]:
        del sys.modules[name]
    sys.modules.pop("executor.task.announcer", None)
    sys.modules.update(modules)
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "meta_path", [NotInstalled("kazoo"), *sys.meta_path])
    wiring.load_announcer()


def test_an_announcer_without_kazoo_is_refused_with_the_package_named_and_another_missing_module_raised(
        kazoo_modules, monkeypatch):
    with pytest.raises(AnnounceError, match=r"^announcing in ZooKeeper needs the kazoo package"):
        load_announcer_with({}, monkeypatch)  # the package not installed
    monkeypatch.undo()
    with pytest.raises(AnnounceError, match=r"^announcing in ZooKeeper needs the kazoo package"):
        load_announcer_with(kazoo_modules | {"kazoo.client": None})  # a module of it
    with pytest.raises(ModuleNotFoundError, match="executor.task.membership"):
        load_announcer_with(kazoo_modules | {"executor.task.membership": None})  # one of Stoker's
