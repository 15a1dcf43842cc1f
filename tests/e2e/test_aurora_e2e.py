"""Apache Aurora's own end-to-end suite, its executor-side checks replayed against Stoker.

Aurora's e2e script runs a few jobs through the scheduler and Thermos and checks what a user
sees. Each test here is one of those jobs, rewritten with small intervals and our own
server, run by `stoker executor` under the agent simulator with the Thrift AssignedTask
the scheduler would send (or by `stoker run`), checking what Aurora's script checks:

- `test_http_example`: a SequentialTask that writes `.thermos_profile`, reads it back,
  prints its ports (`alias` is the portmap's alias of `http`), checks quoting, stages and
  runs a server answering `/health` on one port and everything on another; the task is
  RUNNING once healthy, the observer shows it at Thermos' address (`/task/ID`, where
  Aurora's scheduler UI links), the sandbox holds `.logs`, and a kill ends it (the server
  answers the lifecycle POSTs 501, which is not waited for);
- the bad health check update (`http_example_bad_healthcheck.aurora`): a shell check that
  only a privileged user could pass (`rm -f` of a file the role may not remove) never
  passes, so the task fails and the scheduler rolls the update back;
- `test_ephemeral_daemon_with_final`: the main process waits for a file, an ephemeral
  daemon runs beside it; once main is done the daemon is stopped and the final process
  removes the file;
- `test_http_example` under `stoker run`: what `stoker status` shows, and a stop.

Aurora's other e2e checks are covered elsewhere or are the scheduler's (docs/aurora.md §14).
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.aurora_tasks import assigned_task, client_json
from tests.support.ports import free_ports
from tests.support.shellwords import in_aurora, python_sh, sh
from tests.support.stoker_proc import REPO, StokerProcess, kill_leftovers, live, task_pids
from tests.support.users import open_sandbox, throwaway_user
from tests.support.waiting import wait_for

EXECUTOR = [sys.executable, "-m", "executor", "executor"]
ME = getpass.getuser()
TID = "vagrant-test-http_example-0-5d1c3b2a-7e4f-4a8b-9c0d-1e2f3a4b5c6d"

# Our own stand-in for Aurora's http_example.py: `Hello!` on the first port, `ok` on
# /health on the second; like any BaseHTTPRequestHandler without do_POST, it answers the
# lifecycle's POSTs with 501.
SERVER = """
import sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"Hello!\\n")

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")

for port, handler in zip(sys.argv[1:3], (Hello, Health)):
    server = HTTPServer(("", int(port)), handler)
    threading.Thread(target=server.serve_forever).start()
    print("Listening on port", port, flush=True)
"""

HTTP_EXAMPLE = """
    setup_env = Process(name='setup_env', cmdline='''cat <<EOF > .thermos_profile
    export IT_WORKED=hello
    EOF''')
    read_env = Process(name='read_env', cmdline='echo "$IT_WORKED"')
    echo_ports = Process(name='echo_ports', cmdline='echo "tcp port: {{thermos.ports[tcp]}}; '
        'http port: {{thermos.ports[http]}}; alias: {{thermos.ports[alias]}}; health: {{thermos.ports[health]}}"')
    verify_command_escaping = Process(name='verify_command_escaping', cmdline='''
    %(python)s -c 'import sys

    if __name__ == "__main__":
      sys.exit(0)'
    ''')
    stage_server = Process(name='stage_server', cmdline='cp %(server)s http_example.py')
    run_server = Process(name='run_server',
                         cmdline='%(python)s http_example.py {{thermos.ports[http]}} {{thermos.ports[health]}}')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='http_example',
                    task=SequentialTask(name='http_example', finalization_wait=5,
                      resources=Resources(cpu=0.5, ram=32*MB, disk=64*MB),
                      processes=[setup_env, read_env, echo_ports, verify_command_escaping, stage_server,
                                 run_server]),
                    # RUNNING at the first answer; 0.5 s of grace ran out in CI at load 10 (the server is a Python)
                    health_check_config=HealthCheckConfig(initial_interval_secs=10, interval_secs=0.05),
                    announce=Announcer(portmap={'alias': 'http'}))]
