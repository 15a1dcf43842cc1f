#!/usr/bin/env python3
"""fake_task: one stdlib-only script, driven by flags, that plays any task process in tests.

Run it as `python tests/support/fake_task.py FLAGS` (the interpreter in `sys.executable`).
Without `--exit-after` it runs until it is signalled.

Lifetime
  --exit-after SECS         exit after SECS seconds (0: at once, after the other flags' work)
  --exit-code N             exit status when it exits on its own (default 0)
  --ignore-sigterm          ignore SIGTERM (children forked afterwards inherit this)
  --pid-file F              write its own pid to F (atomically: F.tmp then rename)

Process trees
  --children N              fork N children that sleep forever in the same process group
  --children-pid-file F     write the children's pids, one per line, to F
  --child-ignore-sigterm    the children ignore SIGTERM
  --daemonize-child         double-fork + setsid a grandchild that sleeps forever (a classic
                            daemon: its parent exits at once, so it is re-parented)
  --daemon-ignore-sigterm   that daemon ignores SIGTERM
  --daemon-pid-file F       the daemon's pid in F, which appears only once the daemon's
                            parent (the middle of the double fork) is gone and reaped: a test
                            that read F sees the daemon alone, not that parent still exiting
  --daemon-undumpable       the daemon makes itself not dumpable first (prctl, as ssh-agent
                            does): only root may read its /proc/PID/environ
  --fork-hop SECS           fork a hopper that, for up to SECS, forks a child and exits, again
                            and again, each generation in a new session (setsid): there is
                            never a process that stays put long enough to be signalled late
  --hop-pid-file F          each hopper generation writes its pid to F (atomically); the
                            caller goes on once the first did (it left the caller's group)
  --hop-stop-file F         the hopper stops (its current generation exits) once F exists
  --hop-every SECS          each generation lives SECS after writing its pid before it forks
                            the next (default 0: at once): a walk's move of one it listed
                            then meets it alive, so that what is tested is what it lists

Output
  --stdout-bytes N          write N bytes to stdout as fast as it can (1 MiB writes), then go on
  --print-env NAME          print `NAME=value` (or `NAME is unset`) to stdout; repeatable
  --stderr-text TEXT        write TEXT and a newline to stderr

Secrets
  --hunt-secret HEX         look for the bytes HEX (hex, so they are not in this process's own
                            command line) in every /proc/PID/{environ,cmdline} and
                            /proc/PID/task/TID/{environ,cmdline} this process can read, and
                            read its parent's environment as an attacker would
  --hunt-out F              write what it found as JSON to F (atomically)

Health and lifecycle (HTTP/1.0 on 127.0.0.1)
  --serve-health PORT       serve on PORT (0: any free port; see --port-file)
  --port-file F             write the port actually bound to F
  --health-fail-after N     GET /health answers 500 after the first N requests
  --health-ok-after N       GET /health answers 500 for the first N requests, then ok
  --lifecycle-log F         append `quitquitquit` / `abortabortabort` lines for each POST
  --exit-on-quit            POST /quitquitquit makes the process exit (status --exit-code)
  --exit-on-abort           POST /abortabortabort makes the process exit with status 137
  --lifecycle-code N        answer both lifecycle POSTs with HTTP N (default 200; 501: a
                            service that does not implement them)
  --health-body TEXT        GET /health answers 200 with TEXT instead of `ok`

TCP
  --accept-tcp PORT         accept connections on 127.0.0.1:PORT and close each at once
                            (a TCP health target that keeps up with any check rate)

GET /health answers 200 `ok` (or 500 `failing`); any other path answers 404.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import time


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fake_task", description="a scriptable task process")
    p.add_argument("--exit-after", type=float, default=None)
    p.add_argument("--exit-code", type=int, default=0)
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--pid-file")
    p.add_argument("--children", type=int, default=0)
    p.add_argument("--children-pid-file")
    p.add_argument("--child-ignore-sigterm", action="store_true")
    p.add_argument("--daemonize-child", action="store_true")
    p.add_argument("--daemon-ignore-sigterm", action="store_true")
    p.add_argument("--daemon-pid-file")
    p.add_argument("--daemon-undumpable", action="store_true")
    p.add_argument("--fork-hop", type=float, default=None)
    p.add_argument("--hop-pid-file")
    p.add_argument("--hop-stop-file")
    p.add_argument("--hop-every", type=float, default=0.0)
    p.add_argument("--stdout-bytes", type=int, default=0)
    p.add_argument("--print-env", action="append", default=[])
    p.add_argument("--stderr-text")
    p.add_argument("--hunt-secret")
    p.add_argument("--hunt-out")
    p.add_argument("--serve-health", type=int, default=None)
    p.add_argument("--port-file")
    p.add_argument("--health-fail-after", type=int, default=None)
    p.add_argument("--health-ok-after", type=int, default=None)
    p.add_argument("--lifecycle-log")
    p.add_argument("--exit-on-quit", action="store_true")
    p.add_argument("--exit-on-abort", action="store_true")
    p.add_argument("--lifecycle-code", type=int, default=200)
    p.add_argument("--health-body", default="ok")
    p.add_argument("--accept-tcp", type=int, default=None)
    return p.parse_args(argv)


def _fork_children(n: int, ignore_sigterm: bool, pid_file: str | None) -> None:
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            if ignore_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _sleep_forever()
        pids.append(pid)
    if pid_file:
        _write_atomic(pid_file, "".join(f"{p}\n" for p in pids))


def _daemonize(ignore_sigterm: bool, pid_file: str | None, undumpable: bool = False) -> None:
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        if undumpable:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
        if ignore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        if pid_file:
            _write_atomic(pid_file + ".daemon", f"{os.getpid()}\n")
        _sleep_forever()
    os.waitpid(middle, 0)
    if pid_file:
        deadline = time.monotonic() + 10
        while not os.path.exists(pid_file + ".daemon") and time.monotonic() < deadline:
            time.sleep(0.005)
        os.rename(pid_file + ".daemon", pid_file)  # the middle reaped: only now is F there


def _fork_hop(secs: float, pid_file: str | None, stop_file: str | None, every: float = 0.0) -> None:
    """Start the hopper and return (the caller goes on with its other flags): with a
    `pid_file`, once its first generation wrote it, in a session of its own; until then the
    hopper is in the caller's process group, which a run that exits takes with it (a loaded
    host that had not scheduled the hopper before `--exit-after 0.3` ran out left no hopper)."""
    if pid_file:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)
    if os.fork() != 0:
        deadline = time.monotonic() + 10
        while pid_file and not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.005)
        return
    until = time.monotonic() + secs
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        if os.fork() != 0:
            os._exit(0)  # the parent goes at once: its child is the hopper now
        os.setsid()
        if time.monotonic() > until or (stop_file and os.path.exists(stop_file)):
            os._exit(0)
        if pid_file:
            _write_atomic(pid_file, f"{os.getpid()}\n")
        if every > 0:
            time.sleep(every)


def _write_stdout(n: int) -> None:
    block = (b"0123456789abcdef" * 65536)  # 1 MiB
    out = sys.stdout.buffer
    out.flush()
    left = n
    while left > 0:
        chunk = block if left >= len(block) else block[:left]
        view = memoryview(chunk)
        while view:
            written = os.write(1, view)
            view = view[written:]
        left -= len(chunk)


def _read_proc(path: str) -> bytes | int:
    """The file's bytes, or the errno that stopped us reading it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        return e.errno or 0


