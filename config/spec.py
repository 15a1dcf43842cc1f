"""The bound job: plain, frozen values that the rest of Stoker runs.

`config.bind.bind()` turns a loaded pystachio Job into a `JobSpec`: every template is
expanded, every default applied, every port number known. Nothing outside `config/` touches
pystachio; the supervisor, the planner, the health checker and the Mesos side read these
classes only. Beside them, the rules of a job's fields that the loader, `bind` and the task
document share, each as sentences (`health_problems`, `resources_problems`, ...). No I/O here.
"""
from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any

import attrs

from config.errors import show

if TYPE_CHECKING:  # the job's `announce`: its class loads with the plan that holds one (`planform`, `bind`)
    from config.announcer import AnnouncerSpec


class LogDestination(enum.Enum):
    FILE = "file"
    CONSOLE = "console"
    BOTH = "both"
    NONE = "none"


class LogMode(enum.Enum):
    STANDARD = "standard"
    ROTATE = "rotate"


@attrs.frozen(slots=True)
class LoggerSpec:
    destination: LogDestination = LogDestination.FILE
    mode: LogMode = LogMode.STANDARD
    log_size_bytes: int = 100 * 1024 * 1024  # rotate: a file is rotated once it reaches this
    backups: int = 5  # rotate: how many rotated files (.1 .. .N) are kept


MIB = 1024 * 1024


@attrs.frozen(slots=True)
class LoggerDefaults:
    """A cluster's defaults for the processes whose job leaves `logger` unset: Thermos'
    --runner-logger-* executor flags. None: not given (file, standard, 100 MiB, 5 backups)."""

    destination: LogDestination | None = None
    mode: LogMode | None = None
    log_size_bytes: int | None = None
    backups: int | None = None

    @classmethod
    def of(cls, destination: str | None, mode: str | None, size_mb: int | None,
           backups: int | None) -> LoggerDefaults:
        return cls(None if destination is None else LogDestination(destination),
                   None if mode is None else LogMode(mode),
                   None if size_mb is None else size_mb * MIB, backups)

    def logger(self) -> LoggerSpec:
        """The logger of a process that sets none (a process's own `logger` is kept whole,
        its rotation included: the defaults never reach it, as under Thermos)."""
        plain = LoggerSpec()
        return LoggerSpec(self.destination or plain.destination, self.mode or plain.mode,
                          self.log_size_bytes or plain.log_size_bytes, self.backups or plain.backups)


@attrs.frozen(slots=True)
class ProcessSpec:
    name: str
    cmdline: str
    max_failures: int = 1  # failed runs before the process fails for good; 0 = unlimited
    daemon: bool = False  # restart after a successful exit too
    ephemeral: bool = False  # the task does not wait for it
    min_duration_secs: float = 5.0  # no run starts sooner than this after the previous one ended
    final: bool = False  # runs in finalization, after every regular process ended
    logger: LoggerSpec = LoggerSpec()
    logger_unset: bool = False  # the job leaves `logger` unset: a cluster's LoggerDefaults apply


@attrs.frozen(slots=True)
class TaskSpec:
    name: str
    processes: tuple[ProcessSpec, ...]
    # Each entry is one `order(...)` constraint: the processes run one after another.
    constraints: tuple[tuple[str, ...], ...] = ()
    max_failures: int = 1  # permanently failed processes that fail the task; 0 = never
    max_concurrency: int = 0  # processes running at once; 0 = unlimited
    finalization_wait_secs: float = 30.0
    disk_bytes: int | None = None  # Resources.disk: the sandbox's limit (None: not reserved)
    cpu: float | None = None  # Resources.cpu, in cores (None: not reserved); shown, never enforced
    ram_bytes: int | None = None  # Resources.ram (None: not reserved); shown, never enforced

    def process(self, name: str) -> ProcessSpec:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)


