"""The `stoker` command: run, executor, inspect, status, ps, tail, kill, restart, observe. The
only place logging is configured; the argparse parser is `parser.py`'s, built only when a
command's words are not plain (`config/quickargs.py` reads `run` and `executor`'s), and the
inspection and control commands live in their own modules (`status`, `ps`, `tail`,
`control`, `observe`), each registering its subcommands. Every expected failure (bad config, bad sandbox, missing variables, a sandbox
argument that is no directory) ends in one `stoker: error: ...` line naming the real cause
and a non-zero exit (docs/contract.md §9), never in a bare traceback; every argument has a
help text and every command an example.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import executor
from config.errors import ConfigError, in_file
from config.logline import NO_ROOM, to_devnull
from config.quickargs import parse as quick_parse
from config.registry import RegistrySettings
from config.settings import RunSettings
from config.sourced import flag_conflicts
from config.words import quoted
from executor import codecache
from executor.cli import UsageError, logsetup
from executor.cli.start import exit_status
from executor.logs import drain_spool, log_event, no_room

if TYPE_CHECKING:  # argparse loads only when a command is parsed with it (`_parser`)
    import argparse

    from config.executorsettings import ExecutorSettings
    from executor.host.early import EarlyStart
    from executor.local.unitstate import UnitState

EXIT_USAGE = 2
logger = logging.getLogger(__name__)
# `stoker run` prints these state changes on stdout: its text stderr log does not repeat them.
RUN_PRINTED_EVENTS = ("task_state", "task_phase", "process_state", "kill_stage", "run_prepared",
                      "run_warning", "run_ended", "task_restarting", "ports_taken")


# The arguments that are paths, by their namespace's names (a SANDBOX|TASK_ID may be a task
# id: `targets.resolve`); checked as a command starts (`_resolvable`).
PATH_ARGUMENTS = ("config", "sandbox", "task_info", "registry_root")

# The commands whose start is timed (bench/bench_launch.py) and that supervise a task: their
# plain words are read without argparse (`config/quickargs.py`), and for any others only
# their own arguments are built (the whole parser, with every command's, takes several
# milliseconds). Each with the settings its flags come from (`parser.py` declares the same).
SUPERVISORS = ("run", "executor")
PIPED = ("tail", "ps", "status")  # ended by `kill -PIPE` (`_ended_by_kill_pipe`)


def supervisor_settings(command: str) -> tuple[type, ...]:
    """The settings classes `command`'s flags come from (`stoker run` does not load the
    executor's)."""
    if command == "executor":
        from config.executorsettings import ExecutorSettings

        return (ExecutorSettings, RegistrySettings)
    return (RunSettings, RegistrySettings)


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `stoker` parser (`executor/cli/parser.py`); `only` (one of SUPERVISORS): with that
    command alone."""
    from executor.cli.parser import build

    return build(only)


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
    except KeyboardInterrupt as exc:  # Ctrl-C outside a command's own handling (as its arguments
        code = exit_status(exc)  # are parsed, or as it ends): the shell's status, not a traceback
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
    try:
        drained = drain_spool()
    except KeyboardInterrupt as exc:  # Ctrl-C as its last lines wait for a terminal: no longer
        drained, status = False, exit_status(exc)
    if not drained:  # a terminal that stopped reading (Ctrl-S): not waited for longer,
        os._exit(status)  # nor flushed (its writer holds the streams' locks)
    logging.shutdown()
    executor.flush_standard_streams()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        executor.leave(status)
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    command: Callable[[], int] = functools.partial(_dispatch, args)
    if args.command not in SUPERVISORS:  # theirs survives a stdout that fails (docs/contract.md §1)
        command = functools.partial(_output_written, command)
    if args.command in PIPED:
        command = functools.partial(_ended_by_kill_pipe, command)
    if args.command == "inspect" and not args.task_info and args.config is not None:
        from executor.cli.apart import run_apart

        return _handled(functools.partial(run_apart, functools.partial(_handled, command), quoted(args.config)))
    return _handled(command)


def _output_written(command: Callable[[], int]) -> int:
    """`command()`'s status once its output is flushed; one error line and status 1 when
    stdout cannot take it (`stoker status --json > state.json` on a full disk, `> /dev/full`):
    a traceback when a write failed, and an exit 0 with the output lost when the
    interpreter's last flush did, silently. A reader gone is BrokenPipeError's (`_handled`)."""
    try:
        status = command()
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.errno not in NO_ROOM or exc.filename is not None:  # only a write fails so: the output's,
            raise  # as the commands but `run` and `executor` write no file (a log's read's EIO is not taken for it)
        return stdout_unwritable(exc)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:  # whatever it is, it is the output's (an I/O error too)
        return stdout_unwritable(exc)
    return status


def _ended_by_kill_pipe(command: Callable[[], int]) -> int:
    """`command()` with SIGPIPE taken: `kill -PIPE` ends it by the signal's default action (141
    to a shell), as it ends GNU `tail -f` or `ls` (was: ignored, as Python starts with it). The
    SIGPIPE the kernel sends with a write's EPIPE (stdout's reader gone, as the kernel then
    says) is left to that write's BrokenPipeError: it ends quietly, 0 (docs/contract.md §9)."""
    def on_sigpipe(signum: int, frame: object) -> None:
        poller = select.poll()
        with contextlib.suppress(AttributeError, OSError, ValueError):  # (not a file: a test's buffer)
            poller.register(sys.stdout.fileno(), 0)  # no events asked: only an error or a hang-up
        if not poller.poll(0):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)

    if threading.current_thread() is not threading.main_thread():  # (a test's: no handler there)
        return command()
    previous = signal.signal(signal.SIGPIPE, on_sigpipe)
    try:
        return command()
    finally:  # (a test's process, which calls `main`, goes on as it was)
        signal.signal(signal.SIGPIPE, previous)


