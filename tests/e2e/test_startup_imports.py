"""What each entry point imports: the start-up budget as module sets (issue 14).

The real `stoker run` and `stoker executor` run under `python -X importtime`, which writes
one line to stderr for every module the process imports, whenever it does: the sets below
are every module each one loaded, from its exec to the moment checked. Module sets, not
times: the same on every machine and under any load (the times are `bench/bench_launch.py`'s).

- `stoker run` of a job without a health check or lifecycle port, up to its process RUNNING
  and through its stop: no HTTP client at all, no ZooKeeper, Thrift or psutil, no package
  metadata, and none of the parts a task loads only when it needs them (health checkers and
  the health policy, shell commands, the log pump, the checkpoint's compaction, the announcer
  and its settings, the Mesos front-end, the inspection commands' target lookup, a config
  error's explanation, shutil); and no more of Stoker's own modules than RUN_STOKER_MODULES.
- The same job with an HTTP check: the checker, the health policy and `http.client` come in
  (so the check above can fail), and still no `requests`: no product code loads an HTTP
  client library. With a rotating logger, the log pump comes in and nothing else.
- `stoker executor`, up to its SUBSCRIBE (what it loads to connect: `http.client`, never
  `requests` or `importlib.metadata`), then running a task without an HTTP check.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from config.document import encode
from config.loader import load_job
from executor.deferred import ATTRS_UNREAD
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.stoker_proc import REPO, kill_leftovers, task_pids
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

NEVER = {  # modules no entry point may load for a task that does not use them
    "requests", "urllib3", "charset_normalizer", "idna", "importlib.metadata", "pkg_resources",
    "kazoo", "thriftpy2", "psutil", "executor.task.announcer", "healthcheck.http_check",
    "executor.task.compaction", "executor.task.checkpointcompact", "executor.task.replay", "executor.task.taskview",
}
NOT_IN_RUN = NEVER | {
    "http.client", "ssl", "email", "executor.mesos", "executor.mesos.transport",
    "healthcheck.checkers", "healthcheck.shell", "healthcheck.loop", "executor.procs.commands",
    # the loopback connect (127.0.0.1, then ::1) of the checks and the lifecycle POSTs
    "healthcheck.loopback",
    "executor.task.lifecycle", "difflib", "executor.cli.inspect", "executor.cli.inspection",
    # announcing's settings and plan, the inspection commands' target lookup, and what
    # argparse's formatter pulled in for the terminal's width
    "config.zookeeper", "executor.task.serverset", "executor.cli.targets",
    "shutil", "zlib", "bz2", "lzma",
    # random names (temporary files, the task marker, the sandbox, task ids) come from
    # os.urandom: uuid would load libuuid for them
    "uuid", "_uuid",
    # the user's login name comes from the environment or pwd (planfiles.login_name);
    # a failed run's `stoker tail` hint quotes with shlex when it is printed
    "getpass", "termios", "shlex",
    # the owner's and the reaper's queues are `_queue.SimpleQueue`s: `queue`'s module (its
    # Queue classes, with `heapq`) is for classes no supervisor makes
    "queue", "heapq",
    # the control socket's server, systemd's notifications and the host's name by `_socket`:
    # `socket`'s module (its class and its enums, with `array`) is the client's (`stoker kill`),
    # and so is the client's own module
    "socket", "array", "executor.host.controlclient",
    # the control socket's loop waits in an epoll of its own, and subprocess's `communicate()`
    # (its one reader of `selectors`) is never called: `selectors` is deferred
    "selectors",
    # runs and the watchdog started by posix_spawn: `subprocess` (and its C module) loads only
    # for a run posix_spawn cannot start (another user, a wrapper, a umask of its own)
    "subprocess", "_posixsubprocess",
    # a control client's credentials are three C ints, read without `struct` (and its C module)
    "struct", "_struct",
    # the next runs' log directories: only once a process has restarted
    "executor.procs.logstage",
    # the disk-limit check: off under `stoker run` unless --disk-limit on (no thread, no timer)
    "executor.task.disklimit", "executor.task.diskwatch", "executor.task.diskusage",
    # a SIGKILL's explanation (a run that ended by a SIGKILL nobody in the task sent)
    "executor.procs.oomkill",
    # the health policy (a task with a health check), the log pump (a rotating logger or one
    # that also writes to the console), a config error's explanation (a config that raised)
    "healthcheck.policy", "executor.procs.logpump", "config.explain",
    # plain words need no argparse (`config/quickargs.py`): the supervisor, which lives as
    # long as its task, never holds it, nor the gettext its parser loads, nor the parser
    "argparse", "gettext", "executor.cli.parser",
}
# How many of Stoker's own modules `stoker run` of that job loads (70 when this was set, 71
# with the signal relay, 73 with the entry point and its attrs code cache): a change that
# puts one more on the start path fails here; lower it when a change takes one off.
# 75: owner.py and supervisor.py were at the 450-line ceiling; the owner's kill handling
# (`executor.task.killing`) and the supervisor's run logs (`executor.procs.runlogs`) became
# modules of their own, which every task loads, as it loaded the code they hold.
# 72: the health policy, the log pump and a config error's explanation load only when needed.
# 75: planning is `config.plan`, and the plan cache (`executor.local.plancache`, which judges a
# config closed with `config.purity`) keeps the plan; a second run of the same config loads
# 64 (no pystachio, no loader, schema, templates or binding).
# 76: the planning child (`executor.local.planning`); these counts are of everything the
# command loads, its planning child included (see the per-process test below).
# 83 and 71: the early start (`executor.cli.launch`, `executor.host.early`,
# `executor.procs.earlyfork`), the supervisor's adoption of its runs (`executor.procs.adoption`)
# and the standard-library-only parts the early start shares with the rest, split out of
# plancache, spawn and watchdog (`executor.local.planfiles`, `executor.procs.runenv`,
# `executor.procs.watchdogsh`).
# 84 and 72: the handle on the child that plans a first run while the rest loads
# (`executor.local.planahead`, standard library only). 85 and 73: the whole-file write the
# registry and the plan cache share (`executor.host.replacefile`). 86 and 74: a run the task
# SIGTERMed whose top exits first, drained within its grace (`executor.procs.draining`).
# 75 for a second run in the same sandbox: it reads the checkpoint an earlier run left, to
# kill what an attempt whose supervisor died left running (`executor.task.leftovers`).
# 88 and 77: run.py was at the 450-line ceiling: what a run starts from (its plan, the early
# start's work: `executor.local.runstart`) and the earlier attempts' logs
# (`executor.local.attempts`) became modules of their own, as loaded as the code they hold.
# 90 and 79: the daemons a run that exited 0 left (`executor.procs.daemons`), kept as the
# task's; containment.py, at the ceiling then, gave the task cgroup's life
# (`executor.procs.cgrouplife`) a module of its own.
# 91 and 80: `log_event` moved to `config.logline`, where the health checker can import it
# too (it needs only logging and json, both loaded already).
# 92 and 81: the owner's pid and exit status of each run, bounded to the runs a record may
# still name (`executor.task.runfacts`: kept for every run, they grew with each restart).
# 93 and 82: a supervisor's plain words are read without argparse (`config.quickargs`; the
# parser, `executor.cli.parser`, loads only for words that are not plain).
# 94 and 83: the orphans and daemons a supervisor hands its watchdog by pid and start time
# (`executor.procs.handover`); the list kept beside the checkpoint (`executor.task.heldfile`)
# loads only with the first process held, or for a re-run's kill of an attempt left LOST.
# 96 and 85: the planner's plans, kept up to date as states change (`executor.task.plans`:
# a decision cost a look at every process), and the descriptor limit raised to what the
# task's logs hold (`executor.procs.fdlimit`).
# 97 and 86: owner.py was at the 450-line ceiling when the disk-limit check came: the task's
# checks, health and disk (`executor.task.checks`), became a module of its own; the disk
# check itself loads only where it is on (never in `stoker run` without --disk-limit on).
# 98 and 87: the task's reservation, and its disk check's last sample, kept beside the
# checkpoint for `stoker status` and the observer (`executor.task.usagefile`: written as the
# task starts; its reader's figures, `executor.task.usagefigures`, load only in a reader).
# 99 and 88: the checkpoint records' field readers (`executor.task.recordfields`, out of
# `records.py`, which was past its size limit; no module loaded on this path reads
# untrusted JSON fields with ranges that could take them).
# 100 and 89: `executor.task.heldfile`, at the end of the task's first step (after its
# processes started): held.json names the task's watchdog by pid for `stoker status` and the
# observer, which told it by its command line, which a task's process could take.
# 101 and 90: `executor.procs.oomkill`, as the supervisor starts: its memory cgroup's OOM
# kill count, read then so that a run's SIGKILL can be told to be the kernel's OOM killer's.
# 102 and 91: `executor.procs.oomcount`, its light part (no `re`, no attrs): the early start
# reads the count before its first fork, so that a run taken before the supervisor starts is.
# 101 and 90: `executor.procs.oomkill` loads only when a run ends by a SIGKILL nobody in the
# task sent (the OOM killer's, maybe); the counter read at start and at each fork, and the
# supervisor's oom_score_adj shield, are `oomcount`'s (plain classes, no attrs).
# 102 and 91: one signal through a pidfd, or by kill() where none can carry it
# (`executor.procs.pidsignal`, out of `proctree.py`, which was past its size limit; loaded
# with it, not on demand: kill() is needed when pidfd_open failed, EMFILE included, and an
# import then could not open its file; the modules loaded already that could hold it were
# at their ceiling, containment and supervisor, or of another subject, the reaper's own
# children and the cgroup).
# 103 and 92: `executor.nodocs`, loaded first by the entry point: every module after it is
# compiled without its docstrings (0.8 MiB less of the supervisor's PSS at N=100).
# 104 and 93: `executor.deferred`, loaded by the entry point before attrs: `inspect` (with
# `ast`, `dis` and `opcode`), `locale`, `tokenize`, `token`, `ipaddress` and `platform` load only when a
# name of them is read, which no supervisor does (1.3 MiB less of its USS at N=100).
# 105 and 94: `executor.attrsmethods`, loaded with the code cache: every attrs class's
# `__repr__`, `__eq__` and `__hash__` of one code for all the classes, not each its own
# (about 0.2 MiB less of the supervisor's USS at N=100, with the warmed file it allows).
# 106 and 94: launch.py was past the 450-line ceiling: a first run's early start (its plan
# made ahead, `executor.cli.launchfirst`) became a module of its own, loaded only when no
# plan is kept (a re-run's early start goes without it).
# 107 and 95: run.py was past the ceiling too: how an attempt ended and what the run says of
# it (`executor.local.ended`) became a module of its own, loaded as the code it holds was.
# 108 and 96: `executor.compileserved`, loaded with the code cache: attrs' own classes and
# typing's annotations compiled as attrs loads served from its file, so that no supervisor
# calls the builtin `compile()`, whose first call makes the compiler's 119 syntax-tree
# classes (0.2 MiB less of its USS at N=100).
# 109 and 97: the plan's plain form (`executor.local.planform`, out of plancache), so that a
# first run's planning child, forked before the plan cache loads, never loads `logging`,
# `traceback` or the run's settings: they load in the supervisor after the fork, beside its
# planning, not before it.
# 110: the schema's `Struct` (`config.schema.shared`, in the planning child only): each type
# the schema's structs name made once, not again in each struct that names it.
# 111: the warning filters a config's load changes (`config.warnfilters`, in the planning
# child only), changed only where no other thread meets them; out of loader.py, at the ceiling.
# 112 and 98: settings.py was past the ceiling: how a settings class is read (`setting`,
# `Sourced`: `config.sourced`) became a module of its own, loaded as the code it holds was.
# 113 and 99: a walk of the task's subtree reads the orphans' list again after it
# (`executor.procs.orphanwalk`): a process that exited mid-walk left its children there,
# unwalked (a hopper a run that exited 0 left was killed; containment.py at the ceiling).
# 114 and 100: the time this process must be gone by (`executor.procs.exitby`): the close's
# steps and its wait for the watchdog end by it under `stoker executor` after SHUTDOWN (the
# agent's shutdown grace); `stoker run` has none, but its close is the same code.
# 115 and 100: the finder that serves the modules after the early start from one file
# (`executor.codebundle`: about 4.7 ms less CPU of `stoker run`'s imports, docs/benchmarks.md, bundle).
# 116 and 101: logs.py was at the ceiling: `stoker run`'s spool (`executor.spool`) became a
# module of its own, loaded by `stoker run` alone (from its bundle); the other commands never
# made one and do not load it.
# 117 and 102: codecache.py was at the ceiling too: the attrs steps it serves besides the
# compile step (`executor.attrssteps`) became a module of its own, loaded with it by every command.
RUN_STOKER_MODULES = 117
# 99 (a re-run): the job's `announce` class out of the spec's and the plan form's imports,
# `--announce`'s parser loaded with the flag (`config.announcer`, importcut); 100: `executor.codebundle`.
RUN_AGAIN_STOKER_MODULES = 102
# Loaded only by a process that compiled something its code caches lack: as it ends
# (`codecache.save()`), or as a module's docstring-free file is written (`nodocs`): whether
# it did depends on what ran before (a source newer than its file), not on the job.
SAVE_ONLY = {"executor.codecachewrite", "executor.host.turnlock", "executor.nodoccode"}
NOT_IN_EXECUTOR = NEVER | {"executor.local", "executor.local.run", "healthcheck.checkers", "healthcheck.loopback",
                           "executor.procs.commands", "config.zookeeper", "executor.task.serverset",
                           "shutil", "bz2", "lzma", "healthcheck.policy", "executor.procs.logpump",
                           "config.explain", "argparse", "gettext", "executor.cli.parser",
                           "executor.procs.oomkill", "executor.host.controlclient",
                           # http.client is loaded without its HTTPS half: TLS to the agent only
                           # when libprocess SSL is on (`-X importtime` names `ssl` for the refused
                           # attempt, not `_ssl`)
                           "_ssl", "executor.mesos.agenttls",
                           # the uuid of an update made from os.urandom (`session.random_uuid`); the
                           # agent's address given to getaddrinfo as bytes, not through the idna codec
                           "uuid", "_uuid", "encodings.idna", "stringprep"}

SLEEPER = """
    jobs = [Job(cluster='local', role='me', environment='test', name='imports',
                task=Task(processes=[Process(name='sleeper', cmdline='sleep 1000'{logger})],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB), finalization_wait=1)
                {extra})]