class CheckKind(enum.Enum):
    NONE = "none"  # no check configured: RUNNING as soon as the processes started
    HTTP = "http"
    SHELL = "shell"
    TCP = "tcp"


@attrs.frozen(slots=True)
class HealthSpec:
    kind: CheckKind = CheckKind.NONE
    initial_interval_secs: float = 15.0
    interval_secs: float = 10.0
    timeout_secs: float = 1.0
    max_consecutive_failures: int = 0
    min_consecutive_successes: int = 1
    port: int | None = None  # HTTP / TCP: the number of the `health` port
    endpoint: str = "/health"  # HTTP
    expected_response: str = "ok"  # HTTP; "" accepts any body
    expected_response_code: int = 0  # HTTP; 0 = any code
    shell_command: str = ""  # SHELL, templates already expanded


# The longest duration a job may set (a wait, an interval, a timeout): a year. Aurora sets
# no bound, but a clock's deadline far past it (1e300 s) overflows the platform's timers and
# would crash the supervisor in the middle of the task, not refuse the job before it starts.
MAX_SECONDS = 365 * 86400
MAX_SECONDS_WORDS = f"{MAX_SECONDS} (365 days)"

# The numbers of a health check, in the order their problems are listed.
HEALTH_NUMBERS = ("interval_secs", "timeout_secs", "initial_interval_secs",
                  "max_consecutive_failures", "min_consecutive_successes")


def health_problems(*, interval_secs: float | None = None, timeout_secs: float | None = None,
                    initial_interval_secs: float | None = None,
                    max_consecutive_failures: int | None = None,
                    min_consecutive_successes: int | None = None) -> list[str]:
    """The one statement of what a health check's numbers must be, as `FIELD = VALUE must
    ...` sentences (empty: all good). A number left out (None) is not checked.

    The loader rejects a job with these (prefixed with the field's path) before anything
    starts; `HealthPolicy` and `HealthLoop` raise ValueError with them, as a guard.
    """
    given = dict(zip(HEALTH_NUMBERS, (interval_secs, timeout_secs, initial_interval_secs,
                                      max_consecutive_failures, min_consecutive_successes)))
    problems = []
    for name, value in given.items():
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):  # an int: any digits, compared as is
            problems.append(f"{name} = {value} must be a finite number")
        elif name == "interval_secs" and value <= 0:
            problems.append(f"{name} = {value} must be greater than 0 "
                            "(it is the pause between checks and divides initial_interval_secs)")
        elif name == "timeout_secs" and value <= 0:
            problems.append(f"{name} = {value} must be greater than 0")
        elif value < 0:
            problems.append(f"{name} = {value} must be at least 0")
        elif name.endswith("_secs") and value > MAX_SECONDS:
            problems.append(f"{name} = {value} must be at most {MAX_SECONDS_WORDS}")
    if not problems and interval_secs and initial_interval_secs is not None \
            and not math.isfinite(initial_interval_secs / interval_secs):
        problems.append(f"initial_interval_secs = {initial_interval_secs} over interval_secs = "
                        f"{interval_secs} makes more grace attempts than can be counted: "
                        "make interval_secs larger")
    return problems


def endpoint_problem(value: str) -> str | None:
    """The one statement of what an HTTP endpoint (the health check's, the lifecycle's)
    must be, as the end of a `FIELD = VALUE must ...` sentence; None when it is fine.

    The check and the POSTs are `http://localhost:PORT` + endpoint (Aurora's URL; Stoker
    connects to the loopback addresses itself and puts the endpoint on the request line),
    so anything but an absolute path would not be a path there, and under Aurora's URL
    would move the request: `@host:port/x` makes `localhost:PORT` a user name and sends it
    to `host`, `//host/x` is read as a host by some clients, and spaces or control
    characters would break (or add to) the request line. The loader rejects such a job;
    `bind` checks again once templates are expanded.
    """
    if not value.startswith("/") or value.startswith("//"):
        return "must be an absolute path starting with one '/', such as '/health'"
    if any(ch <= " " or ch == "\x7f" for ch in value):
        return "must be an absolute path without spaces or control characters"
    return None


