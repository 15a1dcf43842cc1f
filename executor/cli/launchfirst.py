"""A first run's early start: the job planned ahead, and the plan's first runs started as
soon as `stoker run` has loaded, before its supervisor's own start.

When there is no kept plan for `stoker run CONFIG` (a first run, an edited config, one
that reads more than its text), `executor.cli.launch.begin` loads this module (a re-run
started early never does) and notes what to plan instead (`note`), and `fork_ahead`, which
the entry point calls once attrs, `typing` and the modules the supervisor and the planning
child both use are loaded, forks the child that plans the job (`executor/local/planahead.py`),
so that pystachio, the config modules and the config's code load beside the rest of the
supervisor's start rather than after it. Forked at the entry point's first line, the child
imported attrs, `typing`, `pathlib` and logging a second time, beside the
parent that imported them too: CPU both paid for, and on a busy 2-core host wall time too.

For such a first run, `start_first` starts the plan's first runs once the child has
answered and `stoker run` has read its settings (a usage error starts nothing), before the
supervisor's own start (its host session, cgroup, watchdog and checkpoint, some 25-60 ms)
and before `stoker run` has loaded the supervisor (`executor.local.run`, imported after
it): while the child plans, `start_first` loads what it uses and then the supervisor's own
modules, one at a time (LOAD_WHILE_PLANNING), and stops at the first that would begin after
the answer came, so the wait does the imports that were to follow it, and an answer that
comes early is not held up by them (the child is the slower of the two: an interleaved A/B
on the busy 2-core VM, 40 launches each, exec → 1 ran 347 → 329 ms, faster in 29 of 40
pairs). Nor by the import in progress as it comes: one of those modules loads up to 40 of
its own, and the runs start at the first of those about to load once the answer is there
(`_AnswerWatch`). The answer holds the plan, which gives what a launch record would
(`plancache.launch_fields`, the first wave by `plancache.first_wave`), and steps 3 and 4 of
`executor/cli/launch.py` follow as for a kept plan, under the plan cache's lease on the config's entry. Only a plan
starts anything: a config that fails to load (the child's answer is its error) starts no
run. The answer is kept for `LocalRun`, which plans with it as ever
(`planning.plan_apart`), and takes over the lease and the runs as from a kept plan.
Nothing here raises or prints but a Ctrl-C while `start_first` waits for the plan.
"""
from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # CPython's: `signal` adds enums
import marshal
import os
import sys

from executor.cli.launch import (
    _close_all,
    _entry,
    _take_off,
    _threading_started,
    eligible,
    to_plan_ahead,
)
from executor.host.early import EarlyStart, stop_pending
from executor.local import planfiles
from executor.local.planahead import Inputs, PlanAhead, inputs_of
from executor.procs import earlyfork

TYPE_CHECKING = False  # not `typing`'s: the early start's modules load neither typing nor collections
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["fork_ahead", "note", "start_first", "take_ahead"]

_ahead: PlanAhead | None = None
_to_plan: Inputs | None = None  # what `fork_ahead` plans: `launch.begin` found no kept plan for it
_first: tuple[tuple[str, str | None], Mapping[str, str]] | None = None  # what `start_first` may start


def note(wanted: tuple[str, str | None], args: list[str], environ: Mapping[str, str]) -> None:
    """Note what `fork_ahead` plans for `stoker ARGS`, `wanted` (`launch.to_plan_ahead`'s:
    no plan is kept for it), and what `start_first` may start."""
    global _to_plan, _first
    _to_plan = _inputs(wanted[0], environ)
    eligible_now = eligible(args, environ)
    _first = (eligible_now, environ) if eligible_now is not None else None


def start_first(ahead: PlanAhead) -> EarlyStart | None:
    """A first run's early start, once: the first runs of the plan `ahead` (`take_ahead`'s)
    made, started now as a re-run's are from its launch record (`_start_ahead`); None when
    `note` noted none for these words, they may not start early, a stop signal came
    meanwhile (recorded: `stoker run` as a container's main process), a module of the
    supervisor failed to load before the answer came, or this process has a thread besides
    (`_take_off`). `stoker run` calls it once its settings are read (a usage error starts nothing), before
    it imports the supervisor: the wait for the plan loads the supervisor's modules
    (`_load_while_planning`), and the runs start as soon as the answer is seen between two
    of them (`_AnswerWatch`); a Ctrl-C meanwhile kills and reaps the planning child and is
    raised."""
    global _first
    first, _first = _first, None
    if first is None:
        return None
    watch = _AnswerWatch(ahead, first)
    try:
        loaded = _load_while_planning(ahead, watch)
    except BaseException:  # a Ctrl-C in the import the runs started in: given up, as the caller's would be
        if watch.started is not None:
            watch.started.abandon()
        raise
    if watch.fired:  # started between two modules: a module that failed after is the caller's to
        return watch.started  # import again (failing again, it gives the runs up, as after any start)
    return watch.start() if loaded else None  # a module failed before the answer: no run starts