"""
ROTATING = ", logger=Logger(mode='rotate', rotate=RotatePolicy(log_size=1*MB, backups=2))"
HTTP_CHECK = (", health_check_config=HealthCheckConfig(initial_interval_secs=60, interval_secs=30)\n"
              "                ,announce=Announcer(portmap={'health': 'http'})")


def imported(stderr: str) -> set[str]:
    """The modules named by `-X importtime` lines."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def run_job(tmp_path: Path, text: str, flags: tuple[str, ...] = (), env: dict[str, str] | None = None) -> int:
    """`stoker run` of the one-process job `text`, from exec until its process is RUNNING,
    then stopped; its stderr is left in tmp_path/stderr (and as it was once the RUNNING line
    was read, in tmp_path/stderr.running). Returns the supervisor's pid."""
    config = tmp_path / "job.aurora"
    config.write_text(text)
    sandbox = tmp_path / "sandbox"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sys.executable, *flags, "-m", "executor", "run", str(config), "--sandbox", str(sandbox)],
            cwd=tmp_path, stdout=o, stderr=e, stdin=subprocess.DEVNULL, start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
                 "STOKER_ROOT": str(tmp_path / "registry"), **(env or {})})
    try:
        wait_for(lambda: "sleeper[0]" in out.read_text() and "RUNNING" in out.read_text()
                 or proc.poll() is not None, 60, message="the process RUNNING")
        assert proc.poll() is None, err.read_text()[-3000:]
        (tmp_path / "stderr.running").write_text(err.read_text())  # what was loaded by the first report
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        kill_leftovers(task_pids(sandbox))
    return proc.pid