def http_check_problems(expected_response_code: Any, expected_response: Any) -> list[str]:
    """What makes an HTTP check unable to pass, whatever the service answers, as
    `health_checker.http.FIELD = VALUE ...` sentences (Aurora accepts them, and every check
    then fails: a task never healthy). A value that is not a plain int or str (a template
    the loader meets before binding) is not checked."""
    code, body = expected_response_code, expected_response
    field = "health_checker.http.expected_response_code"
    if not isinstance(code, int) or isinstance(code, bool) or code == 0:
        return []
    if not 100 <= code <= 599:
        return [f"{field} = {code} must be 0 (any status) or an HTTP status from 100 to 599"]
    if isinstance(body, str) and body and "{{" not in body and (code == 204 or not 200 <= code < 300):
        why = "has no body" if code == 204 else "counts as an empty body (as in Aurora)"
        return [f"{field} = {code} with expected_response = {show(body)} can never pass: an HTTP "
                f"{code} answer {why}; set expected_response = '' to accept any body"]
    return []


def shell_check_problems(shell_command: Any, *, bound: bool = True) -> list[str]:
    """A health command that cannot check anything: an empty one (`bash -c ''` passes every
    check), one with a NUL (no command can hold it: every check would fail) or too long
    (`_argument_problem`: its templates aside until `bound`)."""
    if not isinstance(shell_command, str):
        return []
    if not shell_command.strip():
        what = "is empty: it would pass every check"
    elif "\0" in shell_command:
        what = "contains a NUL character, which no command can hold"
    elif (too_long := _argument_problem(shell_command, bound)) is not None:
        what = too_long
    else:
        return []
    return [f"health_checker.shell.shell_command = {show(shell_command)} {what}"]


MAX_SIZE_BYTES = 2**63 - 1  # ram, disk: an Integer takes any digits, and a usage file of more read as damaged


def resources_problems(resources: dict[str, Any] | None) -> list[str]:
    """Aurora requires a task's resources, with a positive cpu, ram and disk (the last two at
    most MAX_SIZE_BYTES: no host has more, and the usage figures are floats): every job's
    rule, from a config file or a task document (`loader.check_job`)."""
    if not resources:
        return ["job.task.resources is not set; a task needs resources = Resources(cpu = 1.0, "
                "ram = 128*MB, disk = 128*MB) (Aurora requires them)"]
    problems = []
    for field in ("cpu", "ram", "disk"):
        value = resources.get(field)
        if value is None:
            problems.append(f"job.task.resources.{field} is not set (Aurora requires it)")
        elif isinstance(value, (int, float)) and not value > 0:
            problems.append(f"job.task.resources.{field} = {value} must be more than 0")
        elif field != "cpu" and isinstance(value, int) and value > MAX_SIZE_BYTES:
            problems.append(f"job.task.resources.{field} = {show(value)} is more than 8 EiB "
                            f"({MAX_SIZE_BYTES:,} bytes, the most a 64-bit size holds): no host has it")
    return problems


def submission_problems(job: dict[str, Any]) -> list[str]:
    """What Aurora refuses of a config file beyond every job's rules: its client sends ram and
    disk in whole MiB (bytes // MB) and refuses 0; a negative gpu, which its client sends, its
    scheduler refuses by default (as every GPU request: `-allow_gpu_resource` is off), and a
    count of devices below 0 means nothing. Only for a config file (`stoker run`, `stoker
    inspect`); an executor's task is not checked for it, as Thermos' is not (the client or
    framework chose, and nothing in the executor reads gpu)."""
    resources = (job.get("task") or {}).get("resources") or {}
    problems = [f"job.task.resources.{field} = {value} is less than 1 MiB ({MIB} bytes): Aurora's "
                "client sends ram and disk in whole MiB and refuses a task with 0"
                for field in ("ram", "disk")
                if isinstance(value := resources.get(field), (int, float)) and 0 < value < MIB]
    gpu = resources.get("gpu")
    if isinstance(gpu, int) and not isinstance(gpu, bool) and gpu < 0:
        problems.append(f"job.task.resources.gpu = {gpu} must be at least 0 (a count of GPUs)")
    return problems