# What `stoker run` loads next, in its order: what `_start_ahead` uses, then the supervisor
# (`executor.local.run`, its heaviest parts first). `start_first` loads them while the child
# plans, one at a time, and stops at the first that would start after the answer came; the
# runs start as soon as the answer is seen between two modules of one (`_AnswerWatch`).
LOAD_WHILE_PLANNING = (
    "config.settings", "executor.local.plancache", "executor.task.planner", "executor.local.runstart",
    "executor.task.records", "executor.task.announcing", "executor.procs.spawn", "executor.task.owner",
    "executor.procs.supervisor", "executor.task.wiring", "executor.local.run",
)
START_USES = 3  # LOAD_WHILE_PLANNING's first, what `_start_ahead` uses: loaded whole before it may run
OWN_PACKAGES = ("executor.", "config.", "healthcheck.")  # the modules `_AnswerWatch` looks between


class _AnswerWatch:
    """A finder that finds nothing (`sys.meta_path`'s first while `_load_while_planning`
    imports the supervisor's modules): as each module of Stoker's is about to load, it looks
    whether the child answered, and once it has, starts the runs there (`start`), between two
    modules, not once the whole import in progress has ended (one of LOAD_WHILE_PLANNING
    loads up to 40 modules: 5-20 ms that the answer waited, on the busy 2-core VM). What the
    start uses is loaded whole before (START_USES), and it imports no module of Stoker's
    meanwhile, so none it uses is one half loaded; the standard modules it may load
    (`socket` to probe a port) are never the one being found (it looks only at Stoker's)."""

    def __init__(self, ahead: PlanAhead, first: tuple[tuple[str, str | None], Mapping[str, str]]) -> None:
        self._ahead = ahead
        self._first = first
        self.fired = False  # `start` ran (once)
        self.started: EarlyStart | None = None  # what it started

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if not self.fired and name.startswith(OWN_PACKAGES) and self._ahead.answered():
            self.start()

    def start(self) -> EarlyStart | None:
        """The plan's first runs, from the plan the child sent first (waited for when it has
        not come; its whole answer, read later by `planning.plan_apart`, comes after)."""
        self.fired = True
        plan = self._ahead.early_plan()
        if stop_pending():  # a container's main process stopped while it loaded: nothing starts
            return None
        try:
            self.started = _start_ahead(self._ahead, plan, *self._first)
        except Exception:  # whatever it was, there is no early start: the run goes on as ever
            self.started = None
        return self.started


def _load_while_planning(ahead: PlanAhead, watch: _AnswerWatch | None = None) -> bool:
    """LOAD_WHILE_PLANNING's modules, while `ahead` has not answered: the wait for the plan
    does the supervisor's own imports instead of only waiting (on a second core, or on the
    first while the child waits for its turn), with `watch` looking for the answer between
    the modules of each import past START_USES. False when one fails (a broken install): no
    run starts early, which the supervisor might never load to adopt (started, they were
    killed again as `stoker run` fails); its user imports it again, and says so."""
    for index, name in enumerate(LOAD_WHILE_PLANNING):
        if ahead.answered():
            return True
        watching = watch is not None and index >= START_USES
        if watching:
            sys.meta_path.insert(0, watch)  # type: ignore[arg-type]  # a finder by its one method
        try:
            __import__(name)
        except Exception:
            return False
        finally:
            if watch in sys.meta_path:  # (put there, and not taken out by a module meanwhile)
                sys.meta_path.remove(watch)
    return True


def take_ahead() -> PlanAhead | None:
    """The child `fork_ahead` forked to plan a first run, once (None when it forked none)."""
    global _ahead
    ahead, _ahead = _ahead, None
    return ahead


def fork_ahead() -> None:
    """Fork the child that plans what `note` noted (nothing when it noted nothing). The
    entry point calls it once the modules both processes use are loaded: the child has them
    from the fork instead of importing them again beside this process."""
    global _to_plan, _ahead
    inputs, _to_plan = _to_plan, None
    if inputs is None or _threading_started():
        return
    try:
        # what the child plans with and the supervisor uses too (the plan's classes, its plain
        # form); not the plan cache, whose `logging` and settings the child never uses (loaded
        # after the fork, beside its planning: executor/local/planform.py); nor `socket`, which
        # the child loads to probe a job's ports, and which the supervisor no longer loads (its
        # control socket is `_socket`'s: executor/host/control.py); nor `json`, which the child
        # defers (`_fork_ahead`) and `executor.cli.main` loads after the fork
        import executor.local.planning  # noqa: F401

        _ahead = _fork_ahead(inputs)  # (the child never returns from it)
    except Exception:  # then it plans when the plan is needed, as ever
        _ahead = None
    try:  # the early start's step 4, which `launch` imports where it runs so that the child never
        # loads it: loaded now, beside the child, not on the start's path as the plan comes
        from executor.procs import oomcount, sandboxfs, watchdogsh  # noqa: F401
    except Exception:  # (no descriptor left, say) `launch._start` tries again, and gives its runs up
        return


