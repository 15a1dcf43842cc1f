"""The `stoker` command: run, executor, inspect, status, tail. The only place logging is
configured. Every expected failure (bad config, bad sandbox, missing variables) ends in one
`stoker: error: ...` line and a non-zero exit, never in a bare traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from config.errors import ConfigError
from executor import logs

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stoker",
        description="Run Aurora/Thermos job specs under Mesos or on this machine, with health checks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def logging_flags(p: argparse.ArgumentParser, default_level: str) -> None:
        p.add_argument("--log-format", choices=("text", "json"), default=os.environ.get("STOKER_LOG_FORMAT", "text"),
                       help="log line format on stderr (env STOKER_LOG_FORMAT; default text)")
        p.add_argument("--log-level", default=os.environ.get("STOKER_LOG_LEVEL", default_level),
                       help=f"DEBUG, INFO, WARNING or ERROR (env STOKER_LOG_LEVEL; default {default_level})")

    run = sub.add_parser("run", help="run a job on this machine, restarting it by the service rules")
    run.add_argument("config", help="the .aurora file")
    run.add_argument("jobkey", nargs="?", help="cluster/role/environment/name (optional with one job)")
    run.add_argument("--instance", type=int, default=0, help="instance number, bound to {{mesos.instance}}")
    run.add_argument("--sandbox", default=os.environ.get("STOKER_SANDBOX"),
                     help="sandbox directory (created if missing, used as is if it exists)")
    run.add_argument("--port", action="append", default=[], metavar="NAME=NUM",
                     help="use this port number for a port name (repeatable)")
    run.add_argument("--kill-grace", type=float, default=None, metavar="SECS",
                     help="SIGTERM→SIGKILL grace on stop (default: the task's finalization_wait)")
    run.add_argument("--restart-backoff", type=float, default=1.0, metavar="SECS",
                     help="first restart delay after a quick task end; doubles each time (default 1)")
    run.add_argument("--restart-backoff-max", type=float, default=60.0, metavar="SECS",
                     help="largest restart delay (default 60)")
    logging_flags(run, "WARNING")

    ex = sub.add_parser("executor", help="the Mesos executor (started by a Mesos agent)")
    logging_flags(ex, "INFO")

    inspect = sub.add_parser("inspect", help="load and validate a job; print it, or its task document")
    inspect.add_argument("config")
    inspect.add_argument("jobkey", nargs="?")
    inspect.add_argument("--json", action="store_true", help="print the task document (TaskInfo.data)")

    status = sub.add_parser("status", help="print the checkpointed state of a task's sandbox")
    status.add_argument("sandbox", nargs="?", default=None,
                        help="sandbox directory (default $MESOS_SANDBOX, else the current directory)")
    status.add_argument("--json", action="store_true", help="print the replayed state as JSON")

    tail = sub.add_parser("tail", help="print a process's log of its latest run")
    tail.add_argument("sandbox")
    tail.add_argument("process")
    tail.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing what is appended")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"stoker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "executor":
        from executor.mesos_executor import main as executor_main

        logs.configure(args.log_format, args.log_level)
        return executor_main(dict(os.environ))
    if args.command == "inspect":
        return _cmd_inspect(args)
    if args.command == "status":
        return _cmd_status(args)
    if args.command == "tail":
        return _cmd_tail(args)
    raise AssertionError(args.command)


def _parse_ports(values: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in values:
        name, sep, number = item.partition("=")
        if not sep or not name or not number.isdigit() or not 0 < int(number) < 65536:
            raise ConfigError(f"--port {item!r}: expected NAME=NUMBER with NUMBER in 1..65535")
        ports[name] = int(number)
    return ports


def _cmd_run(args: argparse.Namespace) -> int:
    from executor.local import LocalRun, RunOptions, SandboxError

    logs.configure(args.log_format, args.log_level)
    options = RunOptions(
        config=args.config,
        jobkey=args.jobkey,
        instance=args.instance,
        sandbox=args.sandbox,
        ports=_parse_ports(args.port),
        kill_grace_secs=args.kill_grace,
        restart_backoff_secs=args.restart_backoff,
        restart_backoff_max_secs=args.restart_backoff_max,
    )
    try:
        return LocalRun(options).run()
    except SandboxError as exc:
        print(f"stoker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _cmd_inspect(args: argparse.Namespace) -> int:
    from config.document import encode
    from config.loader import load_job
    from executor.describe import describe_job

    job = load_job(args.config, args.jobkey)
    if args.json:
        sys.stdout.write(encode(job).decode("utf-8") + "\n")
    else:
        sys.stdout.write(describe_job(job))
    return 0


def _default_sandbox(given: str | None) -> Path:
    return Path(given or os.environ.get("MESOS_SANDBOX") or ".")


def _cmd_status(args: argparse.Namespace) -> int:
    import attrs

    from executor.checkpoint import read_records, replay
    from executor.sandbox_view import format_status

    sandbox = _default_sandbox(args.sandbox)
    records = read_records(sandbox)
    if not records:
        print(f"stoker: error: no checkpoint in {sandbox}/.stoker (is this a task sandbox?)", file=sys.stderr)
        return 1
    view = replay(records)
    if args.json:
        print(json.dumps(attrs.asdict(view, value_serializer=_jsonable), indent=2, default=str))
    else:
        sys.stdout.write(format_status(view, time.time()))
    return 0


def _jsonable(_inst, _field, value):
    return value.value if hasattr(value, "value") and not isinstance(value, (int, float, str)) else value


def _cmd_tail(args: argparse.Namespace) -> int:
    from executor.sandbox_view import follow, latest_log

    try:
        path = latest_log(Path(args.sandbox), args.process, args.stderr)
    except (FileNotFoundError, ValueError) as exc:
        print(f"stoker: error: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            out.write(chunk)
    out.flush()
    if args.follow:
        for chunk in follow(path, stop=lambda: False):
            out.write(chunk)
            out.flush()
    return 0