def run_imports(tmp_path: Path, extra: str = "", cmdline: str = "sleep 1000", logger: str = "") -> set[str]:
    """Every module `stoker run` loads for a one-process job, from exec to its stop."""
    text = textwrap.dedent(SLEEPER.format(extra=extra, logger=logger)).replace("sleep 1000", cmdline)
    run_job(tmp_path, text, ("-X", "importtime"))
    return imported((tmp_path / "stderr").read_text())


def test_stoker_run_without_health_check_loads_only_what_the_job_needs(tmp_path):
    mods = run_imports(tmp_path)
    assert {"executor.local.run", "executor.procs.supervisor", "pystachio"} <= mods  # it sees imports
    assert sorted(mods & NOT_IN_RUN) == []
    own = sorted(m for m in mods - SAVE_ONLY if m.split(".")[0] in ("executor", "config", "healthcheck"))
    assert len(own) <= RUN_STOKER_MODULES, own


# Loaded after a re-run's first RUNNING line, if at all (importcut): the job's `announce`
# class and `--announce`'s parser (`config.announcer`: a plan that holds one decodes it, the
# flag parses with it), a killed run's words (`healthcheck.base.signal_name`, as one ends),
# the kill's machine (`executor.task.kill`, with the task's first kill request).
AFTER_FIRST_REPORT = {"config.announcer", "healthcheck", "healthcheck.base", "executor.task.kill"}
# What the plan cache spares a second run of an unchanged config (executor/local/plancache.py).
PLANNING = {"pystachio", "config.loader", "config.bind", "config.schema", "config.templates",
            "config.portmap", "config.purity"}