def _hunt(secret_hex: str, out: str) -> None:
    secret = bytes.fromhex(secret_hex)
    parent = os.getppid()
    report: dict = {"pid": os.getpid(), "ppid": parent, "hits": [], "read": 0, "denied": 0,
                    "environ_read": [], "cmdline_read": [], "parent_paths_read": []}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{name}/task")
        except OSError:
            tids = []
        bases = [f"/proc/{name}"] + [f"/proc/{name}/task/{tid}" for tid in tids]
        for base in bases:
            for kind in ("environ", "cmdline"):
                data = _read_proc(f"{base}/{kind}")
                if isinstance(data, int):
                    report["denied"] += data in (errno.EACCES, errno.EPERM)
                    continue
                report["read"] += 1
                report[f"{kind}_read"].append(int(name))
                if int(name) == parent:
                    report["parent_paths_read"].append(f"{base}/{kind}")
                if secret in data:
                    report["hits"].append(f"{base}/{kind}")
    data = _read_proc(f"/proc/{parent}/environ")
    if isinstance(data, int):
        report["parent_environ"] = {"readable": False, "error": errno.errorcode.get(data, str(data))}
    else:
        report["parent_environ"] = {
            "readable": True, "secret": secret in data,
            "variable": b"MESOS_EXECUTOR_AUTHENTICATION_TOKEN=" in data}
    _write_atomic(out, json.dumps(report))


