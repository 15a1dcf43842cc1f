"""Settings from flags and `MESOS_*` / `STOKER_*` variables: the only code that reads them.

Owns `RunSettings` (`stoker run`'s arguments), a frozen attrs class, and the parsers and
table rows `config/executorsettings.py` (`ExecutorSettings`: what `stoker executor` gets
from the Mesos agent's environment and its flags, docs/mesos.md §14), `config/registry.py`
(`RegistrySettings`) and `config/logsettings.py` share. How a settings class is read (a
field's table row, `setting`; the precedence of flag, variable and default; problems put in
terms of the flag or the variable) is `config/sourced.py`'s.

Never logs; the executor token is never part of a repr. `pop_secrets` takes out what a
task never gets (`config/environment.py` makes the rest of its environment): the token,
ever, and the agent's address and the framework and executor IDs (`AGENT_VARIABLES`, which
with the token would let a task process talk to the agent as the executor) unless
`pass_agent_env` asks for them.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import attrs

from config.sourced import Sourced, setting
from config.words import quoted

if TYPE_CHECKING:  # zookeeper's: built only to announce
    from config.spec import LoggerDefaults
    from config.zookeeper import AnnouncerSettings

TOKEN_VARIABLE = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"
SECRET_VARIABLES = (TOKEN_VARIABLE,)
# MESOS_SLAVE_PID is the agent's libprocess address (`slave(1)@IP:PORT`): the endpoint again;
# MESOS_DOMAIN_SOCKET its unix socket, another way to reach the same API.
AGENT_VARIABLES = ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_SLAVE_PID",
                   "MESOS_DOMAIN_SOCKET")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The two parsers' patterns, compiled at their first use (`re`'s own cache keeps them): a run
# that gives no duration or port never compiles them (0.23 ms of every start's imports).
_DURATION = r"^(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|secs|mins|hrs|days|weeks)$"
_UNIT_SECS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0, "hrs": 3600.0,
              "days": 86400.0, "weeks": 604800.0}
_PORT = r"^([A-Za-z0-9_][\w.\-]*)=([0-9]+)\Z"  # ASCII digits: int() reads '٥٠٠٠' as 5000

# ---- parsers: each raises ValueError whose message starts with the offending value ----


MAX_DURATION_SECS = 9223372036.0  # Mesos' Duration (int64 ns), in whole seconds: _thread.TIMEOUT_MAX


def parse_duration(text: str | float) -> float:
    """Seconds in a Mesos (stout) duration: `5secs`, `15mins`, `500ms`, `1.5secs`, `2hrs`..."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not (math.isfinite(text) and text >= 0):
            raise ValueError(f"{quoted(text)} is not a non-negative number of seconds")
        secs = float(text)
    else:
        match = re.match(_DURATION, text) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"{quoted(text)} is not a duration (e.g. 15mins, 500ms)")
        secs = float(match.group(1)) * _UNIT_SECS[match.group(2)]
    if not secs <= MAX_DURATION_SECS:  # 400 digits read as infinity: a wait that raises
        shown = str(text)
        shown = quoted(shown) if len(shown) <= 40 else f"{quoted(shown[:40])}..."
        raise ValueError(f"{shown} is longer than a Mesos duration holds (about 292 years)")
    return secs


def parse_port(text: str) -> tuple[str, int]:
    """`NAME=NUM` -> (NAME, NUM), NUM in 1..65535."""
    match = re.match(_PORT, text) if isinstance(text, str) else None
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{quoted(text)} is not NAME=NUMBER with a port number in 1..65535")
    return match.group(1), int(match.group(2))


def parse_ports(items: Iterable[str] | Mapping[str, int]) -> dict[str, int]:
    """Several `NAME=NUM` (or a ready map, checked the same way); a name may appear once."""
    pairs = list(items.items()) if isinstance(items, Mapping) else [parse_port(t) for t in items]
    ports: dict[str, int] = {}
    for name, number in pairs:
        if not isinstance(name, str) or isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"{quoted(name)}: {quoted(number)} is not a port name and number")
        parse_port(f"{name}={number}")
        if name in ports:
            raise ValueError(f"{quoted(name)} is given more than once")
        ports[name] = int(number)
    return ports


