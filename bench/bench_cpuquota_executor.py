"""Bench: `stoker executor` inside a CPU-capped container whose task burns the whole quota
(as root, cgroup v1 `cpu` hierarchy). Companion of bench_cpuquota.py (the checker alone).

For each quota (10/30/50 % of a core) and N busy loops (1, 4), a cgroup `stoker-cpuq-*` with
that cfs quota is made; the real executor is started into it under the agent simulator (so
it, its health checker, its watchdog and every task process share the quota, as in a Mesos
container), and LAUNCHed a task of: `busy` (N shell busy loops), `web` (a Python HTTP
service on the `health` port answering `ok`, HTTP-checked every 0.5 s with the default 1 s
timeout, max_consecutive_failures high so failures are counted, not fatal) and `victim`
(`sleep 1000`, max_failures 0, min_duration 0). Figures, from the simulator's and the
checkpoint's records:

- LAUNCH → TASK_RUNNING (which waits for the first passing check);
- health attempts in HOLD_SECS and how many failed (the checkpoint's `health` records);
- kill -9 of `victim` → its next run's pid in the checkpoint (the restart);
- KILL (grace 1 s) → TASK_KILLED; with `--die`, SIGKILL of the executor → the container
  empty (its watchdog killed the task and exited);
- the executor's own CPU during those HOLD_SECS, and its reaped children's (the shell
  checks'), in ms per second (thousandths of a core);
- whether the executor ended on its own (exit code) and its log's WARNING/ERROR lines.

The cgroup is removed and every task pid and busy loop SIGKILLed in a `finally` (also on
Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import time
from pathlib import Path

import benchlib  # noqa: F401  (puts the repository on sys.path)
from bench_cpuquota import CPU_ROOT, interrupt_on_sigterm, make_cgroup, remove_cgroup
from benchlib import REPO, private_registry, workdir

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.ports import free_ports
from tests.support.stoker_proc import checkpoint_records, kill_leftovers, task_pids

HOLD_SECS = 6.0
WAIT_SECS = 60.0
SERVER = """import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        try:
            self.wfile.write(b"ok")
        except OSError:
            return  # the check gave up (timed out) and closed
    def log_message(self, *a):
        return  # no line per request
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
JOB = """
busy = Process(name='busy', cmdline='{reset}for i in $(seq {busy}); do (while :; do :; done) & done; wait')
web = Process(name='web', cmdline='{reset}exec {python} {server} {{{{thermos.ports[health]}}}}')
victim = Process(name='victim', cmdline='{reset}exec sleep 1000', max_failures=0, min_duration=0)
jobs = [Service(cluster='local', role={role!r}, environment='test', name='cpuq',
                task=Task(processes=[busy, web, victim],
                          resources=Resources(cpu=0.1, ram=16*MB, disk=16*MB),
                          finalization_wait=1),
                health_check_config=HealthCheckConfig(initial_interval_secs=0.5,
                    interval_secs=0.5, timeout_secs={timeout}, max_consecutive_failures=1000{checker}))]
"""

CHECKERS = {  # the health check: Stoker's HTTP GET, or a shell command doing the same
    "http": "",
    "curl": ", health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command="
            "'{reset}curl -sf http://127.0.0.1:{{thermos.ports[health]}}/health'))",
}


def runs_of(sandbox: Path, name: str) -> list[dict]:
    return [r for r in checkpoint_records(sandbox)
            if r.get("kind") == "process" and r.get("process") == name and r.get("pid")]


def cpu_ms(pid: int) -> tuple[float, float]:
    """A process's own CPU time and its reaped children's, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    return ((int(fields[11]) + int(fields[12])) * tick, (int(fields[13]) + int(fields[14])) * tick)


def wait(cond, secs: float = WAIT_SECS):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.005)
    raise TimeoutError("waited too long")


def end(sim: AgentSimulator, cg: Path, executor: int, die: bool) -> dict:
    """KILL (grace 1 s) → TASK_KILLED; or, `die`, SIGKILL the executor → its watchdog has
    emptied the container (every task process and itself gone)."""
    t = time.monotonic()
    if die:
        os.kill(executor, signal.SIGKILL)
        wait(lambda: not (cg / "cgroup.procs").read_text().strip())
        return {"killed": time.monotonic() - t, "exit": "-9", "warnings": []}
    sim.kill("task-1", grace_secs=1.0)
    killed = sim.wait_for_state("task-1", "TASK_KILLED", WAIT_SECS).at - t
    code = sim.wait_exit(WAIT_SECS)
    log = sim.executor_log().splitlines()
    return {"killed": killed, "exit": code,
            "warnings": [line for line in log if (" WARNING " in line or " ERROR " in line)
                         and "state=STARTING" not in line and "process=victim" not in line]}


def hold(sandbox: Path, executor: int) -> dict:
    """HOLD_SECS of the running task: the executor's CPU and its checks'; then the checks
    made since the first pass, and a SIGKILLed `victim`'s restart."""
    out: dict = {}
    before = cpu_ms(executor)
    time.sleep(HOLD_SECS)
    after = cpu_ms(executor)
    out["own"] = (after[0] - before[0]) / HOLD_SECS  # the executor's CPU, ms per second
    out["cmds"] = (after[1] - before[1]) / HOLD_SECS  # its reaped children's: the checks
    checks = [r for r in checkpoint_records(sandbox) if r.get("kind") == "health"]
    # the failures before the first pass are the service still starting (refused)
    first_pass = next(i for i, r in enumerate(checks) if r.get("outcome") == "passed")
    out["checks"] = len(checks) - first_pass
    out["failed"] = sum(1 for r in checks[first_pass:] if r.get("outcome") == "failed")
    out["worst"] = max(r.get("latency_secs") or 0.0 for r in checks[first_pass:])
    first = wait(lambda: runs_of(sandbox, "victim"))[-1]["pid"]
    t = time.monotonic()
    os.kill(first, signal.SIGKILL)
    wait(lambda: [r for r in runs_of(sandbox, "victim") if r["pid"] != first])
    out["restart"] = time.monotonic() - t
    return out


