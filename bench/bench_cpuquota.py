"""Bench: a task that burns its container's whole CPU quota, and the health checks of the
supervisor that shares the container with it (as root, on a cgroup v1 `cpu` hierarchy).

Under Mesos the executor, its health checker and the task share one container whose CPU is
capped by CFS bandwidth (`cpus=0.5` is cpu.cfs_quota_us 50000 per 100000 µs). For each quota
(10/30/50 % of a core) and each number of busy-loop processes (1, 4) this makes a cgroup
`stoker-cpuq-*` under /sys/fs/cgroup/cpu with that quota, starts in it a real HTTP service on
127.0.0.1 (a Python process answering `ok`, like a task's own), N busy loops, and a checker
process running Stoker's own `HttpChecker` every INTERVAL_SECS with TIMEOUT_SECS, for
DURATION_SECS; it prints the checks made, the ones failed, and the attempts' median and
worst durations. The checker runs at the nice it inherits (`nice 0`) or, `--nice N`, at N.
`--kind`: `stoker` (the above), `plain` (a check as Thermos makes it: urllib, the timeout a
socket timeout), `curl` (`bash -c 'curl ...'` forked from a process of 25 MB, as a shell
check is; the fork and exec timed apart).

Every process is started into the cgroup (written to cgroup.procs before anything runs in
it), its pid kept, and SIGKILLed in a `finally`; the cgroup is removed afterwards, also on
failure, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
INTERVAL_SECS = 0.2
TIMEOUT_SECS = 1.0
DURATION_SECS = 8.0

SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            return  # the checker gave up (timed out) and closed
    def log_message(self, *a):
        return  # no line per request
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""

CHECKER = r"""
import os, sys, time
nice, port, interval, timeout, duration, kind = (int(sys.argv[1]), int(sys.argv[2]),
    float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
if nice:
    os.setpriority(os.PRIO_PROCESS, 0, nice)
import threading
from healthcheck.http_check import HttpChecker
checker = HttpChecker(port=port, timeout_secs=timeout)
class Plain:  # Thermos' check: urllib, the timeout a socket timeout, throttled time counted
    def check(self):
        import urllib.request
        from healthcheck.policy import Attempt
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/health", timeout=timeout) as r:
                return Attempt.passed() if r.read().strip() == b"ok" else Attempt.failed("body")
        except Exception as exc:
            return Attempt.failed(f"plain: {exc}")
class Curl:  # a shell check's command, forked from a process of a supervisor's size
    ballast = bytearray(25 * 1024 * 1024)
    forks = []
    def check(self):
        import subprocess
        from healthcheck.policy import Attempt
        t0 = time.monotonic()
        p = subprocess.Popen(["/bin/bash", "-c", f"curl -sf http://127.0.0.1:{port}/health"],
                             stdout=subprocess.DEVNULL)
        self.forks.append(time.monotonic() - t0)  # Popen returns once the exec is done
        try:
            return Attempt.passed() if p.wait(timeout) == 0 else Attempt.failed("curl failed")
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()
            return Attempt.failed("curl: timed out")
if kind == "plain":
    checker = Plain()
if kind == "curl":
    Curl.ballast[::4096] = b"\1" * len(Curl.ballast[::4096])
    checker = Curl()
out = []
def loop():
    end = time.monotonic() + duration
    while time.monotonic() < end:
        t0 = time.monotonic()
        attempt = checker.check()
        out.append((attempt.outcome.value != "failed", time.monotonic() - t0, attempt.reason))
        time.sleep(interval)
t = threading.Thread(target=loop)
t.start()
t.join()
for healthy, took, why in out:
    print(int(healthy), round(took, 4), why, flush=True)
if kind == "curl":
    print("F", round(sorted(Curl.forks)[len(Curl.forks) // 2], 4), round(max(Curl.forks), 4))
"""


def interrupt_on_sigterm() -> None:
    """A SIGTERM (a `kill`, a CI timeout) raises KeyboardInterrupt as Ctrl-C does, so the
    `finally` that kills the busy loops and removes the cgroup runs for it too."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def make_cgroup(quota_pct: int) -> Path:
    d = CPU_ROOT / f"stoker-cpuq-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
    (d / "cpu.cfs_quota_us").write_text(str(PERIOD_US * quota_pct // 100))
    return d


def remove_cgroup(d: Path, pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.05)
    print(f"could not remove {d}", file=sys.stderr)


def start_in(d: Path, argv: list[str], pids: list[int], **kw: object) -> subprocess.Popen:
    """argv started inside cgroup d: the child writes itself into it before it execs."""
    procs = str(d / "cgroup.procs")

    def enter() -> None:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(argv, preexec_fn=enter, env=env, **kw)  # type: ignore[call-overload]
    pids.append(proc.pid)
    return proc


def one(quota_pct: int, busy: int, nice: int, kind: str) -> tuple[int, int, float, float, str]:
    d = make_cgroup(quota_pct)
    pids: list[int] = []
    try:
        server = start_in(d, [sys.executable, "-c", SERVER], pids, stdout=subprocess.PIPE, text=True)
        port = int(server.stdout.readline())
        for _ in range(busy):
            start_in(d, [sys.executable, "-c", "while True: pass"], pids)
        checker = start_in(d, [sys.executable, "-c", CHECKER, str(nice), str(port),
                               str(INTERVAL_SECS), str(TIMEOUT_SECS), str(DURATION_SECS), kind],
                           pids, stdout=subprocess.PIPE, text=True)
        out, _ = checker.communicate(timeout=DURATION_SECS * 10 + 30)
    finally:
        remove_cgroup(d, pids)
    rows = [line.split(" ", 2) for line in out.splitlines() if line and line[0] != "F"]
    forks = [line.split() for line in out.splitlines() if line.startswith("F ")]
    if forks:  # `failed` counts the timeout from the exec on; `over`, from before the fork
        over = sum(1 for r in rows if float(r[1]) > TIMEOUT_SECS)
        print(f"        (curl: fork and exec median {float(forks[0][1]) * 1000:.0f} ms, "
              f"worst {float(forks[0][2]) * 1000:.0f} ms; {over} over the timeout counted "
              f"from before the fork)")
    took = [float(r[1]) for r in rows]
    failed = [r for r in rows if r[0] == "0"]
    why = failed[0][2] if failed else ""
    return len(rows), len(failed), statistics.median(took), max(took), why


def main() -> None:
    global TIMEOUT_SECS, DURATION_SECS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nice", type=int, nargs="*", default=[0, -5])
    ap.add_argument("--quota", type=int, nargs="*", default=[10, 30, 50])
    ap.add_argument("--busy", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--timeout", type=float, default=TIMEOUT_SECS)
    ap.add_argument("--kind", nargs="*", default=["stoker", "plain"],
                    help="stoker: Stoker's HttpChecker; plain: urllib with a socket timeout; "
                         "curl: bash -c 'curl ...' forked from 25 MB, as a shell check")
    ap.add_argument("--duration", type=float, default=DURATION_SECS)
    args = ap.parse_args()
    TIMEOUT_SECS, DURATION_SECS = args.timeout, args.duration
    if os.geteuid() != 0 or not (CPU_ROOT / "cpu.cfs_quota_us").exists():
        sys.exit("needs root and a cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
    interrupt_on_sigterm()
    print(f"checks every {INTERVAL_SECS} s, timeout {TIMEOUT_SECS} s, {DURATION_SECS} s each")
    print(f"{'check':>6} {'quota':>6} {'busy':>4} {'nice':>4} {'checks':>6} {'failed':>6} "
          f"{'median ms':>9} {'worst ms':>8}  first failure")
    for quota in args.quota:
        for busy in args.busy:
            for nice, kind in [(n, k) for n in args.nice for k in args.kind]:
                n, bad, med, worst, why = one(quota, busy, nice, kind)
                print(f"{kind:>6} {quota:>5}% {busy:>4} {nice:>4} {n:>6} {bad:>6} "
                      f"{med * 1000:>9.1f} {worst * 1000:>8.1f}  {why[:60]}", flush=True)


if __name__ == "__main__":
    main()
