"""Planning `stoker run`'s job in a throwaway child process, so that the supervisor never
runs the config file's code and never holds the config language's modules.

A `.aurora` file is Python: the loader executes it, with pystachio and Stoker's config
modules loaded for it. Done in the supervisor, whatever the file does would stay there for
the task's whole life: the modules (1.7 MiB of the supervisor's memory), and anything the
code changed in the process (its environment, its signal handlers, a thread it started, a
module it patched). `plan_apart` forks a child that plans (`config.plan.plan_job`) and
sends the plan back through a pipe in the plan cache's plain form (`planform.encode`),
or the ConfigError's message and problems, which the parent raises again; the child then
ends with `os._exit`. The child forked ahead (`plan_ahead`) sends the plan first, alone, and
its answer then leaves it out: the parent decodes it once, and the plan cache keeps the
bytes as they came (`plancache.store`). Output the config prints reaches the same stdout
and stderr as before.
As in Aurora, where the client evaluates the config and the executor never sees it, the
config runs apart from the process that supervises the task.

`job_planner` is the plan `stoker run` makes for its settings, in either child. For a first
run the entry point may have forked the child already, before most of Stoker loaded
(`executor/local/planahead.py`): `plan_apart` then takes that child's answer.

Either child dies with `stoker run` (`earlyfork.die_with`): killed while the config's code
runs, it leaves none of it running. It plans in this process instead when another thread is running (a fork copies only the
calling thread, and a lock another thread holds would stay held in the child: the case of
a test that runs `LocalRun` inside a threaded process) or when the fork fails. The parent
waits for the child, and kills and reaps it if the wait is interrupted (Ctrl-C).

`allocate_ports`: the free loopback ports a new plan is given (in either child, or here),
probed on 127.0.0.1 and ::1 as a kept plan's are before a re-run (`planfiles.ports_free`,
`loopback_sockets`, with the descriptor limit widened for many: `_widened`).
"""
from __future__ import annotations

# CPython's `_signal`: `signal`'s enums (0.4-0.6 ms) were on a new config's path, before its
# planning child's fork, and neither process uses them there
import _signal as signal  # type: ignore[import-not-found]
import contextlib
import gc
import marshal
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import NoReturn

from config import warnfilters
from config.errors import ConfigError, ConfigTimeout
from config.plan import JobPlan, load_frozen, open_problem, plan_job
from executor.host.early import die_with
from executor.local import planform
from executor.local.planahead import EARLY, Inputs, PlanAhead, Slow, collect
from executor.local.planfiles import _narrowed, _widened, loopback_sockets

__all__ = ["allocate_ports", "job_planner", "plan_ahead", "plan_apart", "slow_line"]

# Plans, filling the dict with the text of every file it read (by path); returns the plan
# and why those files may give another plan another time (`config.plan.open_problem`).
Plan = Callable[[dict[str, str]], tuple[JobPlan, str | None]]
Planned = tuple[JobPlan, dict[str, str], str | None]

# How long the child may plan: a config is loaded in milliseconds, so past this its code
# is stuck (`while True: pass`); it is stopped with the line it was running, not waited on
# for ever. (Code stuck inside one C call, such as a regular expression that backtracks
# for hours, only sees the bound when that call returns.)
PLAN_TIMEOUT_SECS = 60.0
_STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}  # raise while loading: cli/start.py


def job_planner(inputs: Inputs, planned_first: Callable[[JobPlan], None] | None = None) -> Plan:
    """The job of `stoker run`'s settings (`planahead.inputs_of`) planned for this machine:
    loaded, checked, given ports and bound (`config.plan.plan_job`); with why the files it
    read may plan otherwise another time (`config.plan.open_problem`). `planned_first` is
    given the plan as soon as it is made, before that judgement, which cannot undo it: when
    it fails, its failure is the reason (the plan is not kept)."""
    config, jobkey, bindings, instance, ports, host, user = inputs

    def planned(sources: dict[str, str]) -> tuple[JobPlan, str | None]:
        plan = plan_job(config, jobkey, bindings, instance=instance, fixed_ports=dict(ports),
                        hostname=host, user=user, allocate=allocate_ports, sources=sources)
        if planned_first is not None:
            planned_first(plan)
        return plan, _judged(sources)

    return planned