def _start_ahead(ahead: PlanAhead, sent: bytes | None, wanted: tuple[str, str | None],
                 environ: Mapping[str, str]) -> EarlyStart | None:
    """A first run's early start: the first runs of the plan the child forked ahead sent
    (`sent`, before its answer), started as a re-run's are from its launch record, with the
    same checks; None when it sent none (an error: nothing started, the run reports it) or
    when they may not start early. Its modules are LOAD_WHILE_PLANNING's first (loaded here
    when the answer came before them)."""
    directory = planfiles.cache_dir(environ)
    if sent is None or directory is None:
        return None
    from config.settings import AGENT_VARIABLES, SECRET_VARIABLES
    from executor.local import plancache

    plan = ahead.plan = plancache.decode(marshal.loads(sent))  # the one the run plans with (`planning.plan_apart`)
    wave = plancache.first_wave(plan)
    if wave is None:
        return None
    record = plancache.launch_fields(plan, wave, SECRET_VARIABLES + AGENT_VARIABLES)  # before the lease:
    entry = _entry(directory, os.path.abspath(wanted[0]))  # nothing between it and `_take_off` raises
    lease = plancache.lease_at(directory, entry + planfiles.LOCK_SUFFIX).take()  # `RunStart.plan` takes it over
    if lease is None:
        return None
    return _take_off(record, entry, wanted[1], lease, environ, ahead=True)


def _ahead_inputs(args: list[str], environ: Mapping[str, str]) -> Inputs | None:
    """What the child plans for `run CONFIG [--sandbox DIR]`; None for other words, or when
    a plan is kept for it (then the supervisor plans nothing)."""
    wanted = to_plan_ahead(args, environ)
    return None if wanted is None else _inputs(wanted[0], environ)


def _inputs(config: str, environ: Mapping[str, str]) -> Inputs:
    return inputs_of(config, None, (), 0, (), os.uname().nodename, planfiles.login_name(environ))


def _fork_ahead(inputs: Inputs) -> PlanAhead | None:
    """The child that plans for `inputs` and answers through a pipe, forked now."""
    from config.words import quoted  # (loaded with `executor.local.planning`, as `fork_ahead` loads it)
    from executor.local.planning import slow_line

    for stream in (sys.stdout, sys.stderr):  # the child flushes its copies as it ends: they
        stream.flush()  # must not hold what this process wrote before the fork
    parent = os.getpid()
    read_end, write_end = os.pipe()
    # Ctrl-C (or another stop, `start.WHILE_LOADING`) waits until the child is inside the
    # `try` that ends it: raised before, the child would go on as this process and run its exit
    stops = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, stops)
    try:
        pid = os.fork()
    except OSError:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        _close_all([read_end, write_end])
        return None
    if pid == 0:  # the child: plans, answers and ends; never returns
        try:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
            os.close(read_end)
            _plan_in_child(inputs, write_end, parent)
        finally:
            os._exit(1)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    os.close(write_end)
    return PlanAhead(pid, read_end, inputs, slow_line(quoted(inputs[0])))


def _plan_in_child(inputs: Inputs, write_end: int, parent: int) -> None:
    """The forked child's work: it plans for `inputs` and sends the plan to `write_end`,
    ending when `parent` does."""
    import gc  # here: the early start loads nothing it does not use

    gc.freeze()  # the parent's objects: no collection touches them (their pages stay shared);
    # the collector stays on for the config's own garbage (cycles holding files)
    earlyfork.die_with(parent)  # where prctl is denied, by a thread that watches the parent
    from executor import codecache

    codecache.install("run")  # nothing more when the entry point installed it before the fork
    codecache.also("plan")  # the config language's classes, which the parent never loads
    from executor import codebundle

    codebundle.install(codebundle.PLAN)  # and its modules, from a file of their own
    from executor import deferred, nodocs

    # pystachio imports `json` for its `json_*` methods, which no plan calls: loaded at
    # its first use (a JSON config, `config/jsonconfig.py`), not before the plan is sent;
    # with STOKER_CODE_CACHE=off (no `nodocs`), as Python loads it, as every module then
    if nodocs.installed():
        deferred.defer(deferred.JSON)
    from executor.local.planning import plan_ahead

    plan_ahead(inputs, write_end)
