"""`stoker run` end to end: the real CLI as a child process, real task processes. Its locale
and the text of its lines: test_stoker_run_text.py."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.support import pidnames
from tests.support.configs import write_config
from tests.support.shellwords import fake_sh, in_aurora
from tests.support.stoker_proc import (
    REPO,
    StokerProcess,
    checkpoint_records,
    kill_leftovers,
    live,
    stoker_runs,
    task_pids,
)
from tests.support.waiting import wait_for

EXAMPLES = REPO / "examples"


@pytest.fixture
def stoker(tmp_path):
    with stoker_runs(tmp_path) as start:
        yield start


def test_seed_example_runs_and_ctrl_c_kills_the_task(stoker):
    run = stoker(str(EXAMPLES / "hello_world.aurora"))
    run.wait_output("hello[0]         WAITING → RUNNING")
    run.wait_output("task             STARTING → RUNNING")
    stdout0 = run.sandbox / ".logs/hello/0/stdout"
    wait_for(lambda: stdout0.exists() and stdout0.read_text().startswith("hello world"))
    wait_for(lambda: task_pids(run.sandbox))
    run.signal(signal.SIGINT)
    assert run.wait() == 130  # 128 + SIGINT (docs/contract.md §9)
    assert "task             KILLING → KILLED" in run.stdout()
    assert not live(task_pids(run.sandbox))


def test_a_process_of_the_seed_example_killed_by_a_signal_is_restarted_without_counting(stoker, tmp_path):
    # The seed example as it is but for its restart delay: min_duration 0.2 s, not Thermos'
    # default 5 s, which this test waited out (5.6 s of the suite's time).
    seed = (EXAMPLES / "hello_world.aurora").read_text()
    assert seed.count("name = 'hello',") == 1
    config = tmp_path / "hello_world.aurora"
    config.write_text(seed.replace("name = 'hello',", "name = 'hello',\n  min_duration = 0.2,"))
    run = stoker(str(config))
    run.wait_output("task             STARTING → RUNNING")
    # Kill only once run 0 has printed: the task is RUNNING as soon as bash is forked, and a
    # kill that lands before the `echo` leaves an empty log (the flake this test once had).
    stdout0 = run.sandbox / ".logs/hello/0/stdout"
    wait_for(lambda: stdout0.exists() and stdout0.read_text().startswith("hello world"))
    first = wait_for(lambda: task_pids(run.sandbox))
    os.kill(first.pop(), signal.SIGKILL)
    # A run killed by a signal is a loss: restarted (after min_duration) without counting
    # against max_failures (1 here: a counted failure would end the task FAILED).
    out = run.wait_output("hello[1]         WAITING → RUNNING", timeout_secs=12)
    assert "hello[0]         RUNNING → LOST" in out or "RUNNING → WAITING" in out
    assert (run.sandbox / ".logs/hello/0/stdout").read_text().startswith("hello world")
    run.signal(signal.SIGINT)
    assert run.wait() == 130
    assert not live(task_pids(run.sandbox))


def test_batch_job_that_succeeds_exits_0(stoker, tmp_path):
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='once', instances=2,
                    cron_schedule='*/5 * * * *',
                    task=Task(processes=[Process(name='a', cmdline='echo done')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg))
    assert run.wait() == 0
    out = run.stdout()
    # what a scheduler would do and `stoker run` does not, said before the task starts
    assert out.index("stoker run: job local/me/test/once has instances = 2; this run is instance 0 "
                     "alone") < out.index("task             NEW → STARTING")
    assert "stoker run: job local/me/test/once has cron_schedule = '*/5 * * * *'; stoker run has no cron" in out
    # run as root, the task runs as root, not as its role (README "Users"): one line says so
    said = [line for line in out.splitlines() if "not as the job's role" in line]
    assert said == (["stoker run: warning: running as root: the task's processes run as root, not as the "
                     "job's role 'me' (as Aurora's executor, and `stoker executor`, would run them)"]
                    if os.geteuid() == 0 else [])
    if said:  # before the task starts
        assert out.index(said[0]) < out.index("task             NEW → STARTING")
    assert "a[0]             RUNNING → SUCCESS" in out
    assert "is not used" not in out  # a job without a container: no line about one
    assert "task             RUNNING → FINISHED" in out
    assert (run.sandbox / ".logs/a/0/stdout").read_text() == "done\n"


def test_an_instance_the_job_does_not_have_is_a_run_warning_too(stoker, tmp_path):
    # `--instance 2` of a one-instance job runs anyway, with a warning line before the task
    # starts that a JSON log has as a `run_warning` event, as every other warning line
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='one',
                    task=Task(processes=[Process(name='a', cmdline='true')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg), "--instance", "2", "--log-format", "json")
    assert run.wait() == 0
    text = ("job local/me/test/one has instances = 1: Aurora's scheduler would run no instance 2; "
            "running it here anyway")
    out = run.stdout()
    assert out.index(f"stoker run: warning: {text}\n") < out.index("task             NEW → STARTING")
    warnings = [w for w in map(json.loads, run.stderr().splitlines()) if w.get("event") == "run_warning"]
    assert [(w["level"], w["reason"]) for w in warnings if "instance" in w["reason"]] == [("WARNING", text)]


@pytest.mark.parametrize(("container", "said"), [
    ("Docker(image='python:3.11')", "Docker image python:3.11"),
    ("Mesos(image=DockerImage(name='library/debian', tag='bookworm'))", "Mesos, Docker image library/debian:bookworm"),
    ("Mesos(image=AppcImage(name='ex\\x1bample', image_id='sha512-ab'))", "Mesos, appc image ex\\x1bample (id sha512-ab)"),
    # a right-to-left override: was written as it is (the rest of the line read reversed)
    ("Docker(image='py\\u202ethon:3')", "Docker image py\\u202ethon:3"),
], ids=["docker", "mesos-docker-image", "mesos-appc-image", "docker-format-character"])
def test_a_jobs_container_is_said_to_be_unused_once_per_run(stoker, tmp_path, container, said):
    # `stoker run` runs the processes on this host whatever the container: one line says so,
    # before the task starts, and not again as the service restarts
    cfg = write_config(tmp_path, f"""
        jobs = [Service(cluster='local', role='me', environment='test', name='boxed', container={container},
                        task=Task(processes=[Process(name='a', cmdline='true')],
                                  resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg), "--restart-backoff", "0.01", "--restart-backoff-max", "0.01", "--log-format", "json")
    run.wait_output("task             RUNNING → FINISHED", count=2)
    run.signal(signal.SIGTERM)
    assert run.wait() == 143
    out = run.stdout()
    text = f"the job's container ({said}) is not used: its processes run on this host, not in the image"
    assert [line for line in out.splitlines() if "is not used" in line] == [f"stoker run: warning: {text}"]
    assert out.index(text) < out.index("task             NEW → STARTING")
    # and in a JSON log, once
    warnings = [w for w in map(json.loads, run.stderr().splitlines()) if "is not used" in w.get("reason", "")]
    assert [(w["level"], w["event"], w["reason"]) for w in warnings] == [("WARNING", "run_warning", text)]


def test_a_port_given_that_another_program_holds_is_said_before_the_task_starts(stoker, tmp_path):
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='fixed',
                    task=Task(processes=[Process(name='a', cmdline='echo {{thermos.ports[http]}}')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        run = stoker(str(cfg), "--port", f"http={port}", "--log-format", "json")
        assert run.wait() == 0
    out = run.stdout()
    assert out.index(f"stoker run: warning: --port http={port} is in use by another program\n") < out.index(
        "task             NEW → STARTING")
    # and in a JSON log, for a program (it was on stdout only)
    (warning,) = [w for w in map(json.loads, run.stderr().splitlines()) if w["reason"].startswith("--port")]
    assert (warning["level"], warning["event"], warning["reason"]) == (
        "WARNING", "run_warning", f"--port http={port} is in use by another program")


def test_failing_batch_job_is_retried_up_to_max_task_failures_then_exits_1(stoker, tmp_path):
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='flaky', max_task_failures=3,
                    task=Task(processes=[Process(name='a', cmdline='exit 3')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg), "--restart-backoff", "0.01", "--log-format", "json", "--log-level", "INFO")
    assert run.wait() == 1
    out = run.stdout()
    assert out.count("task             RUNNING → FAILED") == 3
    assert "max_task_failures=3 reached (exit 1)" in out
    assert "exit status 3" in out
    assert "\x1b" not in out + run.stderr()  # a pipe gets no live view, no colour, no escape
    # A JSON log has every state change the console prints, for a program to read (the text
    # log leaves them to stdout): they were dropped, and the restarts and the end had no event.
    events = [json.loads(line) for line in run.stderr().splitlines()]
    (prepared,) = [e for e in events if e["event"] == "run_prepared"]  # where to look
    assert (prepared["task"], prepared["sandbox"]) == ("flaky.0", str(run.sandbox))
    assert [e["to"] for e in events if e["event"] == "task_state"] == ["STARTING", "RUNNING", "FAILED"] * 3
    restarts = [e for e in events if e["event"] == "task_restarting"]
    assert [(e["state"], e["next_attempt"], e["delay_secs"]) for e in restarts] == [
        ("FAILED", 2, 0.01), ("FAILED", 3, 0.02)]
    (ended,) = [e for e in events if e["event"] == "run_ended"]
    assert (ended["task"], ended["exit"]) == ("flaky.0", 1)
    assert ended["reason"].endswith("max_task_failures=3 reached")


def test_service_restarts_after_its_task_ends(stoker, tmp_path):
    cfg = write_config(tmp_path, """
        jobs = [Service(cluster='local', role='me', environment='test', name='svc',
                        task=Task(processes=[Process(name='a', cmdline='echo tick {{thermos.ports[http]}}')],
                                  resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg), "--restart-backoff", "0.01", "--restart-backoff-max", "0.05")
    run.wait_output("task             RUNNING → FINISHED", count=3)
    assert "services restart on any end" in run.stdout()
    # every attempt keeps the run's port: one another program took meanwhile is said before
    # the next attempt (whose server would fail to bind it)
    port = int(run.stdout().split("stoker run: ports http=")[1].split("\n")[0])
    with wait_for(lambda: listening_on(port), message=f"a server on {port}"):
        run.wait_output(f"stoker           warning: port http={port} in use by another program; every "
                        "attempt of this run keeps its ports")
    run.signal(signal.SIGTERM)
    assert run.wait() == 143  # 128 + SIGTERM


def listening_on(port: int) -> socket.socket | None:
    """A server on 127.0.0.1:`port`, or None while Stoker's own probe of it holds it."""
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError:
        return None


def test_health_checked_service_goes_running_then_fails_and_restarts(stoker, tmp_path):
    cfg = write_config(tmp_path, f"""
        web = Process(name='web', cmdline='exec {in_aurora(fake_sh())} --serve-health {{{{thermos.ports[health]}}}} --health-fail-after 3')
        jobs = [Service(cluster='local', role='me', environment='test', name='web',
                        task=Task(processes=[web], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                                  finalization_wait=2),
                        health_check_config=HealthCheckConfig(initial_interval_secs=2.0, interval_secs=0.1,
                                                              timeout_secs=0.5, max_consecutive_failures=1),
                        lifecycle=DisableLifecycle)]
    """)
    # The grace (2 s) outlasts the server's start on a loaded machine (0.3 s did not: the
    # checks then failed before the first pass, every run); failures count after it.
    run = stoker(str(cfg), "--restart-backoff", "0.01")
    run.wait_output("task             STARTING → RUNNING  healthy:")
    run.wait_output("task             RUNNING → KILLING  health check failed", timeout_secs=10)
    out = run.wait_output("task             KILLING → FAILED", timeout_secs=10)
    assert "2 consecutive health checks failed (max_consecutive_failures=1)" in out
    run.wait_output("task             STARTING → RUNNING  healthy:", count=2, timeout_secs=10)
    health = [r for r in checkpoint_records(run.sandbox) if r["kind"] == "health"]
    assert health and {"passed", "failed"} <= {r["outcome"] for r in health}
    run.signal(signal.SIGINT)
    assert run.wait() == 130


def test_snooze_file_keeps_a_failing_service_running(stoker, tmp_path):
    cfg = write_config(tmp_path, f"""
        web = Process(name='web', cmdline='exec {in_aurora(fake_sh())} --serve-health {{{{thermos.ports[health]}}}} --health-fail-after 2')
        jobs = [Service(cluster='local', role='me', environment='test', name='web',
                        task=Task(processes=[web], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),
                        health_check_config=HealthCheckConfig(initial_interval_secs=0.0, interval_secs=0.05),
                        lifecycle=DisableLifecycle)]
    """)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / ".healthchecksnooze").touch()
    run = stoker(str(cfg), sandbox=sandbox)
    run.wait_output("task             STARTING → RUNNING")
    wait_for(lambda: sum(r.get("outcome") == "snoozed" for r in checkpoint_records(sandbox)) >= 10)
    assert "KILLING" not in run.stdout()
    (sandbox / ".healthchecksnooze").unlink()
    run.wait_output("task             RUNNING → KILLING  health check failed", timeout_secs=5)
    run.signal(signal.SIGINT)
    run.wait()


def test_sigterm_stops_the_task_and_leaves_no_process(stoker, tmp_path):
    cfg = write_config(tmp_path, f"""
        p = Process(name='stubborn', cmdline='{in_aurora(fake_sh())} --ignore-sigterm --children 2 --child-ignore-sigterm --daemonize-child --daemon-pid-file daemon.pid')
        jobs = [Job(cluster='local', role='me', environment='test', name='stubborn',
                    task=Task(processes=[p], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg), "--kill-grace", "0.3")
    run.wait_output("task             STARTING → RUNNING")
    daemon = wait_for(lambda: pidnames.pid_file(run.sandbox / "daemon.pid"))
    pids = task_pids(run.sandbox) | daemon
    run.signal(signal.SIGTERM)
    assert run.wait() == 143
    assert "KILLING → KILLED" in run.stdout()
    assert not live(pids)


def test_bad_config_is_one_clear_error_line(tmp_path):
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='bad',
                    task=Task(processes=[Process(name='a', cmdline='true', max_failures='x')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    result = subprocess.run([sys.executable, "-m", "executor", "run", str(cfg)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("stoker: error:")
    assert "max_failures" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_sandbox_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "executor", "run", str(EXAMPLES / "hello_world.aurora"), "--sandbox", str(blocker / "sb")],
        cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "cannot create sandbox" in result.stderr and "Traceback" not in result.stderr


def test_inspect_json_is_a_valid_task_document(tmp_path):
    result = subprocess.run([sys.executable, "-m", "executor", "inspect", str(EXAMPLES / "hello_world.aurora"), "--json"],
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["instance"] == 0 and doc["job"]["name"] == "hello" and doc["job"]["service"] is True
    from config.document import decode

    again = decode(base64.b64decode(base64.b64encode(result.stdout)))
    assert json.loads(again.job.json_dumps()) == doc["job"]


def test_status_and_tail_read_a_finished_sandbox(stoker, tmp_path):
    cfg = write_config(tmp_path, """
        jobs = [Job(cluster='local', role='me', environment='test', name='two',
                    task=SequentialTask(processes=[Process(name='first', cmdline='echo one; echo err >&2'),
                                                   Process(name='second', cmdline='echo two')],
                                        resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    run = stoker(str(cfg))
    assert run.wait() == 0
    status = subprocess.run([sys.executable, "-m", "executor", "status", str(run.sandbox)],
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert "first" in status.stdout and "second" in status.stdout and "FINISHED" in status.stdout
    tail = subprocess.run([sys.executable, "-m", "executor", "tail", str(run.sandbox), "first", "--stderr"],
                          capture_output=True, text=True, timeout=30)
    assert tail.returncode == 0 and tail.stdout == "err\n"
    out = run.stdout()
    assert out.index("first[0]         RUNNING → SUCCESS") < out.index("second[0]        WAITING → RUNNING")


AURORA_LIKE = """
    setup = Process(name='setup_{{mesos.instance}}', cmdline='echo "export GREETING={{greeting}}" > .thermos_profile')
    show = Process(name='show', cmdline='echo "$GREETING $MY_TOOL $MESOS_SANDBOX {{thermos.ports[http]}} '
                                        '{{thermos.ports[health]}}"')
    jobs = [Job(cluster='local', role='me', environment='test', name='aurora_like',
                task=SequentialTask(processes=[setup, show], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)),
                announce=Announcer(portmap={'health': 'http'}))]
"""


def test_bind_values_a_profile_and_a_portmap_alias_as_under_aurora(tmp_path):
    cfg = write_config(tmp_path, AURORA_LIKE)
    refused = subprocess.run([sys.executable, "-m", "executor", "run", str(cfg), "--sandbox", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert refused.returncode == 2
    assert "Config contains unbound variables: {{greeting}} (bind them in the file, or with --bind" in refused.stderr
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(cfg), "--bind", "greeting=hello", "--instance", "3", "--sandbox", str(sandbox)],
                        tmp_path, env={"MY_TOOL": "kept"})
    try:
        assert run.wait() == 0
        ports = dict(pair.split("=") for pair in run.stdout().split("stoker run: ports ")[1].split("\n")[0].split(", "))
        assert ports["health"] == ports["http"]  # the alias resolves to the one allocated port
        assert (sandbox / ".logs/show/0/stdout").read_text() == (
            f"hello kept {sandbox} {ports['http']} {ports['http']}\n")
        assert (sandbox / ".logs/setup_3/0/stdout").exists()
    finally:
        run.close()
        kill_leftovers(task_pids(sandbox))


def test_a_job_of_hundreds_of_ports_runs_under_a_low_soft_descriptor_limit(tmp_path):
    """`stoker run` of a job naming 200 ports under `ulimit -Sn 128` (a job of 500 under the
    usual 1,024) was refused before its task started: 'no free loopback port could be
    chosen for p0, p1, ...: Too many open files' (each port's two sockets are held until
    every one is chosen). The task's processes get the soft limit the run was given."""
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1024:
        pytest.skip("a hard descriptor limit below 1,024 here")
    refs = " ".join(f"{{{{thermos.ports[p{i}]}}}}" for i in range(200))
    cfg = write_config(tmp_path, f"""
        jobs = [Job(cluster='local', role='me', environment='test', name='many',
                    task=Task(processes=[Process(name='a', cmdline='ulimit -Sn; echo {refs} | wc -w')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """)
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(cfg), "--sandbox", str(sandbox)], tmp_path,
                        env={"STOKER_PLAN_CACHE": str(tmp_path / "plans")},
                        launcher=("sh", "-c", 'ulimit -Sn 128 && exec "$@"', "sh"))
    try:
        assert run.wait() == 0, run.stdout() + run.stderr()
    finally:
        run.close()
        kill_leftovers(task_pids(sandbox))
    assert (sandbox / ".logs/a/0/stdout").read_text() == "128\n200\n"