def _judged(sources: dict[str, str]) -> str | None:
    """`open_problem(sources)`, or why the files could not be judged (the config's code may
    have lowered the recursion limit or patched the judge): a plan sent first
    (`plan_ahead`) may have started its runs, which a crash here would contradict."""
    try:
        return open_problem(sources)
    except Exception as exc:
        return f"its files were not judged: {type(exc).__name__}: {exc}"


def plan_ahead(inputs: Inputs, write_end: int) -> NoReturn:
    """The child the entry point forked (`executor/cli/launch.py`): plans for `inputs` and
    sends the answer through `write_end`, as `plan_apart`'s child does, with the plan alone
    first (`planahead.EARLY`), for the first run's early start: it starts the runs from it
    while this child still judges the config closed or not (`open_problem`), sends the
    whole answer and ends (1-5 ms, and more on a busy host, that the runs waited for)."""
    def planned_first(plan: JobPlan) -> None:
        # the config's code has run: no timeout raised into the rest (a write of the plan cut
        # short, or a "timeout" answer contradicting the plan the runs started from)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for stream in (sys.stdout, sys.stderr):  # what the config printed, before anything runs
            with contextlib.suppress(Exception):  # as at the child's end: a closed or broken stream
                stream.flush()  # fails the flush, not the plan (its end fails it again, exit 1)
        data = marshal.dumps(planform.encode(plan))
        data = EARLY + len(data).to_bytes(4, "big") + data
        while data:
            data = data[os.write(write_end, data):]
        sent.append(True)

    sent: list[bool] = []  # the plan went first: the answer leaves it out (the parent has it)
    _child(job_planner(inputs, planned_first), write_end, sent)


def plan_apart(plan: Plan, ahead: PlanAhead | None = None, *, source: str = "the config") -> Planned:
    """What `plan` returns, and the sources it read, planned in a child process when this
    one has a single thread; raises what `plan` raised (a ConfigError with its message).
    With `ahead`, the answer of the child forked for the same plan while Stoker loaded; or,
    when it gave no plan answer after the plan it sent first, that plan, not kept.
    A child that ended without an answer is the config's doing (`source` names it): its code
    ran there, and may have called os._exit(), killed its process or raised KeyboardInterrupt
    (which the loader leaves to the command): a ConfigError that says so."""
    if ahead is not None:
        return _after_ahead(ahead, source)
    if not warnfilters.alone() or (forked := _fork(plan)) is None:
        return _here(plan)
    return _result(*collect(*forked, slow_line(source)), source)


def slow_line(source: str) -> Slow:
    """The line `stoker run` says when its job is still not planned SLOW_SECS after the
    planning child's fork (`planahead.Slow`): until PLAN_TIMEOUT_SECS it was silent."""
    return Slow(f"{source}: the job is still not planned", "planning", PLAN_TIMEOUT_SECS)


def _fork(plan: Plan) -> tuple[int, int, set[int]] | None:
    """A child that plans `plan` and writes its answer to a pipe: its pid, the pipe's read
    end, and the signal mask to put back once the caller can kill the child; None when no
    process could be had (nothing left behind)."""
    read_end, write_end = os.pipe()
    gc.freeze()  # the collector leaves what exists now alone: in the child, no copy-on-write for it,
    # and it stays on there for the config's own garbage (cycles holding files)
    # Ctrl-C (or another stop) waits until the parent is inside the `try` that kills the child
    # (`collect`): a KeyboardInterrupt raised between the fork and it would leave the child
    # planning, holding this process's stdout, for up to PLAN_TIMEOUT_SECS.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        gc.unfreeze()
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: never returns, even when a stop held since the fork lands as it
        try:  # is let in (raised there, it would go on as this process and run its exit)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_end)
            die_with(parent)  # a `stoker run` killed (SIGKILL) leaves no config running
            _plan_bundle()
            _child(plan, write_end)
        finally:
            os._exit(1)
    gc.unfreeze()
    os.close(write_end)
    return pid, read_end, mask


