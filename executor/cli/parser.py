"""The `stoker` command's argparse parser: every command, its arguments, help texts and
examples (the inspection and control commands register their own subcommands). Loaded only
when a command is parsed with it: `stoker run` and `stoker executor` given plain words read
them without argparse (`config/quickargs.py`), so that their supervisor, which lives as long
as its task, never holds argparse and `gettext`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

import executor
from config.argdecl import add_arguments, variables
from config.logline import terminal_write, to_devnull
from executor.cli.main import stdout_unwritable, supervisor_settings

__all__ = ["build"]


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


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' too: argparse makes them of its class), whose usage
    errors and help come through from a background job under `stty tostop`, as every
    `stoker: error:` line does (`config.logline.terminal_write`): `stoker run --bogus JOB &`
    stopped the job on its usage line (`Stopped (tty output)`). Help and --version go to
    stdout, and a stdout that cannot take them (`stoker --help > /dev/full`) is one error line
    and status 1, as every command's output (docs/contract.md §9; argparse swallowed the
    error: status 0, the text lost)."""

    commands: dict[str, argparse.ArgumentParser] = {}  # the top parser's: its subcommands' parsers
    words: list[str] = []  # the words this parser read (a subcommand's: those after its name)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, but a word left over that may be a name starting with `-` is said by
        the subcommand's parser, with its usage and how to give it: `stoker status -dash`
        (a sandbox `-dash`, read as an option) printed the top-level usage and
        "unrecognized arguments: -dash", not how to name it (`--`)."""
        known, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(known, "command", None)
            parser = self.commands.get(command or "") or self
            names = parser is not self and any(not action.option_strings for action in parser._actions)
            hint = _dashed_name(parser, extras) if names else ""
            (parser if names else self).error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return known

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, the words kept for `error` (a subcommand's parser is given its own)."""
        self.words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> Any:
        """argparse's, with how to give a name that starts with `-` where it left a required
        one missing: `stoker kill -x` said only "the following arguments are required"."""
        if message.startswith("the following arguments are required") and not self.commands:
            message += _dashed_name(self, self.words)
        super().error(message)

    def _print_message(self, message: str, file: Any = None) -> None:
        if file is None or file is not sys.stdout or not message:
            with terminal_write():
                super()._print_message(message, file)
                with contextlib.suppress(OSError, ValueError, AttributeError):  # (argparse's own leniency)
                    (file or sys.stderr).flush()
            return
        try:
            with terminal_write():
                file.write(message)
                file.flush()
        except BrokenPipeError:  # `stoker --help | head -1`: the reader has what it wanted
            to_devnull(file)
        except OSError as exc:
            self.exit(stdout_unwritable(exc))


def _may_be_a_name(word: str) -> bool:
    """Whether `word`, which starts with `-`, may be meant as a name: more than one letter
    after it (`-dash`, `-config.aurora`), or a path that is there (`-x`). A lone unknown
    letter (`stoker status -j`) is an option mistyped: argparse's words alone."""
    return len(word) > 2 or os.path.lexists(word)


def _dashed_name(parser: Any, among: list[str]) -> str:
    """For a word of `among` that starts with one `-`, as a name may (`_may_be_a_name`), and is none of the
    parser's options (`-n5` is `-n 5`; `-1` argparse reads as a name), how to give it as one
    (as `rm` and `git` say: after `--`, or as a path): the words given, `--` put before it,
    when no option follows it (after one, `--` would make it a name too); "" for none."""
    words = parser.words[:parser.words.index("--")] if "--" in parser.words else parser.words
    shorts = [option for option in parser._option_string_actions if not option.startswith("--")]
    at = next((i for i, word in enumerate(words) if word in among and word[:1] == "-" and word[1:2] not in "-.0123456789"
               and not any(word.startswith(short) for short in shorts) and _may_be_a_name(word)), None)
    if at is None:
        return ""
    from config.words import shell_word

    after = words[at + 1:]
    how = ("after the options" if any(word[:1] == "-" for word in after)
           else " ".join([parser.prog, *map(shell_word, words[:at]), "--", *map(shell_word, words[at:])]))
    return (f" (a name that starts with '-' is read as an option: put -- before it, "
            f"{how}, or write it as a path, {shell_word('./' + words[at])})")


