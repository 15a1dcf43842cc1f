"""Loading `.aurora` files, selecting a job by key, and validating jobs.

Owns running a config file with the schema in scope (a fresh namespace each time, with
`include('relative/path')` of other files, any name, relative to the including one), reading
the JSON form (`{"jobs": [...]}` or a single job: `config/jsonconfig.py`), binding `--bind
KEY=VALUE` values into every job before one is picked for `cluster/role/environment/name`
(as the Aurora client does), `check_bound` (the client's "Config contains unbound
variables"), and `validate_job`, the checks every job passes before anything runs, whether
it came from a file or a task document (docs/aurora.md §7, §9, §11; docs/contract.md §5).

Every problem is a `ConfigError` whose message names the file (and line, for errors while
running the file), the job key, the field and the value. Never lets a traceback through.
Reads files; no other I/O, no logging.
"""
from __future__ import annotations

import errno
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pystachio import Ref

from config.compiletext import compile_text
from config.errors import ConfigError, cut, join_problems, show
from config.order import order_graph
from config.portmap import PortmapError, job_portmap, port_ref_problems, requested_ports
from config.schema import SCHEMA_NAMESPACE, Job
from config.spec import (
    HEALTH_NUMBERS,
    MAX_SECONDS,
    MAX_SECONDS_WORDS,
    cmdline_problem,
    endpoint_problem,
    health_problems,
    http_check_problems,
    resources_problems,
    shell_check_problems,
    submission_problems,
)
from config.templates import cycle_problems, expand_field, flatten, is_port_name, load_time_unbound
from config.warnfilters import filtered, ignored, shown_not_raised
from config.words import (
    a_kind,
    half_pair_problem,
    lone_surrogate,
    long_integer_problem,
    long_integers,
    quoted,
    shell_path,
    shell_word,
    texts,
)

if TYPE_CHECKING:  # loaded at the first order problem (`_order_problems`)
    from config.orderproblems import OrderProblem

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # whole-string match; ≤ 128 chars
_MUSTACHE = re.compile(r"{{[^{}]*}}")
# Aurora's GOOD_IDENTIFIER_PATTERN, `^[\w\-\.]+$`, as its client (Python 2's `re`, no UNICODE
# flag) and its scheduler (java.util.regex) read it: ASCII letters and digits only. Whole-
# string match: `$` let a trailing newline through.
_IDENTIFIER = re.compile(r"[\w\-.]+", re.ASCII)
# A UTF-8 file may start with a byte order mark (Windows' editors write one), as Python's own
# sources and Aurora's client allow: it is not part of the code. `sources` keep it, so that
# a re-run compares the file's text byte for byte.
BOM = "\ufeff"
MAX_CONFIG_CHARS = 64 << 20  # a config file (or an included one) is read no further
# The job keys an error lists at most: a file of 10,000 jobs is one line, not 129 KB of keys.
LISTED_KEYS = 20
# Rotated logs kept per stream: each rotation renames every one of them (.N-1 → .N, ...).
MAX_BACKUPS = 1000


# ---- running config files ----


class _Run:
    """One execution of a config file and everything it includes, into one namespace."""

    def __init__(self, sources: dict[str, str] | None = None) -> None:
        self.files: set[str] = set()
        self.sources = sources
        self.stack: list[Path] = []
        self.namespace: dict[str, Any] = dict(SCHEMA_NAMESPACE)
        self.namespace.update(include=self.include, __name__="__stoker_config__")

    def run(self, path: Path, text: str) -> None:
        self.files.add(str(path))
        if self.sources is not None:
            self.sources[str(path)] = text
        # optimize=0 (`compile_text`'s): the config's `assert`s run under `-O` too (stripped, the job ran, and its
        # plan, kept, served the runs without -O); compiled with every warning ignored, whatever
        # -W says: `error` made an invalid escape ('\\d') a syntax error, where a kept plan
        # served the same file; `default` printed it on a fresh plan only (`warnfilters`: where
        # no other thread would meet them)
        try:
            with filtered(ignored):
                code = compile_text(text.removeprefix(BOM), str(path))  # `compile()`'s, without its AST classes
        except (SyntaxError, RecursionError) as exc:
            from config.explain import uncompiled  # only a file that does not compile needs it

            raise uncompiled(exc, str(path), text.removeprefix(BOM)) from None
        self.stack.append(path)
        try:
            exec(code, self.namespace)
        finally:
            self.stack.pop()

    def include(self, relative: str) -> None:
        if not isinstance(relative, (str, Path)):
            from config.explain import IncludeError  # only a bad include() needs it

            raise IncludeError(f"include() takes a relative path, not {quoted(relative)}")
        path = self.stack[-1].parent / relative
        try:
            text = _read_config(path)
        except (OSError, UnicodeDecodeError) as exc:
            from config.explain import IncludeError, unread  # only a bad include() needs it

            raise IncludeError(f"include({quoted(str(relative))}) cannot read {path}: {unread(exc)}") from None
        self.run(path, text)