# What `inspect` loads as it runs: the supervisor imports it (attrs does) but never reads a
# name of it, so it never runs (`executor/deferred.py`).
UNREAD = {"ast", "dis", "opcode", "_opcode"}


def test_a_second_stoker_run_of_the_same_config_loads_no_pystachio(tmp_path):
    first = run_imports(tmp_path)
    assert PLANNING <= first  # planned: loaded, checked, bound, judged closed
    again = run_imports(tmp_path)  # the same file and HOME: its plan is kept there
    assert sorted(again & PLANNING) == []
    assert sorted(again & UNREAD) == []  # attrs imports inspect, never reads it (executor/deferred.py)
    assert "ipaddress" not in again  # pathlib's urllib.parse imports it, deferred before pathlib loads
    assert "platform" not in again  # attrs asks it python_implementation(), served (executor/deferred.py)
    assert sorted(again & set(ATTRS_UNREAD)) == []  # attrs' validators and converters: imported, never read
    assert "executor.local.plancache" in again and "executor.procs.supervisor" in again
    at_report = imported((tmp_path / "stderr.running").read_text())
    assert "executor.task.owner" in at_report  # (read once the supervisor had reported)
    assert sorted(at_report & AFTER_FIRST_REPORT) == []
    own = [m for m in again - SAVE_ONLY if m.split(".")[0] in ("executor", "config", "healthcheck")]
    assert len(own) <= RUN_AGAIN_STOKER_MODULES, sorted(own)