def _plan_bundle() -> None:
    """The config language's modules (pystachio, the schema, the loader) served from their
    own bundle file (`executor.codebundle.PLAN`), and their attrs classes' methods from
    their own code cache file (`codecache.also("plan")`), in a child of `stoker run`'s,
    whose entry point installed the supervisor's, as a first run's planning child adds them
    (`launchfirst`): a run it did not plan ahead (another flag than `--sandbox`, a thread
    started) loaded the modules each from its own file, 23 found and opened, and compiled
    3 classes' methods again (`BoundJob`, `Limits`, `ResolvedPorts`). Neither imported
    here: `stoker executor` has neither."""
    codecache = sys.modules.get("executor.codecache")
    codebundle = sys.modules.get("executor.codebundle")
    with contextlib.suppress(Exception):  # (they raise nothing foreseen: a MemoryError costs a file, not
        if codecache is not None:  # the plan, whose child would end without an answer, said as the config's doing)
            codecache.also("plan")
        if codebundle is not None:
            codebundle.install(codebundle.PLAN)


def _here(plan: Plan) -> Planned:
    sources: dict[str, str] = {}
    result, problem = plan(sources)
    return result, sources, problem


def _child(plan: Plan, write_end: int, sent_first: list[bool] | None = None) -> NoReturn:
    """Plans, sends the answer through `write_end` and ends; the answer's plan is None when
    `sent_first` says the plan went ahead of it (`plan_ahead`). A plan's answer ends with the
    bundle file this child found damaged ("": none), which the parent says (`_result`)."""
    code = 0
    try:
        try:
            with bounded(PLAN_TIMEOUT_SECS):
                load_frozen()  # a child ends once it answers: what this freezes is not kept long
                result, sources, problem = _here(plan)
            answer: tuple = ("plan", None if sent_first else planform.encode(result), sources, problem,
                             _bundle_damaged())
        except ConfigError as exc:
            answer = ("error", str(exc), list(exc.problems))
        except ConfigTimeout:  # outside the config's code (reading it): no line to name
            answer = ("timeout", PLAN_TIMEOUT_SECS)
        except Exception:  # a bug, not the config's fault: its traceback, for the parent to show
            import traceback  # only then (with `textwrap`): a child that plans never needs it

            answer = ("crash", traceback.format_exc())
        data = marshal.dumps(answer)
        while data:
            data = data[os.write(write_end, data):]
    except BaseException:  # Ctrl-C, or the parent gone: nothing to send
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                code = 1
        os._exit(code)


@contextlib.contextmanager
def bounded(secs: float) -> Iterator[None]:
    """Raises ConfigTimeout into whatever runs in this child after `secs` (a fresh process:
    no other timer to disturb; `stoker inspect`'s child too, `executor/cli/apart.py`)."""
    def expired(signum: int, frame: object) -> None:
        raise ConfigTimeout(f"the config's code was still running after {secs:g} s (an endless loop?), "
                            "so it was stopped")

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, secs)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _result(data: bytes, status: int, source: str, decoded: object = None) -> Planned:
    """The plan in the child's answer (`decoded` when it was decoded already, by the early
    start, or when the answer left it out: it was sent first), the sources and the problem;
    raises what the child sent instead."""
    if not data:
        raise ConfigError(f"{source}: the process running the config ended ({_ended(status)}) before the "
                          "job was planned: does its code call os._exit(), kill its own process or "
                          "raise KeyboardInterrupt?")
    answer = marshal.loads(data)
    if answer[0] == "error":
        raise ConfigError(answer[1], answer[2])
    if answer[0] == "timeout":
        raise ConfigError(f"{source}: the job was still not planned after {answer[1]:g} s (a config file "
                          "that never ends, such as a FIFO nobody writes to?), so planning was stopped")
    if answer[0] == "crash":
        raise RuntimeError(f"planning the job failed in its process:\n{answer[1]}")
    plan = planform.decode(answer[1]) if decoded is None else decoded
    assert isinstance(plan, JobPlan)
    codebundle = sys.modules.get("executor.codebundle")  # (loaded where the child had one to find damaged)
    if answer[4] and codebundle is not None:
        codebundle.found_damaged(answer[4])  # said with this process's own (`runstart.forget_listings`)
    return plan, answer[2], answer[3]