def parse_bindings(items: Iterable[str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Several `--bind KEY=VALUE` (KEY a template reference such as `stop_file` or
    `docker.image[library/python][3.11]`), in the order given."""
    from pystachio import Ref  # only `stoker run --bind` pays for it

    pairs = []
    for item in items:
        key, eq, value = item.partition("=") if isinstance(item, str) else (item[0], "=", item[1])
        if not eq:
            raise ValueError(f"{quoted(item)} is not KEY=VALUE")
        try:
            Ref.from_address(key)
        except Ref.InvalidRefError as exc:
            raise ValueError(f"{quoted(item)}: {quoted(key)} is not a template reference ({exc})") from None
        pairs.append((key, value))
    return tuple(pairs)


def parse_ready_fd(text: str | int) -> int:
    """A descriptor number past the standard streams' (s6's notification-fd)."""
    value = parse_instance(text)
    if value < 3:
        raise ValueError(f"{value} is a standard stream, not a descriptor of its own (3 or more)")
    return value


def parse_instance(text: str | int) -> int:
    """A non-negative integer (an instance number, a count)."""
    try:
        value = int(text) if not isinstance(text, (bool, float)) else None
    except ValueError:
        value = None
    if value is None or value < 0:
        raise ValueError(f"{quoted(text)} is not a non-negative integer")
    return value


def parse_secs(text: str | float) -> float:
    """A non-negative number of seconds: `0.5`, or a Mesos duration such as `500ms`."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = parse_duration(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{quoted(text)} is not a non-negative number of seconds")
    return value


MAX_INTERVAL_SECS = 365 * 86400.0  # as a job's durations: a timer the platform can keep