RECORDER = """
import os, sys

class Recorder:  # every module's first import, with the pid of the process that made it
    def find_spec(self, name, path=None, target=None):
        with open(os.environ["IMPORT_LOG"], "a") as log:
            log.write(f"{os.getpid()} {name}\\n")

sys.meta_path.insert(0, Recorder())

def _forks(event, args):  # where, among a process's imports, it forked
    if event == "os.fork":
        with open(os.environ["IMPORT_LOG"], "a") as log:
            log.write(f"{os.getpid()} (fork)\\n")

sys.addaudithook(_forks)
"""


# What the supervisor and a first run's planning child both use, loaded before the fork.
# Not `inspect` and `ast`: deferred (executor/deferred.py), the supervisor never loads them;
# nor does the child: not `ast` (config.purity walks the compiler's `_ast` trees itself), nor
# `inspect`: the one name pystachio reads of it (`isclass`), as of `pprint` (`pformat`), is
# served without it.
LOADED_BEFORE_THE_PLANNING_FORK = {"attr", "attrs", "typing", "pathlib", "executor.codecache", "config.errors",
                                   "config.plan", "config.spec", "executor.local.planform",
                                   "executor.local.planning"}
# What the supervisor loads after that fork, beside the child's planning, and the child never
# (executor/local/planform.py: the plan's plain form without the plan cache's `logging`)
SUPERVISOR_ONLY = {"logging", "traceback", "config.settings", "config.sourced", "executor.local.plancache"}
# `json`'s: the supervisor loads it after the fork (`executor.cli.main`); the child defers it
# (`launchfirst._fork_ahead`: pystachio imports it for methods no plan calls), so its code never runs
JSON_RUN = {"json.decoder", "json.encoder", "json.scanner", "_json"}
# A job's `announce` class and the order graph's problems: loaded for a job that has one
# (`config.bind._announcer_spec`, `config.order.order_graph`), by neither process for the sleeper
FOR_SOME_JOBS = {"config.announcer", "config.orderproblems"}


