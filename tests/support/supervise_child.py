#!/usr/bin/env python3
"""supervise_child: a Supervisor in its own process, for the kill -9 test.

Usage: `python tests/support/supervise_child.py SANDBOX [USER] [--cgroups SETTING] [--escaped]
[--undumpable]`

Starts a Supervisor for SANDBOX (`--cgroups`: its STOKER_CGROUPS setting, default auto) and
spawns three runs with fake_task.py: a plain sleeper, a tree (top plus two children in its
group, all ignoring SIGTERM) and a daemonizing one (its setsid grandchild ignores SIGTERM and
is re-parented). With USER (the supervisor runs as root), the runs start as that user and
are shell-only, the same three shapes (USER may not be able to reach this Python). With
`--escaped` (not with USER), three more whose tops stay alive: two whose daemon left both
its group and its marker (`setsid env -i sleep`), one still the child of its run's top
(`attached.pids`), one re-parented to the supervisor (`escaped.pids`), and one that starts a
fork-hopper (`hop.pid`; it stops once `hop.stop`
exists). With `--undumpable` (not with USER), one more whose daemon, re-parented to the
supervisor, made itself not dumpable (`undumpable.pids`). Once every pid is known it calls
`idle()`, as the owner does after each step (the supervisor hands the orphans it has to the
watchdog), and prints one JSON line `{"pids": [...], "watchdog": PID,
"supervisor": PID, "cgroup": DIR or null}` (pids: the top processes, the tree's children and
the daemons) to stdout and then blocks forever, so the test can SIGKILL it and check, by pid,
that the watchdog leaves nothing.
Exits 2 with a message on stderr when the setup does not finish within 10 s.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from config.spec import ProcessSpec  # noqa: E402
from executor.procs.identity import user_named  # noqa: E402
from executor.procs.supervisor import Supervisor  # noqa: E402
from tests.support.shellwords import fake_sh, sh  # noqa: E402


def wait_reparented(pids: list[int], deadline: float) -> None:
    while time.monotonic() < deadline:
        stats = [Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split() for pid in pids]
        if all(int(fields[1]) == os.getpid() for fields in stats):
            return
        time.sleep(0.005)
    print(f"supervise_child: {pids} not re-parented to the supervisor within 10 s", file=sys.stderr)
    sys.exit(2)


def wait_for_file(path: Path, deadline: float) -> list[int]:
    while time.monotonic() < deadline:
        if path.exists():
            return [int(x) for x in path.read_text().split()]
        time.sleep(0.005)
    print(f"supervise_child: {path} did not appear within 10 s", file=sys.stderr)
    sys.exit(2)


# The same shapes in sh, for a user that cannot run this Python. Each pid file is written
# beside and renamed into place, as fake_task.py does: read between the redirection's
# truncation and the echo, a file named too few pids (seen once under load).
SHELL_RUNS = {
    "sleeper": "echo $$ > {sleeper}.tmp; mv {sleeper}.tmp {sleeper}; exec sleep 600",
    "tree": "trap '' TERM; sleep 600 & a=$!; sleep 600 & echo $a $! > {kids}.tmp; mv {kids}.tmp {kids}; "
            "echo $$ > {tree}.tmp; mv {tree}.tmp {tree}; wait",
    "daemon": "setsid sh -c 'trap \"\" TERM; echo $$ > {daemon}.tmp; mv {daemon}.tmp {daemon}; "
              "exec sleep 600' & sleep 600",
}


def main() -> None:
    sandbox = Path(sys.argv[1])
    setting = sys.argv[sys.argv.index("--cgroups") + 1] if "--cgroups" in sys.argv else "auto"
    escaped = "--escaped" in sys.argv
    undumpable = "--undumpable" in sys.argv
    sandbox.mkdir(parents=True, exist_ok=True)
    args = [a for i, a in enumerate(sys.argv) if not a.startswith("--")
            and not (i > 0 and sys.argv[i - 1] == "--cgroups")]
    run_as = user_named(args[2]) if len(args) > 2 else None
    sup = Supervisor(sandbox=sandbox, task_label="killme.0", env={"PATH": os.environ["PATH"]},
                     post=lambda event: None, run_as=run_as, cgroups=setting)
    sup.start()
    names = (("sleeper", "tree", "kids", "daemon") + (("attached", "escaped") if escaped else ())
             + (("undumpable",) if undumpable else ()))
    files = {name: sandbox / f"{name}.pids" for name in names}
    if run_as is not None:
        os.chown(sandbox, run_as.uid, run_as.gid)
        tops = [sup.spawn(ProcessSpec(name, cmd.format(**files)), 0) for name, cmd in SHELL_RUNS.items()]
    else:
        tops = fake_runs(sup, files)
    if escaped:
        tops.append(sup.spawn(ProcessSpec("attached", f"setsid env -i sleep 1000 & echo $! > "
                                                      f"{sh(files['attached'])}; wait"), 0))
        tops.append(sup.spawn(ProcessSpec("escaped", f"(setsid env -i sleep 1000 & echo $! > "
                                                     f"{sh(files['escaped'])}); "
                                                     f"exec sleep 1000"), 0))
        tops.append(sup.spawn(ProcessSpec("hopper", fake_sh(
            "--fork-hop", "60", "--hop-pid-file", str(sandbox / "hop.pid"),
            "--hop-stop-file", str(sandbox / "hop.stop"))), 0))
    if undumpable:
        tops.append(sup.spawn(ProcessSpec("undumpable", fake_sh(
            "--daemonize-child", "--daemon-undumpable", "--daemon-pid-file", str(files["undumpable"]))), 0))
    deadline = time.monotonic() + 10
    pids = set(tops)
    for path in files.values():
        pids.update(wait_for_file(path, deadline))
    if escaped:
        wait_for_file(sandbox / "hop.pid", deadline)  # hopping: its pids are not kept
    pids = sorted(pids)
    for name in ("escaped", "undumpable"):  # re-parented here by now, or idle() would miss them
        if name in files:
            wait_reparented(wait_for_file(files[name], deadline), deadline)
    sup.idle()
    print(json.dumps({"pids": pids, "watchdog": sup.watchdog_pid, "supervisor": os.getpid(),
                      "cgroup": sup.cgroup}), flush=True)
    threading.Event().wait()


def fake_runs(sup: Supervisor, files: dict[str, Path]) -> list[int]:
    return [
        sup.spawn(ProcessSpec("sleeper", fake_sh("--pid-file", str(files["sleeper"]))), 0),
        sup.spawn(ProcessSpec("tree", fake_sh("--ignore-sigterm", "--pid-file", str(files["tree"]),
                                           "--children", "2", "--children-pid-file",
                                           str(files["kids"]))), 0),
        sup.spawn(ProcessSpec("daemon", fake_sh("--daemonize-child", "--daemon-ignore-sigterm",
                                             "--daemon-pid-file", str(files["daemon"]))), 0),
    ]


if __name__ == "__main__":
    main()