def stdout_unwritable(exc: OSError) -> int:
    """Status 1 and one error line for an output stdout could not take (`exc`, a write's or
    a flush's), whose unwritten rest is then dropped quietly."""
    to_devnull(sys.stdout)  # what is left of the output: the interpreter's last flush is quiet
    _error(f"cannot write to stdout: {exc.strerror or exc}")
    return 1


def _arguments(words: list[str]) -> Any:
    """The namespace of `stoker WORDS`: argparse's, or for a supervisor's plain words
    `config.quickargs`' (the same attributes and values, without loading argparse)."""
    supervisor = words[0] if words and words[0] in SUPERVISORS else None
    args = None if supervisor is None else quick_parse(words, supervisor_settings(supervisor))
    if args is None:  # not plain, or another command: argparse parses, or says what is wrong
        return _parser(supervisor).parse_args(words)
    return args


def _handled(command: Callable[[], int]) -> int:
    """`command()`'s status, or the status and one error line of an expected failure."""
    try:
        return command()
    except (ConfigError, UsageError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        return exit_status(exc)
    except BrokenPipeError:
        to_devnull(sys.stdout)  # the reader closed it: the interpreter's last flush says nothing
        return 0
    except FileNotFoundError as exc:  # os.getcwd()'s (no file named), from a path made absolute
        if exc.filename is not None or not executor.working_directory_gone():
            raise
        _error(executor.working_directory_unnamed(defaults=True))  # a default, or a variable's path (was: a traceback)
        return EXIT_USAGE
    except (RuntimeError, OSError, MemoryError) as exc:  # no thread, descriptor or memory
        why = no_room(exc)
        if why is None:
            raise
        _error(f"cannot go on: {why}")
        return EXIT_USAGE


def _error(message: str) -> None:
    logsetup.say("error", message)


def _resolvable(args: Any) -> None:
    """Raise UsageError naming the first of `args`' paths (PATH_ARGUMENTS, or the variable
    one not given comes from: STOKER_ROOT, STOKER_SANDBOX, ...) that is relative when the
    working directory has no name (deleted): none can be resolved then (was: a traceback,
    or `does not exist`; from STOKER_ROOT, an empty registry read, a task not listed).
    Absolute ones work from there as from anywhere."""
    if not executor.working_directory_gone():  # (one getcwd: the rest only then)
        return
    for named, path in _paths(args):
        if not path.startswith("/"):
            raise UsageError(f"{named}: {executor.working_directory_unnamed()}")


def _paths(args: Any) -> list[tuple[str, str]]:
    """(as named, path) of each of `args`' PATH_ARGUMENTS: given, or from the environment; named
    quoted, as errors quote what they were given (`stoker run ""` was `stoker: error: : the ...`)."""
    from config.sourced import from_environment

    classes = supervisor_settings(args.command) if args.command in SUPERVISORS else (RegistrySettings,)
    paths = []
    for name in PATH_ARGUMENTS:
        given = getattr(args, name, None)
        if isinstance(given, str):
            paths.append((quoted(given), given))
        elif hasattr(args, name):  # a setting of this command's, not given
            variable, value = next((found for found in (from_environment(c, name, os.environ) for c in classes)
                                    if found[1] is not None), ("", None))
            if value:
                paths.append((f"{variable}={quoted(value)}", value))
    return paths


def _dispatch(args: Any) -> int:
    if args.command != "run":  # `stoker run`'s, once its early start's runs are in hand (`_cmd_run`)
        _resolvable(args)
    if hasattr(args, "handler"):
        return args.handler(args)
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "executor":
        from executor.procs import hardening

        # (hidden already when started through `executor.cli.start`: its first step)
        hidden = hardening.early or hardening.hide_early(os.environ)
        environ = dict(os.environ) | hardening.taken  # the settings' copy: the token only in memory
        from config.executorsettings import ExecutorSettings
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


def _cmd_run(args: Any) -> int:
    from executor.cli import launch

    early = launch.take()  # the early start's runs, when the entry point made one
    first = launch.first_run()  # or the first run's, with the child it forked to plan it
    ahead = first.take_ahead() if first is not None else None
    try:
        _resolvable(args)
        settings = RunSettings.from_args(args, os.environ)
        logsetup.configure(settings.log_format, settings.log_level,  # JSON: every event, for a program
                           drop_events=RUN_PRINTED_EVENTS if settings.log_format == "text" else (),
                           spooled=True)
        for conflict in flag_conflicts(RunSettings, args, os.environ):
            logsetup.say("warning", conflict)
        registry, unit = RegistrySettings.from_args(args, os.environ), _unit_state(settings.ready_fd)
        if early is None and first is not None and ahead is not None:  # the plan made ahead's first runs, now
            early = first.start_first(ahead)
        if early is not None:  # the task's cgroup now: its move's wait passes while the rest loads
            _cgroup_early(early, settings.cgroups)
        # after a first run's early start: off its path (`launchfirst.start_first`)
        from executor.local.run import LocalRun

        run = LocalRun(settings, registry=registry, early=early, ahead=ahead, spooled=True, exits_after=True,
                       unit=unit)
        early = ahead = None  # the run's to adopt, take or give up
        return run.run()
    except Exception as exc:
        # loaded here: before, its 14 ms were on a first run's path to its early start
        from executor.local.runstart import SandboxError

        if not isinstance(exc, SandboxError):
            raise
        _error(str(exc))
        return EXIT_USAGE
    finally:
        if early is not None:
            early.abandon()
        if ahead is not None:
            ahead.cancel()


def _cgroup_early(early: EarlyStart, setting: str) -> None:
    """Make the task's cgroup and begin this process's move into it (`procs/cgrouplife.py`,
    `begin`), undone should the early start be given up."""
    from executor.procs import cgrouplife

    others = frozenset([early.watchdog_pid, *(pid for pid, _ in early.inherited)])
    cgrouplife.begin(early.marker, setting, early.watchdog_fd(), tuple(run.pid for run in early.runs), others)
    early.before_abandon = cgrouplife.discard
    early.until_moved = cgrouplife.wait_moved


def _unit_state(ready_fd: int | None) -> UnitState | None:
    """What `stoker run` tells systemd (`executor/local/unitstate.py`), when the service
    manager named a notification socket, and s6 (`--ready-fd`, `executor/host/readyfd.py`),
    either or both; their modules load only then."""
    from executor.cli.start import from_systemd

    if not from_systemd and ready_fd is None:
        return None
    from executor.host.sdnotify import notifier
    from executor.local.unitstate import UnitState

    told = notifier(from_systemd) if from_systemd else None
    if ready_fd is not None:
        from executor.host.readyfd import ready_fd as for_s6

        return UnitState(for_s6(ready_fd, told))  # both told, when both asked
    return UnitState(told) if told is not None else None


def _cmd_inspect(args: argparse.Namespace) -> int:
    from config.document import encode
    from config.loader import check_bound, load_job
    from config.settings import parse_bindings
    from executor.cli.inspect import describe_job

    if args.config is None:
        _error("inspect needs a CONFIG file (or --task-info FILE)")
        return EXIT_USAGE
    given = _executor_flags_given(args)
    if given:
        _error(f"{', '.join(given)}: the executor's flags go with --task-info only (a config's job "
               "runs under `stoker run`)")
        return EXIT_USAGE
    try:
        bindings = parse_bindings(args.bind)
    except ValueError as exc:
        raise ConfigError(f"--bind {exc}") from None
    from executor.cli.apart import load_bounded

    job = load_bounded(quoted(args.config), lambda: load_job(args.config, args.jobkey, bindings))
    check_bound(job, quoted(args.config))
    if args.json:
        sys.stdout.write(encode(job).decode("utf-8") + "\n")
    else:
        try:
            text = describe_job(job)  # binds it as `stoker run` would
        except ConfigError as exc:
            raise in_file(exc, quoted(args.config)) from None
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
    settings = _inspect_settings(args)
    try:
        with open(args.task_info, encoding="utf-8-sig") as f:  # a BOM too, as a config may have
            info = json.load(f)
        if not isinstance(info, dict):
            raise ValueError(f"it holds a JSON {type(info).__name__}, not a TaskInfo object")
        launch = prepare_launch(info, task_id=task_id(info), hostname=settings.hostname or socket.gethostname(),
                                framework_user=None)
    except (OSError, ValueError, LaunchError, RemoteProtocolError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{quoted(args.task_info)}: {why}") from None
    except RecursionError:  # JSON nested deeper than the parser recurses
        raise ConfigError(f"{quoted(args.task_info)}: it is nested too deeply to read") from None
    if args.json:
        print(json.dumps(launch_json(launch, settings), indent=2))
    else:
        sys.stdout.write(describe_launch(launch, settings))
    return 0


# What `stoker executor` is given by the agent and inspect does not need: stand-ins.
_AGENT_STAND_INS = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "<framework>",
                    "MESOS_EXECUTOR_ID": "<executor>"}


def _inspect_settings(args: argparse.Namespace) -> ExecutorSettings:
    """The settings `stoker executor` would run with, given the same flags and this
    environment's STOKER_* variables (the agent's own stand in when unset). Raises
    SettingsError (a ConfigError) naming the flag or variable."""
    from config.executorsettings import ExecutorSettings

    return ExecutorSettings.from_args(args, {**_AGENT_STAND_INS, **os.environ})


def _executor_flags_given(args: argparse.Namespace) -> list[str]:
    import attrs

    from config.executorsettings import ExecutorSettings

    return [f.metadata["flag"] for f in attrs.fields(ExecutorSettings)
            if f.metadata["flag"] and getattr(args, f.name, None) not in (None, False)]