def _read_config(path: str | Path) -> str:
    """A config file's text; OSError (EFBIG) past MAX_CONFIG_CHARS: `/dev/zero`, given as
    the config or included, was read until memory ran out."""
    with open(path, encoding="utf-8") as file:
        text = file.read(MAX_CONFIG_CHARS + 1)
    if len(text) > MAX_CONFIG_CHARS:
        raise OSError(errno.EFBIG, f"it is longer than {MAX_CONFIG_CHARS} characters: is it a config file?")
    return text


def load_jobs(path: str | Path, sources: dict[str, str] | None = None) -> list[Any]:
    """The jobs a config file defines, in file order (not yet validated). `sources`, if
    given, receives the text of every file read, by path: this one and each it `include()`d
    (exactly what was run or parsed)."""
    given = str(path)
    named, path = quoted(given), Path(path)  # named as given (errors quote what they were given)
    try:
        text = _read_config(given)  # not Path(''), which is `.`
    except (OSError, UnicodeDecodeError) as exc:
        from config.explain import unread  # only a file that cannot be read needs it

        raise ConfigError(f"{named}: cannot read the config file: {unread(exc)}") from None
    if path.suffix == ".json" or text.removeprefix(BOM).lstrip().startswith("{"):
        from config.jsonconfig import json_jobs  # loaded only for a JSON config

        jobs = json_jobs(path, text.removeprefix(BOM), named)
        if jobs is not None:
            if sources is not None:
                sources[str(path)] = text
            return jobs
    run = _Run(sources)
    try:
        with filtered(shown_not_raised):  # the config's own warnings shown (`warnfilters`)
            run.run(path, text)
    except KeyboardInterrupt:  # a Ctrl-C while it ran: the command's to handle (exit 130)
        raise
    except BaseException as exc:  # anything else the config raises becomes file:line
        from config.explain import exec_error  # only a config that raised needs it

        raise exec_error(run.files, str(path), exc) from None
    if "jobs" not in run.namespace:
        raise ConfigError(f"{named}: defines no `jobs`; a config file must end with jobs = [Job(...), ...]")
    return _check_jobs_list(named, run.namespace["jobs"])


def _check_jobs_list(named: str, jobs: Any) -> list[Any]:
    if not isinstance(jobs, (list, tuple)):
        raise ConfigError(f"{named}: `jobs` must be a list of Job objects, not {type(jobs).__name__}")
    for i, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise ConfigError(f"{named}: jobs[{i}] is {a_kind(job)}, not a Job")
    return list(jobs)


# ---- selecting a job ----


def job_key(job: Any) -> str:
    """`cluster/role/environment/name` of a job, with `?` for a part that is unset."""
    parts = []
    for field in ("cluster", "role", "environment", "name"):
        value = expand_field(job, field)  # bounded: the job is not checked yet
        parts.append("?" if value is None else cut(str(value)))
    return "/".join(parts)