def cmdline_problem(cmdline: Any, *, bound: bool = True) -> str | None:
    """What makes a process's cmdline unable to run, as the end of a `FIELD = VALUE ...`
    sentence: a NUL (no command can hold it, so every run would fail at spawn), a length
    (`_argument_problem`: its templates aside until `bound`); None when it is fine. A value
    that is not a str (a template before binding) is not checked."""
    if not isinstance(cmdline, str):
        return None
    if "\0" in cmdline:
        return "contains a NUL character, which no command can hold"
    return _argument_problem(cmdline, bound)


# Linux copies at most 32 pages (4 KiB each on x86-64 and arm64's usual kernels) into one
# argument of an exec, its NUL included (MAX_ARG_STRLEN): a longer `bash -c CMDLINE` fails
# with E2BIG at every spawn, whatever the rest of the environment.
MAX_ARGUMENT_BYTES = 32 * 4096 - 1


def _argument_problem(command: str, bound: bool = True) -> str | None:
    """Why `command` cannot be one argument of `/bin/bash -c`, or None. Not yet `bound`, its
    templates count for nothing (each may bind to ''), and the bound command is measured
    again (`config.bind`): the text as written was measured, so 10,000 port references
    (240,005 bytes, 60,005 once bound) were refused."""
    templates = not bound and "{{" in command
    if templates:
        import re  # (the loader's: loaded already)

        command = re.sub(r"{{[^{}]*}}", "", command)
    size = len(command.encode("utf-8", "surrogateescape"))
    if size <= MAX_ARGUMENT_BYTES:
        return None
    return (f"is {size:,} bytes long{' without its templates' if templates else ''}: Linux passes at "
            f"most {MAX_ARGUMENT_BYTES:,} bytes in one argument (MAX_ARG_STRLEN), so /bin/bash -c "
            f"could never start it; put the commands in a script and run that")


@attrs.frozen(slots=True)
class LifecycleSpec:
    port: int  # number of the lifecycle port (by default the `health` port)
    graceful_shutdown_endpoint: str = "/quitquitquit"
    shutdown_endpoint: str = "/abortabortabort"
    graceful_shutdown_wait_secs: float = 5.0
    shutdown_wait_secs: float = 5.0


@attrs.frozen(slots=True)
class JobSpec:
    """One instance of one job, fully bound: what a supervisor runs."""

    role: str
    environment: str
    cluster: str
    name: str
    instance: int
    task_id: str
    task: TaskSpec
    health: HealthSpec = HealthSpec()
    lifecycle: LifecycleSpec | None = None  # None: no HTTP lifecycle (no port, or disabled)
    service: bool = False
    max_task_failures: int = 1  # -1 = unlimited
    ports: dict[str, int] = attrs.field(factory=dict)  # resolved: aliases included
    announce: AnnouncerSpec | None = None  # the job's `announce = Announcer(...)`, if any
    warnings: tuple[str, ...] = ()  # what in the job will not do what it seems to (logged at start)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.role}/{self.environment}/{self.name}"

    @property
    def label(self) -> str:
        """The name logs use for this task: `name.instance`."""
        return f"{self.name}.{self.instance}"

    def with_logger_defaults(self, defaults: LoggerDefaults) -> JobSpec:
        """This job with `defaults` as the logger of each process that sets none."""
        if defaults == LoggerDefaults():
            return self
        processes = tuple(attrs.evolve(p, logger=defaults.logger()) if p.logger_unset else p
                          for p in self.task.processes)
        return attrs.evolve(self, task=attrs.evolve(self.task, processes=processes))