def one(root: Path, quota: int, busy: int, argv: list[str], nice: int, kind: str,
        timeout: float = 1.0, die: bool = False) -> dict:
    sandbox = root / f"q{quota}-b{busy}-{time.monotonic_ns()}"
    sandbox.mkdir()
    server = sandbox / "server.py"
    server.write_text(SERVER)
    job = sandbox / "job.aurora"
    # --nice N: the executor at N, each task process back at 0 (what a mitigation would do)
    reset = "renice -n 0 -p $$ >/dev/null; " if nice else ""
    job.write_text(JOB.format(busy=busy, python=sys.executable, server=server,
                              role=getpass.getuser(), reset=reset, timeout=timeout,
                              checker=CHECKERS[kind].replace("{reset}", reset)))
    sim = AgentSimulator(sandbox=sandbox)
    cg = make_cgroup(quota)  # the last step before the `try` that removes it
    # the executor enters the cgroup before it execs, so everything it starts is in it
    wrapped = ["/bin/sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec nice -n {nice} "$@"',
               "sh", *argv]
    out: dict = {}
    try:
        executor = sim.launch_executor(wrapped, cwd=sandbox, env_overrides={"PYTHONPATH": str(REPO)})
        sim.wait_subscribed(WAIT_SECS)
        t = time.monotonic()
        sim.launch(make_task_info("task-1", encode(load_job(job)), ports=free_ports(1)))
        out["running"] = sim.wait_for_state("task-1", "TASK_RUNNING", WAIT_SECS).at - t
        out.update(hold(sandbox, executor.pid))
        out.update(end(sim, cg, executor.pid, die))
        return out
    finally:
        pids = task_pids(sandbox)
        sim.close()
        kill_leftovers(pids)
        remove_cgroup(cg, [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quota", type=int, nargs="*", default=[10, 30, 50])
    ap.add_argument("--busy", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--executor-arg", action="append", default=[])
    ap.add_argument("--nice", type=int, default=0, help="the executor's nice (tasks at 0)")
    ap.add_argument("--check", choices=sorted(CHECKERS), default="http")
    ap.add_argument("--timeout", type=float, default=1.0, help="the check's timeout_secs")
    ap.add_argument("--die", action="store_true",
                    help="SIGKILL the executor instead of the KILL: KILLED ms is then the "
                         "time until its watchdog has emptied the container")
    args = ap.parse_args()
    if os.geteuid() != 0 or not (CPU_ROOT / "cpu.cfs_quota_us").exists():
        sys.exit("needs root and a cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
    interrupt_on_sigterm()
    argv = [sys.executable, "-m", "executor", "executor", *args.executor_arg]
    print(f"{'quota':>6} {'busy':>4} {'RUNNING ms':>10} {'checks':>6} {'failed':>6} "
          f"{'worst check ms':>14} {'exec cpu':>8} {'checks cpu':>10} {'restart ms':>10} {'KILLED ms':>9} {'exit':>4}  warnings")
    with private_registry(), workdir("cpuquota") as root:
        for quota in args.quota:
            for busy in args.busy:
                r = one(Path(root), quota, busy, argv, args.nice, args.check, args.timeout,
                        args.die)
                print(f"{quota:>5}% {busy:>4} {r['running'] * 1000:>10.0f} {r['checks']:>6} "
                      f"{r['failed']:>6} {r['worst'] * 1000:>14.0f} "
                      f"{r['own']:>8.1f} {r['cmds']:>10.1f} {r['restart'] * 1000:>10.0f} {r['killed'] * 1000:>9.0f} "
                      f"{r['exit']!s:>4}  {len(r['warnings'])}", flush=True)
                for line in r["warnings"][:5]:
                    print("      ", line[:160])


if __name__ == "__main__":
    main()
