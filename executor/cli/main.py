"""The `stoker` command: run, executor, inspect, status, ps, tail, kill, restart, observe. The
only place logging is configured; the inspection and control commands live in their own
modules (`status`, `ps`, `tail`, `control`, `observe`), each registering its subcommands. Every expected failure (bad config, bad sandbox, missing variables, a sandbox
argument that is no directory) ends in one `stoker: error: ...` line naming the real cause
and a non-zero exit (docs/contract.md §9), never in a bare traceback; every argument has a
help text and every command an example.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

import executor
from config.errors import ConfigError, in_file
from config.registry import RegistrySettings
from config.settings import (
    SECRET_VARIABLES,
    ExecutorSettings,
    RunSettings,
    add_arguments,
    flag_conflicts,
    variables,
)
from executor import codecache
from executor.cli import UsageError, logsetup
from executor.logs import drain_spool, log_event, no_room

EXIT_USAGE = 2
logger = logging.getLogger(__name__)
# `stoker run` prints these state changes on stdout: its text stderr log does not repeat them.
RUN_PRINTED_EVENTS = ("task_state", "task_phase", "process_state", "kill_stage", "run_prepared",
                      "run_warning", "run_ended", "task_restarting", "ports_taken")


class _Help(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, told the terminal's width as `shutil.get_terminal_size` finds
    it ($COLUMNS, else the terminal of stdout, else 80) without importing shutil (and with
    it zlib, bz2 and lzma): argparse makes a formatter for every argument it adds, so every
    command paid that import at start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)  # argparse's own margin


def _columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns or 80) if stdout is not None else 80
    except (ValueError, OSError):  # stdout closed, or not a terminal
        return 80


def _command(sub, name: str, summary: str, example: str, details: str = "") -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + "." + details,
                          epilog=example, formatter_class=_Help)


# The commands whose start is timed (bench/bench_launch.py): for them alone, only their own
# arguments are built (the whole parser, with every command's, takes several milliseconds).
SUPERVISORS = ("run", "executor")


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `stoker` parser; `only` (one of SUPERVISORS): with that command alone."""
    parser = argparse.ArgumentParser(
        prog="stoker",
        description="Run Aurora/Thermos job specs under Mesos or on this machine, with health checks.",
        epilog="Example: stoker run examples/hello_world.aurora   (Ctrl-C stops it)\n"
               "Every command: stoker COMMAND --help.",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"stoker {executor.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    if only in (None, "run"):
        _run_command(sub)
    if only in (None, "executor"):
        ex = _command(sub, "executor", "the Mesos executor, started by a Mesos agent",
                      _variables_epilog(), " It reads the agent's MESOS_* variables (below).")
        add_arguments(ex, ExecutorSettings)
        add_arguments(ex, RegistrySettings)
    if only is None:
        _inspection_commands(sub)
    return parser


def _run_command(sub) -> None:
    run = _command(sub, "run", "run a job on this machine, restarting it by the service rules",
                   "examples:\n  stoker run examples/hello_world.aurora\n"
                   "  stoker run jobs.aurora devcluster/www-data/prod/hello --port http=8080 "
                   "--kill-grace 5\n\n"
                   "Ctrl-C, SIGTERM or SIGHUP stop it gracefully (exit 130, 143, 129); a second "
                   "one kills at once.")
    add_arguments(run, RunSettings)
    add_arguments(run, RegistrySettings)


def _inspection_commands(sub) -> None:
    from executor.cli import control, observe, ps, status, tail

    inspect = _command(sub, "inspect", "load and validate a job; print it, or its task document; or print "
                                       "the task a Mesos TaskInfo carries",
                       "examples:\n  stoker inspect examples/hello_world.aurora\n"
                       "  stoker inspect --json jobs.aurora devcluster/www-data/prod/hello | base64 -w0\n"
                       "  stoker inspect jobs.aurora --bind stop_file=/tmp/stop\n"
                       "  stoker inspect --task-info task_info.json --json")
    inspect.add_argument("config", nargs="?", metavar="CONFIG", help="the .aurora (or JSON) file defining the job")
    inspect.add_argument("jobkey", nargs="?", metavar="JOBKEY",
                         help="cluster/role/environment/name; optional when the file has one job")
    inspect.add_argument("--json", action="store_true",
                         help="print the task document for Mesos' TaskInfo.data instead; with --task-info, "
                              "the task as one JSON object")
    inspect.add_argument("--bind", action="append", default=[], metavar="KEY=VALUE",
                         help="bind a template value, as the Aurora client's --bind (repeatable)")
    inspect.add_argument("--task-info", metavar="FILE",
                         help="a Mesos TaskInfo as the agent's JSON (data base64): print its task exactly "
                              "as `stoker executor` would run it (Stoker's task document or Aurora's "
                              "AssignedTask); runs nothing")

    for command in (status, ps, tail, control, observe):  # each registers its own subcommands
        command.register(sub, _command)


def _variables_epilog() -> str:
    rows = variables(ExecutorSettings) + variables(RegistrySettings) + [
        ("STOKER_CODE_CACHE", "where attrs' compiled methods are kept (default: the package's "
                              "__pycache__; an absolute directory; off)")]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:<{width}}  {meaning}" for name, meaning in rows]
    return "environment (MESOS_*: set by the agent; docs/contract.md §8):\n" + "\n".join(lines) + \
        "\n\nexample (what an agent runs):\n  MESOS_AGENT_ENDPOINT=127.0.0.1:5051 " \
        "MESOS_FRAMEWORK_ID=... MESOS_EXECUTOR_ID=... stoker executor"