def test_the_supervisor_never_loads_the_config_language_its_planning_child_does(tmp_path):
    (tmp_path / "recorder").mkdir()
    (tmp_path / "recorder" / "sitecustomize.py").write_text(RECORDER)
    log = tmp_path / "imports.log"
    supervisor_pid = run_job(tmp_path, textwrap.dedent(SLEEPER.format(extra="", logger="")),
                             env={"PYTHONPATH": f"{tmp_path / 'recorder'}:{REPO}", "IMPORT_LOG": str(log)})
    by_pid: dict[int, set[str]] = {}
    before_fork: set[str] = set()  # the supervisor's imports before its first fork
    for line in log.read_text().splitlines():
        pid, name = line.split()
        if int(pid) == supervisor_pid and name == "(fork)" and "(fork)" not in by_pid.get(supervisor_pid, ()):
            before_fork = set(by_pid.get(supervisor_pid, ()))
        by_pid.setdefault(int(pid), set()).add(name)
    supervisor = by_pid.pop(supervisor_pid) - {"(fork)"}
    assert "executor.procs.supervisor" in supervisor
    assert sorted(supervisor & PLANNING) == []
    assert sorted(supervisor & UNREAD) == []
    assert [sorted(PLANNING - mods) for mods in by_pid.values()] == [[]]  # one child planned
    # nor does the child run `inspect` (`dis`, `opcode`) or `pprint` (`dataclasses`): 3-9 ms
    # on a first run's path (executor/deferred.py, SERVED), nor load `ast` (config.purity)
    assert [sorted(mods & {"ast", "dis", "opcode", "dataclasses"}) for mods in by_pid.values()] == [[]]
    # forked once attrs and the rest both processes use were loaded: it has them from the
    # fork (executor/local/planahead.py), it does not import them again
    assert [sorted(mods & LOADED_BEFORE_THE_PLANNING_FORK) for mods in by_pid.values()] == [[]]
    assert [sorted(mods & SUPERVISOR_ONLY) for mods in by_pid.values()] == [[]]
    assert sorted(before_fork & ({"json"} | JSON_RUN)) == [] and JSON_RUN <= supervisor
    assert [sorted(mods & JSON_RUN) for mods in by_pid.values()] == [[]]
    assert [sorted(mods & FOR_SOME_JOBS) for mods in [supervisor, *by_pid.values()]] == [[], []]


def test_stoker_run_with_an_http_check_loads_the_checker_and_http_client_only(tmp_path):
    mods = run_imports(tmp_path, HTTP_CHECK, cmdline="sleep 1000 {{thermos.ports[http]}}")
    assert {"healthcheck.http_check", "healthcheck.loopback", "healthcheck.policy", "http.client"} <= mods
    assert "_ssl" not in mods  # http.client came without its HTTPS half (healthcheck/plainhttp.py)
    assert sorted(mods & (NEVER - {"healthcheck.http_check"})) == []
    assert "executor.mesos" not in mods


def test_stoker_run_with_a_rotating_logger_loads_the_log_pump(tmp_path):
    mods = run_imports(tmp_path, logger=ROTATING)
    assert "executor.procs.logpump" in mods
    assert sorted(mods & (NOT_IN_RUN - {"executor.procs.logpump"})) == []


def _executor_imports(tmp_path: Path, env: dict[str, str | None] | None = None,
                      **agent: Any) -> tuple[set[str], set[str]]:
    """The modules `stoker executor` loaded by its SUBSCRIBE, and by its task RUNNING."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    job = tmp_path / "job.aurora"
    job.write_text(textwrap.dedent(SLEEPER.format(extra="", logger="")))
    sim = AgentSimulator(sandbox=sandbox, **agent)
    try:
        sim.launch_executor([sys.executable, "-X", "importtime", "-m", "executor", "executor"],
                            cwd=sandbox, env_overrides={"PYTHONPATH": str(REPO), **(env or {})})
        sim.wait_subscribed(timeout_secs=30)
        subscribed = imported(sim.executor_log())
        sim.launch(make_task_info("task-1", encode(load_job(job))))
        sim.wait_for_state("task-1", "TASK_RUNNING", 30)
        running = imported(sim.executor_log())
    finally:
        sim.close()
        kill_leftovers(task_pids(sandbox))
    return subscribed, running


def test_stoker_executor_connects_and_runs_a_task_without_requests(tmp_path):
    subscribed, running = _executor_imports(tmp_path)
    assert {"executor.mesos.transport", "http.client"} <= subscribed  # it sees imports
    assert sorted(subscribed & NOT_IN_EXECUTOR) == []
    assert "executor.task.owner" in running
    assert sorted(running & NOT_IN_EXECUTOR) == []


def test_stoker_executor_loads_ssl_only_when_libprocess_ssl_is_on(tmp_path):
    from tests.support.agent_tls import agent_context, client_env

    subscribed, running = _executor_imports(tmp_path, client_env(), tls=agent_context())
    assert {"executor.mesos.agenttls", "_ssl"} <= subscribed
    # (ssl encodes the agent's name for the handshake with the idna codec)
    assert sorted(running & NOT_IN_EXECUTOR) == ["_ssl", "encodings.idna", "executor.mesos.agenttls", "stringprep"]
