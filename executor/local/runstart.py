"""What one `stoker run` starts from: the job's plan, and what the entry point began before
the run existed (the early start's sandbox, lock, lease and runs; the child planning ahead).

The plan is the one an earlier run of the same, unchanged config kept (`plancache.py`), when
its ports are still free, else planned now (by the child the entry point forked for it,
when it planned for these settings; `planahead.py`) and kept for the next run. The early
start (`executor/cli/launch.py`) is taken as far as it matches this run — its plan's lease,
its sandbox — and given up (its runs killed, one WARNING line) at the first thing that does
not; the first attempt's supervisor adopts its runs. Without an early start the sandbox is
made here (`make_sandbox`), refused when another user could plant files in it. What every
attempt then shares is a `Prepared`; where the job announces itself, `announcement_for`.
Owned by `LocalRun`'s thread.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from config.errors import ConfigError
from config.plan import JobPlan
from config.registry import RegistrySettings
from config.settings import AGENT_VARIABLES, SECRET_VARIABLES, RunSettings
from config.words import quoted
from executor.host.early import EarlyStart, undefer_stop_signals
from executor.host.entry import FrontEnd
from executor.host.lock import SandboxBusy, byte_lock_holder
from executor.host.registry import Registry
from executor.host.replacefile import make_dirs, writable_by_others
from executor.host.session import HostSession, KillHook, sandbox_unusable
from executor.local import plancache, planfiles
from executor.local.planahead import INPUT_NAMES, Inputs, PlanAhead, inputs_of
from executor.local.planfiles import login_name, ports_free
from executor.logs import log_event
from executor.task.wiring import load_announcer

if TYPE_CHECKING:
    from config.spec import JobSpec
    from executor.local.planning import Planned
    from executor.task.serverset import Announcement

logger = logging.getLogger(__name__)


def make_sandbox(requested: str | None, job_name: str) -> Path:
    """The sandbox RunSettings chose (docs/contract.md §4: $MESOS_SANDBOX, else $MESOS_DIRECTORY,
    else --sandbox), else a fresh directory under the current one."""
    if requested == "":  # `--sandbox "$SB"`, SB unset: no directory (an empty variable is unset, not a flag)
        raise SandboxError("cannot create sandbox '': No such file or directory")
    if requested:
        path = Path(requested)
    else:
        path = Path.cwd() / planfiles.sandbox_name(job_name)
    named = quoted(str(path))  # as errors quote what they were given
    try:
        if path.exists() and not path.is_dir():
            raise SandboxError(f"sandbox {named} exists and is not a directory")
    except OSError as exc:  # a name longer than a file name may be, a directory not ours to see
        raise SandboxError(f"cannot create sandbox {named}: {exc.strerror or exc}") from None
    link = planfiles.foreign_link(str(path))  # before anything is made there
    if link:
        raise _refused(path, link)
    above = planfiles.open_above(str(path))
    if above:  # a directory of one's own inside it would not do: its level above is theirs
        raise _refused(path, above, "use a directory no one but you and root may change, at every level "
                                    "(one others may write must be sticky, chmod +t, as /tmp is)")
    try:
        make_dirs(str(path), planfiles.SANDBOX_MODE)  # 0755 at most, whatever the umask
    except OSError as exc:
        raise SandboxError(f"cannot create sandbox {named}: {_unmade(path, exc)}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise SandboxError(f"sandbox {named} is not writable")
    problem = _not_own(path)
    if problem:
        raise _refused(path, problem)
    return path.resolve()


def _unmade(path: Path, exc: OSError) -> str:
    """Why the sandbox could not be made. Was: "File exists" for a symlink whose target is
    missing (`--sandbox sb`, sb -> a directory since removed), which is not made through it;
    "does not exist" for a link round a loop, and for a link to a link to nothing (that is)."""
    if exc.errno != errno.EEXIST or not path.is_symlink():
        return exc.strerror or str(exc)
    target, end = os.readlink(path), os.path.realpath(path)  # realpath stops where the links go round
    link = f"it is a symbolic link to {quoted(target)}"
    if os.path.islink(end):
        return f"{link}, which leads round in a loop"
    if os.path.islink(path.parent / target):
        return f"{link}, which leads to {quoted(end)}, which does not exist"
    return f"{link}, which does not exist"


def _refused(path: Path, problem: str, remedy: str = "use a directory of your own") -> SandboxError:
    return SandboxError(f"sandbox {quoted(str(path))} {problem}: the task would run what another user puts "
                        f"in it (bash sources its .thermos_profile before every process); {remedy}")


def _not_own(path: Path) -> str:
    """Why another user could plant files in `path` (it is theirs, or open to their writes);
    '' when no one but this user (and root) can."""
    info = os.stat(path)
    if info.st_uid != os.geteuid():
        return f"belongs to {planfiles.user_name(info.st_uid)}, not {planfiles.user_name(os.geteuid())}"
    if writable_by_others(info, os.getegid(), str(path)):  # a sticky one too: others could add names
        return f"may be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return ""


class SandboxError(Exception):
    """The sandbox cannot be made or used: one `stoker: error:` line, exit 2."""


CLAIM_TRIES = 8  # new plans a run makes while another live run claims a port its plan chose


class PortClaims:
    """The loopback ports this run chose, claimed for its whole life: a byte-range lock
    (`lockf`) at each port's number in the registry root's claims file
    (`Registry.open_claims`), which the kernel lets go of as the run's process ends. A port is
    chosen free (`planning.allocate_ports`: bound, then closed) and its task binds it later:
    two runs started at once were given the same port, free for both when each chose (the
    kernel offers a port at random: 41 of 200 storms of 40 runs of two ports each), and the
    second server failed to bind it at every attempt. A port another live run claims is not
    taken: the run plans again, or does not use the kept plan. The `--port` numbers are
    claimed too, where no other live run claims them (`take_given`). Without a claims file
    (the registry root cannot be made or trusted), ports are taken unclaimed; so are they where
    it takes no lock (ENOLCK: an NFS home whose server's lock manager is not reached), with one
    WARNING (`ports_unclaimed`). Each host has its own claims file (`claims_name`): a root on
    NFS that several hosts share, one host's claims held no other's ports."""

    def __init__(self, registry: RegistrySettings | None) -> None:
        self._registry = registry
        self._fd: int | None = None
        self._lockless = False  # its claims file takes no lock (`_unclaimed`)
        self._held: set[int] = set()  # the numbers this run claims
        self.contested: int | None = None  # the number last found claimed by another process

    def take(self, numbers: list[int]) -> bool:
        """Claims every one of `numbers`; False (none of them claimed anew) when another live
        run claims one. A number this run claims already is left as it is: let go with the
        others when one is another run's, this run's claim on it would be gone too."""
        fd, taken = self._claims(), list[int]()
        if fd < 0 or self._lockless:  # no claims file (`lockf` raises ValueError for -1, not OSError), no locks
            return True
        for number in numbers:
            if number in self._held:
                continue
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, number)
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another run's
                self.contested = number
                for mine in taken:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, mine)
                return False
            except OSError as exc:  # no locks there (ENOLCK: an NFS server's lock manager not reached)
                self._unclaimed(exc)
                break
            taken.append(number)
        self._held.update(taken)
        return True

    def take_given(self, numbers: list[int]) -> None:
        """Claims each `--port` number no other live run claims: unclaimed, a number whose
        task had not bound it yet was free to the next run's choice, which was given it too
        (two live runs on one port). One another live run claims is the user's choice still,
        not refused (two runs may ask for one number, as before)."""
        for number in numbers:
            self.take([number])

    def holder(self, number: int) -> str:
        """Who claims `number`, as /proc/locks names the lock's holder: "pid N (its command)",
        or that it is not known (no /proc/locks, the lock let go since, or its holder in
        another PID namespace). Usually another live `stoker run`, but any process that
        can open the claims file may lock a byte of it."""
        fd = self._claims()
        pid = byte_lock_holder(os.fstat(fd), number) if fd >= 0 else 0
        if pid <= 0:
            return "a process this host's /proc/locks does not name"
        from executor.task.leftoverprocs import command_of  # only for a refusal

        return f"pid {pid} ({command_of(pid) or 'its command not readable'})"

    def _unclaimed(self, exc: OSError) -> None:
        """Its claims file takes no lock: one WARNING, and this run's ports are taken unclaimed
        from now on (a lock each port, asked again, said nothing once per port)."""
        self._lockless = True
        log_event(logger, logging.WARNING, "ports_unclaimed",
                  reason=f"the port claims file in {self._registry.registry_root if self._registry else '?'} takes "
                         f"no lock ({errno.errorcode.get(exc.errno or 0, exc.errno)}: {exc.strerror}): this run's "
                         f"ports are taken unclaimed, and another run of this host may be given the same one")

    def _claims(self) -> int:
        if self._fd is None:
            try:
                self._fd = Registry(self._registry).open_claims() if self._registry is not None else -1
            except OSError:
                self._fd = -1
        return self._fd


class RunStart:
    def __init__(self, settings: RunSettings, environ: Mapping[str, str],
                 early: EarlyStart | None, ahead: PlanAhead | None,
                 registry: RegistrySettings | None = None) -> None:
        self._settings = settings
        self._environ = environ
        self._lease = plancache.Lease(None)  # on the kept plan, while this run uses its ports
        self._early = early  # until the first attempt's supervisor adopts its runs
        self._ahead = ahead  # until the plan is needed
        self._claims = PortClaims(registry)

    @property
    def early(self) -> EarlyStart | None:
        """The early start, while it is still this run's to hand over or give up."""
        return self._early

    def handed_over(self) -> None:
        """The first attempt's supervisor took the early start's runs."""
        self._early = None

    def close(self) -> None:
        """The run is over: an early start nothing took is given up; the kept plan's ports
        are the next run's."""
        self.give_up_early("the run ended before its task started", then="")
        self._lease.close()

    def plan(self, host: str) -> JobPlan:
        """The job planned for this machine (`config.plan`), kept or planned now."""
        s = self._settings
        user = login_name(self._environ)
        inputs = inputs_of(s.config, s.jobkey, tuple(s.bindings), s.instance, tuple(sorted(s.ports.items())),
                           host, user)
        ahead = self._ahead_for(inputs)
        if s.ports:  # before a port is chosen: none this run was given with --port
            self._claims.take_given(sorted(set(s.ports.values())))
        directory = plancache.cache_dir(self._environ)
        if directory is None and (why := plancache.unkept_reason(self._environ)):
            _say_unkept(why)
        key = plancache.plan_key(s, host, user)
        if ahead is None and self._from_ahead():
            self.give_up_early("it started the plan made ahead for other settings")
        if directory is not None:
            self._lease = self._early_lease(directory, key) or plancache.lease(directory, key)
            if self._lease.problem:
                _say_unkept(self._lease.problem)
            # the early start probed the ports before its runs could take them; one of a plan
            # made ahead started that plan, whatever was kept meanwhile
            kept = None if self._from_ahead() else plancache.lookup(directory, key, self._probe, self._lease)
            if kept is not None:
                if ahead is not None:
                    ahead.cancel()
                return kept
        if not self._from_ahead():
            self.give_up_early("its plan is not the one kept")
        plan, sources, problem = self._claimed_plan(inputs, ahead)
        if directory is not None:
            if unwritten := plancache.store(directory, key, sources, plan, self._lease, problem,
                                            None if ahead is None else ahead.early_plan()):  # the bytes it was sent in
                _say_unkept(unwritten)
            if problem is None:
                plancache.keep_launch(directory, key, sources, plan, self._first_wave(plan),
                                      SECRET_VARIABLES + AGENT_VARIABLES, self._lease)
        return plan

    def _probe(self, numbers: list[int]) -> bool:
        """Whether the kept plan's ports may be this run's: free (the early start probed them
        before its runs could take them) and claimed by no other live run."""
        return (self._early is not None or ports_free(numbers)) and self._claims.take(numbers)

    def _claimed_plan(self, inputs: Inputs, ahead: PlanAhead | None) -> Planned:
        """A new plan whose chosen ports this run claimed (`PortClaims`): planned again while
        another live run claims one of them, at most CLAIM_TRIES times."""
        from executor.local.planning import job_planner, plan_apart  # a kept plan needs none of it

        for _ in range(CLAIM_TRIES):
            planned = plan_apart(job_planner(inputs), ahead, source=quoted(inputs[0]))
            if self._claims.take([planned[0].spec.ports[name] for name in planned[0].allocated]):
                return planned
            if ahead is not None:
                self.give_up_early("another `stoker run` claims a port its plan chose")
                ahead = None
        number = self._claims.contested
        raise ConfigError(f"{quoted(inputs[0])}: job {planned[0].spec.key}: no free loopback port could be "
                          f"chosen for {', '.join(planned[0].allocated)}: each one offered, {CLAIM_TRIES} times, "
                          f"was claimed by another process on this host (the last, {number}, by "
                          f"{self._claims.holder(number) if number is not None else 'a process not known'})")

    def early_sandbox(self, name: str) -> EarlyStart | None:
        """The early start, when the sandbox it made is the one this run would make."""
        early, requested = self._early, self._settings.sandbox
        if early is None:
            return None
        made = Path(early.sandbox)
        if requested is not None:
            same = made == Path(requested).resolve()
        else:
            same = made.parent == Path.cwd().resolve() and planfiles.is_sandbox_name(made.name, name)
        if not same:
            self.give_up_early(f"it made sandbox {made}, not the one this run uses")
            return None
        return early

    def give_up_early(self, why: str, then: str = " and the task starts as without it") -> None:
        """`then`: what comes next, said after the kill of its runs ("" as the run ends)."""
        early, self._early = self._early, None
        if early is not None:
            early.abandon()  # first: the line below may fail (no thread for the console)
            log_event(logger, logging.WARNING, "early_start_given_up",
                      reason=f"early start given up: {why}; its runs were killed{then}")
            undefer_stop_signals()  # no runs left: a stop that came meanwhile acts as without it

    def _from_ahead(self) -> bool:
        """Whether the early start still held started a first run's plan, made ahead."""
        return self._early is not None and self._early.planned_ahead

    def _ahead_for(self, inputs: Inputs) -> PlanAhead | None:
        """The planning child the entry point forked, when it plans for `inputs`; cancelled
        (killed and reaped) otherwise."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.inputs != inputs:
            differ = [name for name, had, has in zip(INPUT_NAMES, ahead.inputs, inputs) if had != has]
            log_event(logger, logging.DEBUG, "plan_ahead_unused",  # never the values: --bind's
                      reason=f"it planned for other inputs ({', '.join(differ)}); planning afresh")
            ahead.cancel()
            return None
        return ahead

    def _first_wave(self, plan: JobPlan) -> list[str] | None:
        """The processes the planner starts first (run 0 of each), for the early start of
        the next run; None when that run could not start them early: another job key or
        instance, --bind or --port, or `plancache.first_wave`'s reasons."""
        s = self._settings
        if s.jobkey is not None or s.instance != 0 or s.bindings or s.ports:
            return None
        return plancache.first_wave(plan)

    def _early_lease(self, directory: str, key: tuple[object, ...]) -> plancache.Lease | None:
        """The lease the early start took, when it is this plan's."""
        early = self._early
        if early is None:
            return None
        if early.entry != plancache.entry_stem(directory, key):
            self.give_up_early("it took another plan's lease")
            return None
        return plancache.Lease(early.take_lease())


def _say_unkept(why: str) -> None:
    """The one line saying this run keeps no plan, and why: it plans each time, slower, with
    no other sign."""
    log_event(logger, logging.WARNING, "plan_not_kept", reason=why,
              consequence="each run plans the job again (STOKER_PLAN_CACHE names a place)")


def hold_sandbox(sandbox: Path, registry: RegistrySettings | None, held_lock: int | None,
                 on_kill: KillHook) -> HostSession:
    """The sandbox for this run (registered in `registry`, by default the one the
    environment names): refused when another live supervisor holds it. `held_lock`: its lock,
    taken already by the early start; `on_kill`: an operator's `stoker kill` from the first
    moment its control socket serves."""
    try:
        return HostSession.open(sandbox, registry, FrontEnd.RUN, held_lock=held_lock, on_operator_kill=on_kill)
    except SandboxBusy as exc:
        raise SandboxError(str(exc)) from None
    except OSError as exc:
        raise SandboxError(sandbox_unusable(sandbox, exc)) from None


@attrs.frozen(slots=True, kw_only=True)
class Prepared:
    """What every attempt of one `stoker run` shares."""

    plan: JobPlan  # each attempt's spec is the plan's with a task id of its own
    host: str
    sandbox: Path
    env: dict[str, str]
    session: HostSession


def announcement_for(spec: JobSpec, settings: RunSettings, host: str) -> Announcement | None:
    """--announce: in ZooKeeper once RUNNING, as this host (README "Service discovery");
    the ServerSet's modules are loaded only for a job that announces there."""
    if spec.announce is None or settings.announce is None:
        return None
    from executor.task.serverset import AnnounceError, plan_announcement

    try:
        announcement = plan_announcement(spec, spec.announce, settings.announcer, host)
        if announcement is not None:
            load_announcer()
    except AnnounceError as exc:
        raise ConfigError(f"{quoted(settings.config)}: job {spec.key}: {exc}") from None
    return announcement


def forget_listings(own: tuple[str, ...] = ("executor", "config", "healthcheck")) -> None:
    """Drop the import system's finders of the directories it looked in, with the listing
    of every name there each keeps (600-odd at a start: the standard library's,
    site-packages', lib-dynload's, `encodings`'), but those of the packages of `own` (200-odd
    names): a running supervisor's late imports are its own modules (the held list's writer
    at its first step, a restart's), and a finder dropped is made again, with a listing of
    its directory, by the next import that looks there. An entry Python found no directory
    at (its None: a PYTHONPATH directory not made yet) stays: it is searched no more, as
    before (dropped, a directory made there later was searched by a late import ahead of the
    standard library's: a `wave.py` put there stood in for the standard library's). Another
    thread may import meanwhile (the keys are copied in one step). Those kept are told by
    their place, at or below a package of `own`'s directory (0.015 ms; was: every module's
    `__path__` asked, an AttributeError each, 0.22 ms, 0.5-1 ms cold, at each attempt's
    start before its first process). `executor.codebundle`'s finder and file go too. Asked as the start ends and before
    the runs' own objects are made, which take the memory given back (`stoker run` at
    N=100: USS 10,152 → 10,086 KiB for a new config, 10,106 → 10,050 run again; medians of 8
    interleaved pairs, lower in 8 of 8 each)."""
    codebundle = sys.modules.get("executor.codebundle")  # not imported here: loaded only where the entry point installed it
    if codebundle is not None and (damaged := codebundle.forget()):  # its file's bytes too
        log_event(logger, logging.DEBUG, "code_bundle_damaged", file=damaged,
                  consequence="its modules were loaded each from its own file; "
                              "`python -m executor.codecache run` writes it again")
    tops = tuple(path + os.sep for name in own if (package := sys.modules.get(name)) is not None
                 for path in getattr(package, "__path__", ()))  # each at or below one of them is kept
    for path, finder in list(sys.path_importer_cache.items()):  # list(): one step (another thread may import)
        if finder is not None and not (isinstance(path, str) and (path + os.sep).startswith(tops)):
            sys.path_importer_cache.pop(path, None)