"""


def write_job(tmp_path: Path, body: str, **values: str) -> Path:
    (tmp_path / "http_example.py").write_text(SERVER)
    path = tmp_path / "job.aurora"
    path.write_text(textwrap.dedent(body % dict(python=in_aurora(python_sh()), server=in_aurora(sh(tmp_path / "http_example.py")),
                                                role=ME, **values)))
    return path


def launch(sim: AgentSimulator, data: bytes) -> None:
    sim.launch_executor(EXECUTOR, cwd=sim.sandbox)
    sim.wait_subscribed(timeout_secs=10)
    sim.launch(make_task_info(TID, data))


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def last_line(path: Path) -> str | None:
    return path.read_text().splitlines()[-1] if path.exists() and path.read_text() else None


def test_http_example_is_healthy_shown_at_thermos_observer_address_and_killed(agent, tmp_path):
    observer = StokerProcess(["observe", "--port", "0", "--root", os.environ["STOKER_ROOT"]], tmp_path)
    try:
        http, health, tcp = free_ports(3)
        data = assigned_task(client_json(write_job(tmp_path, HTTP_EXAMPLE)), role=ME, name="http_example",
                             task_id=TID, ports={"http": http, "health": health, "tcp": tcp})
        launch(agent, data)
        running = agent.wait_for_state(TID, "TASK_RUNNING", 15)  # test_job_status: RUNNING
        assert running.healthy is True
        logs = agent.sandbox / ".logs"
        assert last_line(logs / "read_env/0/stdout") == "hello"  # test_thermos_profile
        assert last_line(logs / "echo_ports/0/stdout") == (
            f"tcp port: {tcp}; http port: {http}; alias: {http}; health: {health}")
        assert get(f"http://127.0.0.1:{health}/health") == (200, "ok")
        assert get(f"http://127.0.0.1:{http}/") == (200, "Hello!\n")
        assert ".logs" in os.listdir(agent.sandbox)  # test_run: `aurora task run JOB 'ls -a'`
        out = observer.wait_output("stoker observe: http://", timeout_secs=30)
        url = out.split("stoker observe: ", 1)[1].split(" ", 1)[0].rstrip("/")
        status, page = get(f"{url}/task/{TID}")  # test_observer_ui, and Aurora's UI link
        assert status == 200 and TID in page and "run_server" in page
        pids = task_pids(agent.sandbox)
        agent.kill(TID)  # test_kill
        killed = agent.wait_for_state(TID, "TASK_KILLED", 15)
        assert agent.states(TID) == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLED"], killed.message
        log = agent.executor_log()
        assert "/quitquitquit answered HTTP 501; not waiting" in log
        assert "/abortabortabort answered HTTP 501; not waiting" in log
        assert not live(pids)
        assert agent.wait_exit(10) == 0
    finally:
        observer.close()


BAD_HEALTHCHECK = """
    stage_server = Process(name='stage_server', cmdline='echo staged')
    run_server = Process(name='run_server', cmdline='exec sleep 600 # {{thermos.ports[http]}} {{thermos.ports[health]}}')
    jobs = [Service(cluster='devcluster', role='%(role)s', environment='test', name='http_example',
                    task=Task(name='http_example', processes=[stage_server, run_server],
                              constraints=order(stage_server, run_server), finalization_wait=2,
                              resources=Resources(cpu=0.5, ram=32*MB, disk=64*MB)),
                    health_check_config=HealthCheckConfig(
                      health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command='rm -f %(locked)s')),
                      initial_interval_secs=0.25, interval_secs=0.05, min_consecutive_successes=5),
                    announce=Announcer())]