def _bundle_damaged() -> str:
    """The code bundle file this child found damaged (`codebundle.PLAN`, read only here, or
    the one it has from its fork), else "": it ends without a log, so the parent says it."""
    codebundle = sys.modules.get("executor.codebundle")
    return codebundle.forget() if codebundle is not None else ""


def _after_ahead(ahead: PlanAhead, source: str) -> Planned:
    """The answer of the child forked ahead; or the plan it sent first (`plan_ahead`), which
    the early start may have started runs from, when no plan answer followed it (the
    config's own code, a thread or a finalizer, ended the child; a Ctrl-C), not kept."""
    data, status = ahead.answer()
    sent = ahead.early_plan()
    if sent is None:
        return _result(data, status, source)
    plan = ahead.plan if ahead.plan is not None else planform.decode(marshal.loads(sent))
    if _a_plan(data):  # the answer after it, without the plan (`_child`)
        return _result(data, status, source, plan)
    assert isinstance(plan, JobPlan)
    return plan, {}, f"the process planning it gave no answer after the plan ({_ended(status)}), " \
                     "so the files it read were not judged"


def _a_plan(data: bytes) -> bool:
    """Whether `data` is a whole answer that holds a plan."""
    try:
        return bool(marshal.loads(data)[0] == "plan")
    except (ValueError, EOFError, TypeError, IndexError):
        return False


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


PICK_TRIES = 64  # numbers the kernel offers a name before `_chosen` gives up


def allocate_ports(names: list[str], fixed: Mapping[str, int]) -> dict[str, int]:
    """Free loopback ports for every name not given with --port (`_chosen`, never one of the
    --port numbers), and every port given with --port, among `names` or not (a name of the
    portmap's, which it overrides)."""
    ports = {name: fixed[name] for name in names if name in fixed}
    if len(ports) < len(names):  # most jobs choose none: no `socket` loaded for them
        ports.update(_chosen([name for name in names if name not in ports], set(fixed.values())))
    for name, number in fixed.items():
        ports.setdefault(name, number)
    return ports


def _chosen(names: list[str], given: set[int]) -> dict[str, int]:
    """Free loopback ports for `names`: free on 127.0.0.1 and on ::1 (`loopback_sockets`),
    all held open until every one is chosen, so no two names get the same number. A number
    another socket holds on ::1 stays held on 127.0.0.1 while the next is asked for, so the
    kernel does not offer it again; so does one of `given` (the run's --port numbers: free
    now, their task binds them later, and a name chosen one had its port taken by it)."""
    import socket  # in the planning child only

    ports: dict[str, int] = {}
    held: list[socket.socket] = []
    soft = _widened(2 * len(names))
    try:
        for name in names:
            for _ in range(PICK_TRIES):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", 0))
                number = sock.getsockname()[1]
                if number in given:
                    continue  # another name's, given with --port
                try:
                    loopback_sockets(number, held, ipv4=False, reuse=False)
                except OSError:
                    continue  # held on ::1 by another program: another number
                ports[name] = number
                break
            else:
                raise OSError(f"no port free on both 127.0.0.1 and ::1 in {PICK_TRIES} tries")
    finally:
        for sock in held:
            sock.close()
        _narrowed(soft)
    return ports