def parse_interval(text: str | float) -> float:
    """Seconds or a duration (`30`, `60secs`, `500ms`), more than 0 and at most 365 days."""
    try:
        value = parse_secs(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_INTERVAL_SECS:
        raise ValueError(f"{quoted(text)} is not a number of seconds or a duration of more than 0 and "
                         f"at most 365days")
    return value


def parse_on_off(text: str | bool) -> bool:
    """`on` or `off`."""
    if isinstance(text, bool) or text in ("on", "off"):
        return text is True or text == "on"
    raise ValueError(f"{quoted(text)} is not on or off")


def disk_limit(default: bool) -> Any:
    """The disk-limit switch, `--disk-limit` / `STOKER_DISK_LIMIT` (on by default under
    `stoker executor`, as Thermos' check; off under `stoker run`)."""
    return setting(env=("STOKER_DISK_LIMIT",), flag="--disk-limit", parse=parse_on_off, default=default,
                   choices=("on", "off"),
                   help="fail a task whose sandbox holds more than its Resources.disk, as Thermos does, "
                        "with TASK_FAILED and 'Disk limit exceeded.  Reserved N bytes vs used M bytes.' "
                        f"(default {'on' if default else 'off'})")


def disk_check_interval() -> Any:
    return setting(env=("STOKER_DISK_CHECK_INTERVAL",), flag="--disk-check-interval", parse=parse_interval,
                   default=60.0, metavar="SECS",
                   help="how often the disk-limit check measures the sandbox (default 60secs)")


def parse_log_format(text: str) -> str:
    if text not in LOG_FORMATS:
        raise ValueError(f"{quoted(text)} is not a log format ({', '.join(LOG_FORMATS)})")
    return text


def parse_log_level(text: str) -> str:
    level = text.upper() if isinstance(text, str) else ""
    if level not in LOG_LEVELS:
        raise ValueError(f"{quoted(text)} is not a log level ({', '.join(LOG_LEVELS)})")
    return level


def parse_switch(value: str | bool) -> bool:
    """An on/off flag (`store_true`): given means on."""
    return value is True or value in ("1", "true")


CGROUP_HELP = ("the task's own cgroup: auto (under the cgroup Stoker is in), off (process "
               "groups, markers and the subreaper only), or an absolute cgroup directory to make "
               "it under (a delegated subtree); default auto")


def parse_cgroups(text: str) -> str:
    """`auto`, `off`, or an absolute directory (normalised)."""
    if text in ("auto", "off"):
        return text
    if isinstance(text, str) and text.startswith("/") and "\0" not in text:
        return os.path.normpath(text)
    raise ValueError(f"{quoted(text)} is not auto, off or an absolute cgroup directory")


def _parse_ensemble(text: str) -> str:
    """`--announce`'s ensemble (`config.announcer.parse_ensemble`), that module loaded only when
    the flag is given: a supervisor's first report does not wait for it."""
    from config.announcer import parse_ensemble

    return parse_ensemble(text)


# Thermos' --runner-logger-* executor flags: `stoker executor` takes them as Thermos' executor
# does, `stoker run` as a cluster's logging reproduced on one machine (config.spec.LoggerDefaults).
LOGGER_DESTINATIONS = ("file", "console", "both", "none")
LOGGER_MODES = ("standard", "rotate")


def parse_destination(text: str) -> str:
    if text not in LOGGER_DESTINATIONS:
        raise ValueError(f"{quoted(text)} is not a logger destination ({', '.join(LOGGER_DESTINATIONS)})")
    return text


def parse_mode(text: str) -> str:
    if text not in LOGGER_MODES:
        raise ValueError(f"{quoted(text)} is not a logger mode ({', '.join(LOGGER_MODES)})")
    return text


def parse_positive(text: str | int) -> int:
    """A whole number of at least 1 (Thermos' rotation sizes and counts)."""
    try:
        value = int(text) if not isinstance(text, (bool, float)) else 0
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{quoted(text)} is not a whole number of at least 1")
    return value


def thermos_spelling(flag: str) -> tuple[str, ...]:
    """The other spelling of a Thermos flag (`--a-b` and `--a_b`), which Aurora may pass."""
    return (flag[:2] + flag[2:].replace("-", "_"),)


def runner_logger_destination(*env: str) -> Any:
    return setting(env=env, flag="--runner-logger-destination", aliases=thermos_spelling("--runner-logger-destination"),
                   parse=parse_destination, default=None, choices=LOGGER_DESTINATIONS,
                   help="where the output of a process whose job leaves `logger` unset goes, as Thermos' "
                        "executor flag (default: file; a process with its own logger keeps it)")


def runner_logger_mode(*env: str) -> Any:
    return setting(env=env, flag="--runner-logger-mode", aliases=thermos_spelling("--runner-logger-mode"),
                   parse=parse_mode, default=None, choices=LOGGER_MODES,
                   help="standard or rotate, for a process whose job leaves `logger` unset (default: standard)")


def runner_rotate_log_size_mb(*env: str) -> Any:
    return setting(env=env, flag="--runner-rotate-log-size-mb", aliases=thermos_spelling("--runner-rotate-log-size-mb"),
                   parse=parse_positive, default=None, metavar="MIB",
                   help="in rotate mode, the size a log file of a process without a logger rotates at (default 100)")


def runner_rotate_log_backups(*env: str) -> Any:
    return setting(env=env, flag="--runner-rotate-log-backups", aliases=thermos_spelling("--runner-rotate-log-backups"),
                   parse=parse_positive, default=None, metavar="N",
                   help="in rotate mode, the rotated files kept for a process without a logger (default 5)")


def logger_defaults(settings: Any) -> LoggerDefaults:
    """The --runner-logger-* settings of `settings` as the defaults of processes without a logger."""
    from config.spec import LoggerDefaults

    return LoggerDefaults.of(settings.runner_logger_destination, settings.runner_logger_mode,
                             settings.runner_rotate_log_size_mb, settings.runner_rotate_log_backups)


@attrs.frozen(kw_only=True)
class RunSettings(Sourced):
    """What `stoker run` runs with: its arguments, with STOKER_* variables as fallbacks."""

    config: str = setting(flag="config", positional=True, metavar="CONFIG",
                          help="the .aurora (or JSON) file defining the job")
    jobkey: str | None = setting(flag="jobkey", positional=True, nargs="?", metavar="JOBKEY",
                                 default=None,
                                 help="cluster/role/environment/name; optional when the file has one job")
    instance: int = setting(flag="--instance", parse=parse_instance, default=0, metavar="N",
                            help="the instance number for {{mesos.instance}} (default 0)")
    sandbox: str | None = setting(
        flag="--sandbox", env=("MESOS_SANDBOX", "MESOS_DIRECTORY", "STOKER_SANDBOX"),
        default=None, metavar="DIR",
        help="the sandbox directory, used as is if it exists (default: a fresh "
             "sandbox-NAME-DATE-TIME-RANDOM here)")
    ports: dict[str, int] = setting(flag="--port", parse=parse_ports, factory=dict, action="append",
                                    metavar="NAME=NUM", help="use this port number for NAME (repeatable)")
    log_format: str = setting(env=("STOKER_LOG_FORMAT",), flag="--log-format", default="text",
                              parse=parse_log_format, choices=LOG_FORMATS,
                              help="log lines as text or json (default text)")
    log_level: str = setting(env=("STOKER_LOG_LEVEL",), flag="--log-level", default="WARNING",
                             parse=parse_log_level,
                             help=f"stderr log level: {', '.join(LOG_LEVELS)} (default WARNING; "
                                  "state changes are printed on stdout either way)")
    kill_grace_secs: float | None = setting(
        flag="--kill-grace", parse=parse_secs, default=None, metavar="SECS",
        help="bound every stop: SIGKILL at most SECS after it began, the lifecycle endpoints' "
             "waits included (default: those waits, then the task's finalization_wait)")
    restart_backoff_secs: float = setting(flag="--restart-backoff", parse=parse_secs, default=1.0, metavar="SECS",
                                          help="delay before restarting a task that ended quickly; doubles "
                                               "with each quick end (default 1; 0: at once, then "
                                               "from 0.1)")
    restart_backoff_max_secs: float = setting(flag="--restart-backoff-max", parse=parse_secs, default=60.0,
                                              metavar="SECS", help="the largest restart delay (default 60)")
    keep_attempts: int = setting(flag="--keep-attempts", parse=parse_instance, default=20, metavar="N",
                                 help="keep the logs of the first attempt and of the last N earlier ones "
                                      "(.logs.attempt-*); older ones are removed (default 20)")
    bindings: tuple[tuple[str, str], ...] = setting(
        flag="--bind", parse=parse_bindings, factory=tuple, action="append", metavar="KEY=VALUE",
        help="bind a template value, as the Aurora client's --bind (repeatable), e.g. "
             "--bind stop_file=/tmp/stop or --bind 'docker.image[library/python][3.11]=python:3.11'")
    ready_fd: int | None = setting(flag="--ready-fd", parse=parse_ready_fd, default=None, metavar="FD",
                                   help="write a newline to descriptor FD, and close it, once the task is "
                                        "RUNNING (s6's readiness notification: the service's notification-fd)")
    cgroups: str = setting(env=("STOKER_CGROUPS",), flag="--cgroups", parse=parse_cgroups,
                           default="auto", metavar="auto|off|DIR", help=CGROUP_HELP)
    announce: str | None = setting(flag="--announce", parse=_parse_ensemble, default=None, metavar="ENSEMBLE",
                                   help="announce the job, when it has `announce = Announcer(...)`, in this "
                                        "ZooKeeper ensemble (HOST:PORT[,...]) under /aurora/ROLE/ENVIRONMENT/JOB")
    disk_limit: bool = disk_limit(default=False)
    disk_check_interval_secs: float = disk_check_interval()
    # A cluster's process logging, as `stoker executor` gets it from Thermos' flags (flags
    # only: with one, no early start forks runs with plain log files before they are read).
    runner_logger_destination: str | None = runner_logger_destination()
    runner_logger_mode: str | None = runner_logger_mode()
    runner_rotate_log_size_mb: int | None = runner_rotate_log_size_mb()
    runner_rotate_log_backups: int | None = runner_rotate_log_backups()

    @property
    def logger_defaults(self) -> LoggerDefaults:
        return logger_defaults(self)

    @property
    def announcer(self) -> AnnouncerSettings | None:
        """`--announce`: the job's own zk_path is honoured (your machine, your ZooKeeper)."""
        if self.announce is None:
            return None
        from config.zookeeper import AnnouncerSettings

        return AnnouncerSettings(ensemble=self.announce, allow_custom_serverset_path=True)


def pop_secrets(environ: MutableMapping[str, str], *, keep_agent_env: bool = False) -> None:
    """Makes `environ` fit for the task's processes: removes the token and, unless
    `keep_agent_env` (the `pass_agent_env` setting), the AGENT_VARIABLES."""
    for name in SECRET_VARIABLES + (() if keep_agent_env else AGENT_VARIABLES):
        environ.pop(name, None)