def select_job(jobs: list[Any], jobkey: str | None, path: str | Path) -> Any:
    """The job for `jobkey` (`cluster/role/environment/name`); None when there is only one."""
    named = quoted(str(path))
    if not jobs:
        raise ConfigError(f"{named}: `jobs` is empty; there is no job to run")
    if jobkey is None and len(jobs) == 1:
        return jobs[0]  # no key read: each is expanded in the job's scopes (0.1-0.3 ms a job)
    keys = [job_key(j) for j in jobs]
    listed = ", ".join(keys[:LISTED_KEYS])
    if len(keys) > LISTED_KEYS:
        listed += f", ... ({len(keys)} jobs in all)"
    if jobkey is None:
        twice = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
        same = f" ({keys.count(twice)} jobs have the key {twice}; keys must be unique)" if twice else ""
        raise ConfigError(f"{named}: defines {len(jobs)} jobs, so a job key is needed; one of: {listed}{same}")
    # Typed in a shell whose Python reads arguments as ASCII (`LC_ALL=C PYTHONUTF8=0`), `rôle`
    # came as the surrogate escapes of its UTF-8 bytes: the key is read as UTF-8, as the file.
    jobkey = jobkey.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    parts = jobkey.split("/")
    if len(parts) != 4 or not all(parts):
        instance = (" (an instance, Aurora's `/N` after the key, is `stoker run --instance N`)"
                    if len(parts) == 5 and all(parts) and parts[4].isdigit() else "")
        raise ConfigError(f"job key {quoted(jobkey)} is not cluster/role/environment/name{instance}")
    matches = [j for j, k in zip(jobs, keys) if k == jobkey]
    if not matches:
        raise ConfigError(f"{named}: no job {jobkey}; the file defines: {listed}")
    if len(matches) > 1:
        raise ConfigError(f"{named}: {len(matches)} jobs have the key {jobkey}; keys must be unique")
    return matches[0]


def bind_values(jobs: list[Any], bindings: Iterable[tuple[str, str]]) -> list[Any]:
    """Each job with the `--bind` values bound, as the Aurora client binds them."""
    pairs = [{Ref.from_address(key): value} for key, value in bindings]
    return [job.bind(*pairs) for job in jobs] if pairs else jobs


def load_job(path: str | Path, jobkey: str | None = None,
             bindings: Iterable[tuple[str, str]] = (), sources: dict[str, str] | None = None) -> Any:
    """Loads, binds `bindings` (KEY, VALUE) into, selects and validates one job; returns it
    expanded as far as load time allows. `sources`: as for `load_jobs`."""
    try:
        jobs = load_jobs(path, sources)
    except ConfigError as exc:
        if _swapped(path, jobkey):
            raise ConfigError(f"{exc}; the config file comes first, then the job key: "
                              f"did you mean {_in_order(str(jobkey), str(path))}?") from None
        raise
    return prepare_job(select_job(bind_values(jobs, bindings), jobkey, path), quoted(str(path)),
                       submitted=True)


def _in_order(config: str, jobkey: str) -> str:
    """The two words a command reads back as CONFIG then JOBKEY: a config path that starts with
    `-` as `./-x.aurora`, and `--` first for a job key that does (argparse read either as an
    option: `unrecognized arguments`)."""
    words = f"{shell_path(config)} {shell_word(jobkey)}"
    return "-- " + words if jobkey.startswith("-") else words


def _swapped(path: str | Path, jobkey: str | None) -> bool:
    """The arguments look given in Aurora's order (`JOBKEY CONFIG`)."""
    if jobkey is None or Path(path).exists() or len(str(path).split("/")) != 4:
        return False
    return Path(jobkey).is_file()


def check_bound(job: Any, source: str) -> None:
    """Raises ConfigError, as the Aurora client refuses to submit it, when a reference other
    than the ones bound when the task starts (`thermos.*`, `mesos.instance`,
    `mesos.hostname`) is still unbound anywhere in `job`, its container and metadata too."""
    unbound = load_time_unbound(job)
    if unbound:
        shown = " ".join(cut(ref, 80) for ref in unbound[:20])
        raise ConfigError(f"{source}: job {job_key(job)}: Config contains unbound variables: {shown} "
                          f"(bind them in the file, or with --bind NAME=VALUE)", unbound)


# ---- validation ----


def validate_job(job: Any, source: str) -> None:
    """Raises ConfigError (naming `source`, the job key, fields and values) if `job` is invalid."""
    prepare_job(job, source)