def run() -> NoReturn:
    """`stoker` itself (the console script, and `python -m executor`): `main()`, then the
    process ends without the interpreter's teardown of every module and object, which costs
    a third as much CPU as importing them did and delays every command's exit (and `stoker
    run`'s stop) for nothing: whatever Stoker writes is on disk, or flushed here first. A
    live thread that is not a daemon (none should be left) gets the ordinary exit instead,
    which waits for it."""
    try:
        code: object = main()
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        code = exc.code
    except BaseException:  # a bug: what `stoker run` printed last comes out before its traceback
        drain_spool()
        raise
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    codecache.save()  # what this command compiled of attrs' methods, for the next one
    if not drain_spool():  # a terminal that stopped reading (Ctrl-S): not waited for longer,
        os._exit(status)  # nor flushed (its writer holds the streams' locks)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # a reader gone, or no such stream
            pass
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(status)
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = _parser(words[0] if words and words[0] in SUPERVISORS else None).parse_args(argv)
    if args.command == "inspect" and not args.task_info and args.config is not None:
        from executor.cli.apart import run_apart

        command = functools.partial(_handled, functools.partial(_cmd_inspect, args))
        return _handled(functools.partial(run_apart, command, args.config))
    return _handled(functools.partial(_dispatch, args))


def _handled(command: Callable[[], int]) -> int:
    """`command()`'s status, or the status and one error line of an expected failure."""
    try:
        return command()
    except (ConfigError, UsageError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except (RuntimeError, OSError) as exc:
        why = no_room(exc)
        if why is None:
            raise
        _error(f"cannot go on: {why}")
        return EXIT_USAGE


def _error(message: str) -> None:
    logsetup.say("error", message)


def _quiet_stdout() -> None:
    """The reader closed stdout: point it at /dev/null so the interpreter's last flush of
    what is still buffered does not print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _dispatch(args: argparse.Namespace) -> int:
    if hasattr(args, "handler"):
        return args.handler(args)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "executor":
        from executor.procs.hardening import hide_secrets

        environ = dict(os.environ)  # the settings' copy: from here on the token is only in memory
        hidden = hide_secrets(os.environ, SECRET_VARIABLES)  # first: see executor/procs/hardening.py
        from executor.mesos.process import main as executor_main

        settings = ExecutorSettings.from_args(args, environ)
        logsetup.configure(settings.log_format, settings.log_level)
        log_event(logger, logging.WARNING if hidden.problems else logging.INFO, "secrets_hidden",
                  dumpable=hidden.dumpable, erased=hidden.erased, problems="; ".join(hidden.problems) or None)
        from executor.cli.targets import run_held_executor

        return run_held_executor(settings, RegistrySettings.from_args(args, environ), environ,
                                 executor_main)
    if args.command == "inspect":
        return _cmd_inspect_task_info(args) if args.task_info else _cmd_inspect(args)
    raise AssertionError(args.command)


def _cmd_run(args: argparse.Namespace) -> int:
    from executor.cli import launch
    from executor.local.run import LocalRun, SandboxError

    early = launch.take()  # the early start's runs, when the entry point made one
    ahead = launch.take_ahead()  # or the child it forked to plan a first run
    try:
        settings = RunSettings.from_args(args, os.environ)
        logsetup.configure(settings.log_format, settings.log_level,  # JSON: every event, for a program
                           drop_events=RUN_PRINTED_EVENTS if settings.log_format == "text" else (),
                           spooled=True)
        for conflict in flag_conflicts(RunSettings, args, os.environ):
            logsetup.say("warning", conflict)
        run = LocalRun(settings, registry=RegistrySettings.from_args(args, os.environ), early=early, ahead=ahead,
                       spooled=True)
        early = ahead = None  # the run's to adopt, take or give up
        return run.run()
    except SandboxError as exc:
        _error(str(exc))
        return EXIT_USAGE
    finally:
        if early is not None:
            early.abandon()
        if ahead is not None:
            ahead.cancel()


def _cmd_inspect(args: argparse.Namespace) -> int:
    from config.document import encode
    from config.loader import check_bound, load_job
    from config.settings import parse_bindings
    from executor.cli.inspect import describe_job

    if args.config is None:
        _error("inspect needs a CONFIG file (or --task-info FILE)")
        return EXIT_USAGE
    try:
        bindings = parse_bindings(args.bind)
    except ValueError as exc:
        raise ConfigError(f"--bind {exc}") from None
    job = load_job(args.config, args.jobkey, bindings)
    check_bound(job, args.config)
    if args.json:
        sys.stdout.write(encode(job).decode("utf-8") + "\n")
    else:
        try:
            text = describe_job(job)  # binds it as `stoker run` would
        except ConfigError as exc:
            raise in_file(exc, args.config) from None
        sys.stdout.write(text)
    return 0


def _cmd_inspect_task_info(args: argparse.Namespace) -> int:
    import socket

    from executor.cli.inspect import describe_launch, launch_json
    from executor.mesos.errors import RemoteProtocolError
    from executor.mesos.launch import LaunchError, prepare_launch
    from executor.mesos.wire import task_id

    if args.config is not None or args.bind:
        _error("--task-info takes no CONFIG, JOBKEY or --bind: the TaskInfo holds the task")
        return EXIT_USAGE
    try:
        with open(args.task_info, encoding="utf-8") as f:
            info = json.load(f)
        if not isinstance(info, dict):
            raise ValueError(f"it holds a JSON {type(info).__name__}, not a TaskInfo object")
        launch = prepare_launch(info, task_id=task_id(info), hostname=socket.gethostname(), framework_user=None)
    except (OSError, ValueError, LaunchError, RemoteProtocolError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{args.task_info}: {why}") from None
    except RecursionError:  # JSON nested deeper than the parser recurses
        raise ConfigError(f"{args.task_info}: it is nested too deeply to read") from None
    if args.json:
        print(json.dumps(launch_json(launch), indent=2))
    else:
        sys.stdout.write(describe_launch(launch))
    return 0