def _serve(args: argparse.Namespace) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path != "/health":
                return self._answer(404, b"not found")
            with lock:
                count[0] += 1
                n = count[0]
            ok = True
            if args.health_fail_after is not None and n > args.health_fail_after:
                ok = False
            if args.health_ok_after is not None and n <= args.health_ok_after:
                ok = False
            if ok:
                self._answer(200, args.health_body.encode())
            else:
                self._answer(500, b"failing")

        def do_POST(self) -> None:
            name = self.path.strip("/")
            if name not in ("quitquitquit", "abortabortabort"):
                return self._answer(404, b"not found")
            if args.lifecycle_log:
                with lock, open(args.lifecycle_log, "a") as f:
                    f.write(name + "\n")
            self._answer(args.lifecycle_code, b"ok" if args.lifecycle_code < 300 else b"no")
            self.wfile.flush()
            if name == "quitquitquit" and args.exit_on_quit:
                os._exit(args.exit_code)
            if name == "abortabortabort" and args.exit_on_abort:
                os._exit(137)

    server = ThreadingHTTPServer(("127.0.0.1", args.serve_health), Handler)
    if args.port_file:
        _write_atomic(args.port_file, f"{server.server_address[1]}\n")
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _accept_tcp(port: int) -> None:
    import socket

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(4096)

    def accept() -> None:
        while True:
            server.accept()[0].close()

    threading.Thread(target=accept, daemon=True).start()


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.pid_file:
        _write_atomic(args.pid_file, f"{os.getpid()}\n")
    for name in args.print_env:
        value = os.environ.get(name)
        print(f"{name}={value}" if value is not None else f"{name} is unset", flush=True)
    if args.stderr_text is not None:
        print(args.stderr_text, file=sys.stderr, flush=True)
    if args.hunt_secret:
        _hunt(args.hunt_secret, args.hunt_out or "hunt.json")
    if args.children:
        _fork_children(args.children, args.child_ignore_sigterm, args.children_pid_file)
    if args.daemonize_child:
        _daemonize(args.daemon_ignore_sigterm, args.daemon_pid_file, args.daemon_undumpable)
    if args.fork_hop is not None:
        _fork_hop(args.fork_hop, args.hop_pid_file, args.hop_stop_file, args.hop_every)
    if args.stdout_bytes:
        _write_stdout(args.stdout_bytes)
    if args.accept_tcp is not None:
        _accept_tcp(args.accept_tcp)
    if args.serve_health is not None:
        _serve(args)
    if args.exit_after is None:
        _sleep_forever()
    time.sleep(args.exit_after)
    sys.stdout.flush()
    os._exit(args.exit_code)  # children stay behind, as a real leaky process's would


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