def prepare_job(job: Any, source: str, *, angle_refs: bool = True, submitted: bool = False) -> Any:
    """`validate_job`, returning the job flattened and with `<<ref>>` rewritten (unless not
    `angle_refs`: Aurora's own payload, see `flatten`); `submitted`: a job from a config file,
    checked as Aurora's client checks it too (`submission_problems`)."""
    cycles = cycle_problems(job)  # before anything interpolates: a cycle would never end
    if cycles:
        raise ConfigError(join_problems(f"{source}: job", cycles), cycles)
    try:
        flat = flatten(job, angle_refs=angle_refs, cycles_checked=True)
    except ConfigError as exc:
        raise ConfigError(join_problems(f"{source}: job {job_key(job)}", list(exc.problems)), exc.problems) from None
    plain = _plain(flat.get())
    problems = check_job(plain) + (submission_problems(plain) if submitted else [])
    if problems:
        raise ConfigError(join_problems(f"{source}: job {job_key(flat)}", problems), problems)
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_job(job: dict, *, bound: bool = False) -> list[str]:
    """Every rule a well-typed job (as plain values) breaks, as sentences. Process names may
    hold templates (`bind` checks the job again once they are bound, with `bound`: then what
    still looks like one, `{{}}`, is part of the name). Text that holds half of a surrogate
    pair is no text: the other rules are not checked against it."""
    problems = [half_pair_problem(path, show(text), half) for path, text in texts(job, "job")
                if (half := lone_surrogate(text)) is not None]
    problems += [long_integer_problem(path) for path in long_integers(job, "job")]
    if problems:
        return problems
    for field in ("cluster", "role", "environment", "name"):
        value = job.get(field)
        if value == "":
            problems.append(f"job.{field} is empty: it must be one or more ASCII letters, digits, _, - and .")
        elif isinstance(value, str) and not _IDENTIFIER.fullmatch(value):
            problems.append(f"job.{field} = {show(value)} may only contain ASCII letters, digits, _, - and . "
                            "(Aurora refuses any other)")
    if job.get("max_task_failures", 1) < -1:
        problems.append(f"job.max_task_failures = {job['max_task_failures']} must be -1 (unlimited) or more")
    problems += _check_task(job.get("task") or {}, bound)
    problems += _check_health(job.get("health_check_config") or {}, bound)
    problems += _check_lifecycle((job.get("lifecycle") or {}).get("http"), bound=bound)
    problems += port_ref_problems(job)
    try:
        requested_ports([], job_portmap(job))
    except PortmapError as exc:
        problems.append(f"job.announce.portmap: {exc}")
    return problems


def _at_least(problems: list[str], path: str, value: Any, low: float, why: str = "") -> None:
    if isinstance(value, (int, float)) and value < low:
        problems.append(f"{path} = {value} must be at least {low}{why}")


def _at_most(problems: list[str], path: str, value: Any, high: int) -> None:
    if isinstance(value, (int, float)) and value > high:
        problems.append(f"{path} = {value} must be at most {high}")


def _seconds(problems: list[str], path: str, value: Any) -> None:
    """A duration: from 0 to MAX_SECONDS (past it the platform's timers overflow)."""
    _at_least(problems, path, value, 0)
    if isinstance(value, (int, float)) and value > MAX_SECONDS:
        problems.append(f"{path} = {float(value)} must be at most {MAX_SECONDS_WORDS}")


def process_name_problem(path: str, name: Any, bound: bool = False) -> str | None:
    """Why `name` cannot name a process (its logs live in a directory of that name), or
    None. Each template in it counts as one safe character until the job is `bound`."""
    shown = _MUSTACHE.sub("0", name) if isinstance(name, str) and not bound else name
    if isinstance(shown, str) and _SAFE_NAME.fullmatch(shown):
        return None
    return (f"{path}.name = {show(name)} is not a safe process name: names are used as directory "
            "names, so they must match ^[A-Za-z0-9_][A-Za-z0-9_.-]*$, at most 128 characters (no '/', "
            "no leading '.'), also once its templates are bound")