def build(only: str | None = None) -> argparse.ArgumentParser:
    """The `stoker` parser; `only` (`run` or `executor`): with that command alone."""
    parser = _Parser(
        prog="stoker",
        description="Run Aurora/Thermos job specs under Mesos or on this machine, with health checks.",
        epilog="Example: stoker run examples/hello_world.aurora   (Ctrl-C stops it)\n"
               "Every command: stoker COMMAND --help.",
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"stoker {executor.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    if only in (None, "run"):
        _run_command(sub)
    if only in (None, "executor"):
        ex = _command(sub, "executor", "the Mesos executor, started by a Mesos agent",
                      _variables_epilog(), " It reads the agent's MESOS_* variables (below).")
        for settings in supervisor_settings("executor"):
            add_arguments(ex, settings)
    if only is None:
        _inspection_commands(sub)
    parser.commands = dict(sub.choices)
    return parser


def _run_command(sub) -> None:
    run = _command(sub, "run", "run a job on this machine, restarting it by the service rules",
                   "examples:\n  stoker run examples/hello_world.aurora\n"
                   "  stoker run jobs.aurora devcluster/www-data/prod/hello --port http=8080 "
                   "--kill-grace 5\n\n"
                   "Ctrl-C, SIGTERM, SIGHUP or Ctrl-\\ stop it gracefully (exit 130, 143, 129, 131); a second "
                   "one kills at once.")
    for settings in supervisor_settings("run"):
        add_arguments(run, settings)


def _inspection_commands(sub) -> None:
    from executor.cli import control, observe, ps, status, tail

    inspect = _command(sub, "inspect", "load and validate a job; print it, or its task document; or print "
                                       "the task a Mesos TaskInfo carries",
                       "examples:\n  stoker inspect examples/hello_world.aurora\n"
                       "  stoker inspect --json jobs.aurora devcluster/www-data/prod/hello | base64 -w0\n"
                       "  stoker inspect jobs.aurora --bind stop_file=/tmp/stop\n"
                       "  stoker inspect --task-info task_info.json --json\n"
                       "  stoker inspect --task-info task_info.json --runner-logger-mode rotate --nosetuid")
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
                              "AssignedTask) with the executor flags below and the STOKER_* variables; "
                              "runs nothing")
    from config.executorsettings import ExecutorSettings

    add_arguments(inspect.add_argument_group(
        "executor flags", "with --task-info only: `stoker executor`'s own flags (as the agent passes them), "
                          "so that what is shown is what that executor would run"), ExecutorSettings)

    for command in (status, ps, tail, control, observe):  # each registers its own subcommands
        command.register(sub, _command)


# How the executor reaches the agent (executor/mesos/agentroute.py reads them, not a settings class).
AGENT_ROUTE_VARIABLES = [
    ("MESOS_DOMAIN_SOCKET", "the agent's unix socket: when set, HTTP on it, never TLS"),
    ("MESOS_SLAVE_PID", "the agent's ID@IP:PORT, whose ID the unix socket's path starts with"),
    ("LIBPROCESS_SSL_ENABLED", "true or 1: HTTPS to the agent, with its LIBPROCESS_SSL_* settings "
                               "(README, \"On a cluster with libprocess SSL on\")"),
    ("SSL_ENABLED", "LIBPROCESS_SSL_ENABLED's deprecated name (as each LIBPROCESS_SSL_* one's SSL_*)")]


def _variables_epilog() -> str:
    rows = [row for settings in supervisor_settings("executor") for row in variables(settings)]
    agents = [i for i, (name, _) in enumerate(rows) if name.startswith("MESOS_")]
    rows[agents[-1] + 1:agents[-1] + 1] = AGENT_ROUTE_VARIABLES  # after the agent's other variables
    rows.append(("STOKER_CODE_CACHE", "where attrs' compiled methods are kept (default: the package's "
                                      "__pycache__; an absolute directory; off)"))
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:<{width}}  {meaning}" for name, meaning in rows]
    return "environment (MESOS_*: set by the agent; docs/contract.md §8):\n" + "\n".join(lines) + \
        "\n\nexample (what an agent runs):\n  MESOS_AGENT_ENDPOINT=127.0.0.1:5051 " \
        "MESOS_FRAMEWORK_ID=... MESOS_EXECUTOR_ID=... stoker executor"
