"""The `stoker` command: run, executor, inspect, status, tail. The only place logging is
configured. Every expected failure (bad config, bad sandbox, missing variables) ends in one
`stoker: error: ...` line and a non-zero exit, never in a bare traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from config.errors import ConfigError
from config.settings import SECRET_VARIABLES, ExecutorSettings, RunSettings, add_arguments
from executor.cli import logsetup
from executor.logs import log_event

EXIT_USAGE = 2
logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stoker",
        description="Run Aurora/Thermos job specs under Mesos or on this machine, with health checks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run a job on this machine, restarting it by the service rules")
    add_arguments(run, RunSettings)
    ex = sub.add_parser("executor", help="the Mesos executor (started by a Mesos agent; reads MESOS_*)")
    add_arguments(ex, ExecutorSettings)

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
        from executor.procs.hardening import hide_secrets

        environ = dict(os.environ)  # the settings' copy: from here on the token is only in memory
        hidden = hide_secrets(os.environ, SECRET_VARIABLES)  # first: see executor/procs/hardening.py
        from executor.mesos.executor import main as executor_main

        settings = ExecutorSettings.from_args(args, environ)
        logsetup.configure(settings.log_format, settings.log_level)
        log_event(logger, logging.WARNING if hidden.problems else logging.INFO, "secrets_hidden",
                  dumpable=hidden.dumpable, erased=hidden.erased, problems="; ".join(hidden.problems) or None)
        return executor_main(settings, environ)
    if args.command == "inspect":
        return _cmd_inspect(args)
    if args.command == "status":
        return _cmd_status(args)
    if args.command == "tail":
        return _cmd_tail(args)
    raise AssertionError(args.command)


def _cmd_run(args: argparse.Namespace) -> int:
    from executor.local.run import LocalRun, SandboxError

    settings = RunSettings.from_args(args, os.environ)
    logsetup.configure(settings.log_format, settings.log_level)
    try:
        return LocalRun(settings).run()
    except SandboxError as exc:
        print(f"stoker: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _cmd_inspect(args: argparse.Namespace) -> int:
    from config.document import encode
    from config.loader import load_job
    from executor.cli.inspect import describe_job

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

    from executor.cli.views import format_status
    from executor.task.checkpoint import read_records
    from executor.task.replay import replay

    sandbox = _default_sandbox(args.sandbox)
    try:
        records = read_records(sandbox)
    except OSError as exc:  # CheckpointError: e.g. a FIFO or a symlink where it should be
        print(f"stoker: error: {exc}", file=sys.stderr)
        return 1
    if not records:
        print(f"stoker: error: no checkpoint in {sandbox}/.stoker (is this a task sandbox?)", file=sys.stderr)
        return 1
    view = replay(records)
    if args.json:
        print(json.dumps(attrs.asdict(view, value_serializer=_jsonable), indent=2, default=str))
    else:
        text = format_status(view, time.time())
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _jsonable(_inst, _field, value):
    return value.value if hasattr(value, "value") and not isinstance(value, (int, float, str)) else value


def _cmd_tail(args: argparse.Namespace) -> int:
    from executor.cli.views import follow, latest_log

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