def _check_task(task: dict, bound: bool) -> list[str]:
    problems: list[str] = []
    processes = task.get("processes") or []
    if not processes:
        problems.append("job.task.processes is empty; a task needs at least one process")
    graph = order_graph(((p.get("name"), bool(p.get("final"))) for p in processes),
                        (c.get("order") or [] for c in task.get("constraints") or []),
                        daemons={p.get("name") for p in processes if p.get("daemon")},
                        ephemerals={p.get("name") for p in processes if p.get("ephemeral")})
    reused, unordered = _order_problems(graph.problems)
    for i, p in enumerate(processes):
        path, name = f"job.task.processes[{i}]", p.get("name", "")
        unsafe = process_name_problem(path, name, bound)
        if unsafe:
            problems.append(unsafe)
        elif i in reused:
            problems.append(reused[i])
        bad_cmdline = cmdline_problem(p.get("cmdline"), bound=bound)
        if bad_cmdline:
            problems.append(f"{path}.cmdline = {show(p.get('cmdline'))} (process {show(name)}) "
                            f"{bad_cmdline}")
        _at_least(problems, f"{path}.max_failures", p.get("max_failures"), 0, " (0 = unlimited)")
        _seconds(problems, f"{path}.min_duration", p.get("min_duration"))
        logger = p.get("logger") or {}
        rotate = logger.get("rotate")
        if rotate and logger.get("mode") == "rotate":  # Thermos checks them in that mode alone
            _at_least(problems, f"{path}.logger.rotate.log_size", rotate.get("log_size"), 1)
            _at_least(problems, f"{path}.logger.rotate.backups", rotate.get("backups"), 1)
            _at_most(problems, f"{path}.logger.rotate.backups", rotate.get("backups"), MAX_BACKUPS)
    problems += resources_problems(task.get("resources"))
    _at_least(problems, "job.task.max_failures", task.get("max_failures"), 0, " (0 = never)")
    _at_least(problems, "job.task.max_concurrency", task.get("max_concurrency"), 0, " (0 = unlimited)")
    _seconds(problems, "job.task.finalization_wait", task.get("finalization_wait"))
    return problems + unordered


def _order_problems(found: tuple[OrderProblem, ...]) -> tuple[dict[int, str], list[str]]:
    """The sentences for the order graph's problems: a reused name's by the index of the
    process that reuses it (said beside that process's other problems), and the others.
    Their module loads only when there are some (`config.orderproblems`)."""
    if not found:
        return {}, []
    from config.orderproblems import DuplicateName, describe

    reused = {problem.index: describe(problem) for problem in found if isinstance(problem, DuplicateName)}
    return reused, [describe(problem) for problem in found if not isinstance(problem, DuplicateName)]


def _check_health(hc: dict, bound: bool) -> list[str]:
    numbers = {name: hc[name] for name in HEALTH_NUMBERS
               if isinstance(hc.get(name), (int, float)) and not isinstance(hc.get(name), bool)}
    problems = [f"job.health_check_config.{problem}" for problem in health_problems(**numbers)]
    http = (hc.get("health_checker") or {}).get("http")
    if http:
        _endpoint(problems, "job.health_check_config.health_checker.http.endpoint", http.get("endpoint"))
        problems += [f"job.health_check_config.{p}" for p in http_check_problems(
            http.get("expected_response_code"), http.get("expected_response"))]
    shell = (hc.get("health_checker") or {}).get("shell") or {}
    problems += [f"job.health_check_config.{p}"
                 for p in shell_check_problems(shell.get("shell_command"), bound=bound)]
    return problems


def _check_lifecycle(http: dict | None, *, bound: bool) -> list[str]:
    problems: list[str] = []
    if http:
        p = "job.lifecycle.http"
        port = http.get("port")  # a port's name; one holding a template is judged bound
        if isinstance(port, str) and (bound or "{{" not in port) and not is_port_name(port):
            problems.append(f"{p}.port = {show(port)} is not a port name: a name {{{{thermos.ports[NAME]}}}} "
                            "can hold is letters, digits, '_', '-', '.' and '/'")
        _seconds(problems, f"{p}.graceful_shutdown_wait_secs", http.get("graceful_shutdown_wait_secs"))
        _seconds(problems, f"{p}.shutdown_wait_secs", http.get("shutdown_wait_secs"))
        for name in ("graceful_shutdown_endpoint", "shutdown_endpoint"):
            _endpoint(problems, f"{p}.{name}", http.get(name))
    return problems


def _endpoint(problems: list[str], path: str, value: Any) -> None:
    """An endpoint still holding a template is checked by `bind`, once it is expanded."""
    if isinstance(value, str) and "{{" not in value:
        problem = endpoint_problem(value)
        if problem:
            problems.append(f"{path} = {show(value)} {problem}")