"""


def test_a_shell_check_only_a_privileged_user_could_pass_fails_the_task(tmp_path):
    # Aurora checks `rm -f /etc/passwd`: the check must not run privileged, and its failure
    # fails the task. Here the file is one in a directory nobody but root may write to.
    with open_sandbox() as sandbox, open_sandbox() as locked_dir, role_user() as role:
        locked = Path(locked_dir) / "passwd"
        locked.write_text("keep me\n")
        os.chmod(locked_dir, 0o555)
        path = tmp_path / "bad.aurora"
        path.write_text(textwrap.dedent(BAD_HEALTHCHECK % dict(role=role, locked=locked)))
        with AgentSimulator(sandbox=sandbox) as sim:
            try:
                launch(sim, assigned_task(client_json(path), role=role, name="http_example", task_id=TID,
                                          ports=dict(zip(("http", "health"), free_ports(2)))))
                failed = sim.wait_for_state(TID, "TASK_FAILED", 15)
                assert sim.states(TID) == ["TASK_STARTING", "TASK_FAILED"], failed.message
                assert "health command exited with status 1" in failed.message, failed.message
                assert "Permission denied" in failed.message  # it did not run privileged
                assert locked.read_text() == "keep me\n"
                assert not live(task_pids(sandbox))
                assert sim.wait_exit(10) == 0
            finally:
                kill_leftovers(task_pids(sandbox))
                os.chmod(locked_dir, 0o755)  # so that a non-root owner can remove it


@contextlib.contextmanager
def role_user() -> Iterator[str]:
    """The job's role: a user of its own under a root executor (which runs the task as its
    role), else the executor's own user."""
    if os.geteuid() != 0:
        yield ME
        return
    with throwaway_user() as (user, _):
        yield user.pw_name


EPHEMERAL_DAEMON_WITH_FINAL = """
    ephemeral_daemon = Process(name='ephemeral_daemon', daemon=True, ephemeral=True,
                               cmdline='echo "ephemeral daemon started"; sleep 3600')
    main = Process(name='main', cmdline='while [[ ! -e {{stop_file}} ]]; do sleep 0.02; done; echo "main OK"')
    final = Process(name='final', final=True, cmdline='rm {{stop_file}}; echo "final OK"')
    jobs = [Job(cluster='devcluster', role='%(role)s', environment='test', name='ephemeral_daemon_with_final',
                task=Task(name='ephemeral_daemon_with_final', processes=[ephemeral_daemon, main, final],
                          resources=Resources(cpu=0.4, ram=32*MB, disk=64*MB)))]
"""


def test_ephemeral_daemon_with_final_stops_the_daemon_and_runs_final(agent, tmp_path):
    stop_file = tmp_path / "stop"
    job = client_json(write_job(tmp_path, EPHEMERAL_DAEMON_WITH_FINAL), bindings=(("stop_file", str(stop_file)),))
    launch(agent, assigned_task(job, role=ME, name="ephemeral_daemon_with_final", task_id=TID))
    agent.wait_for_state(TID, "TASK_RUNNING", 15)
    logs = agent.sandbox / ".logs"
    wait_for(lambda: last_line(logs / "ephemeral_daemon/0/stdout"), 5, message="the daemon's first line")
    daemon = task_pids(agent.sandbox)
    stop_file.touch()  # stops `main`
    agent.wait_for_state(TID, "TASK_FINISHED", 15)
    assert agent.states(TID) == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert not stop_file.exists()  # removed by `final`
    assert [last_line(logs / f"{p}/0/stdout") for p in ("ephemeral_daemon", "main", "final")] == [
        "ephemeral daemon started", "main OK", "final OK"]
    assert not live(daemon)
    assert agent.wait_exit(10) == 0


def test_http_example_under_stoker_run_shows_healthy_and_stops_without_waiting_on_501(tmp_path):
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(write_job(tmp_path, HTTP_EXAMPLE)), "--sandbox", str(sandbox)], tmp_path)
    try:
        run.wait_output("task                         STARTING → RUNNING", timeout_secs=15)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        shown = subprocess.run([sys.executable, "-m", "executor", "status", str(sandbox), "--json"],
                               capture_output=True, text=True, timeout=30, env=env)
        status = json.loads(shown.stdout)
        ports = status["ports"]
        assert ports["alias"] == ports["http"] and {"health", "tcp"} <= set(ports), ports
        assert get(f"http://127.0.0.1:{ports['health']}/health") == (200, "ok")
        assert last_line(sandbox / ".logs/read_env/0/stdout") == "hello"
        run.signal(signal.SIGTERM)
        assert run.wait() == 143
        out = run.stdout()
        assert "quitquitquit answered HTTP 501; not waiting" in out
        assert "run_server[0]                RUNNING → KILLED" in out
    finally:
        run.close()
        kill_leftovers(task_pids(sandbox))
