"""A registry root several hosts share (an ordinary user's default root is under the home:
a home on NFS): each entry says which host wrote it, and another host's entries are never
judged here (their supervisor's pid means nothing on this host: they read LOST or GONE) nor
pruned (a live task's entry older than the retention was deleted). `stoker ps` and the
observer list this host's tasks and say how many of the others' there are; `status` of
another host's task says it runs there; `kill`, `restart` and `tail` refuse it, naming it.

"Another host" is an entry written as that host's Stoker writes it: its machine id and host
name, its boot, a supervisor pid that is not that process here, a sandbox not seen here."""
from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import attrs
import pytest

from config.registry import RegistrySettings
from executor.cli.main import main
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import host_identity, own_identity
from executor.host.registry import Registry, prune_some
from executor.host.registrylookup import find
from executor.host.session import HostSession
from executor.observe.reader import Reader
from tests.integration.test_registry import DAY, age, entry, registry

pytestmark = pytest.mark.timeout(30)

OTHER = ("0ther0machine0id0000000000000001", "other-host")
THIRD = ("7hird0machine0id0000000000000003", "third-host")
_starts = itertools.count(7777, 100)  # each entry its own name (starts a tick apart are one process's)


def other_host_s(task_id: str, host: tuple[str, str] = OTHER, *, days_ago: float = 8.0,
                 ended: bool = False) -> RegistryEntry:
    """An entry as another host's Stoker writes it in the shared root: a supervisor that runs
    there (its pid, here, is this process's with another start: none here), registered
    `days_ago`, in a sandbox of that host's."""
    me = own_identity()
    then = time.time() - days_ago * DAY
    return RegistryEntry(sandbox=f"/nfs/{host[1]}/sandbox-{task_id}", supervisor_pid=me.pid,
                         supervisor_start=me.start_ticks + next(_starts), supervisor_boot="b00t-of-" + host[1],
                         front_end=FrontEnd.RUN, registered_wall=then, task_id=task_id,
                         ended_wall=then + 1.0 if ended else None, host_id=host[0], host_name=host[1])


def shared_root(tmp_path, *entries: RegistryEntry) -> Registry:
    """A registry root (1 day's retention) holding `entries`, each file as old as its registration."""
    reg = registry(tmp_path / "root", retention=DAY)
    for e in entries:
        assert reg.write(e, prune=False)
        age(tmp_path / "root" / e.name, time.time() - e.registered_wall)
    return reg


def mine(sandbox, task_id: str = "mine-0-1", **kwargs) -> RegistryEntry:
    sandbox.mkdir(exist_ok=True)
    here = host_identity()
    return attrs.evolve(entry(sandbox, task_id=task_id, **kwargs), host_id=here[0], host_name=here[1])


def test_a_supervisor_s_entry_records_the_host_that_wrote_it(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    session = HostSession.open(sandbox, settings, FrontEnd.RUN)
    try:
        (written,) = Registry(settings).read()
    finally:
        session.close()
    assert (written.entry.host_id, written.entry.host_name) == host_identity()
    assert written.entry.host_name == os.uname().nodename
    machine_ids = [Path(p).read_text().strip() for p in ("/etc/machine-id", "/var/lib/dbus/machine-id")
                   if Path(p).is_file()]
    assert written.entry.host_id == next((m for m in machine_ids if m), "")


def test_another_host_s_entries_are_never_pruned_here(tmp_path):
    """Past the retention, by a reading (`stoker ps`) and by a let-go alike: another host's
    live task's entry was deleted, its supervisor's pid judged gone here. This host's own
    entries as old are pruned as before, an older Stoker's (no host) as this host's."""
    mine_gone = mine(tmp_path / "sb", alive=False, ended=time.time() - 3 * DAY, registered=time.time() - 3 * DAY)
    older_stoker_s = attrs.evolve(entry(tmp_path / "sb2", alive=False, ended=time.time() - 3 * DAY,
                                        registered=time.time() - 3 * DAY), host_id="", host_name="")
    live, ended = other_host_s("other-0-1"), other_host_s("other-0-2", ended=True)
    reg = shared_root(tmp_path, mine_gone, older_stoker_s, live, ended)
    root = tmp_path / "root"
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for step in range(8):  # every start point of the let-go's batch
            prune_some(fd, time.time() + step / 1000, reg.retention_secs, lambda e: False)
    finally:
        os.close(fd)
    assert (root / live.name).exists() and (root / ended.name).exists()
    assert not (root / mine_gone.name).exists() and not (root / older_stoker_s.name).exists()
    assert {item.entry.task_id for item in reg.read()} == {"other-0-1", "other-0-2"}
    assert (root / live.name).exists() and (root / ended.name).exists()


def test_two_hosts_supervisors_of_one_pid_and_start_each_keep_their_entry(tmp_path):
    """Identical machines booted alike run their supervisors at the same pid and start tick:
    the entry file named after them (`PID-STARTTICKS.json`) was one for both, the later
    write replacing the other host's entry (its task gone from its `ps`), and this host's
    pruning of its own ended task then deleted the other's live one. The second takes a
    name tagged with its boot; each host's writes after that go to its own file."""
    ours = mine(tmp_path / "sb", task_id="mine-0-1")
    theirs = attrs.evolve(other_host_s("other-0-1"), supervisor_pid=ours.supervisor_pid,
                          supervisor_start=ours.supervisor_start)
    assert theirs.name == ours.name
    reg = shared_root(tmp_path, theirs)
    assert reg.write(ours, prune=False) and reg.write(attrs.evolve(ours, task_id="mine-0-2"), prune=False)
    root = tmp_path / "root"
    assert sorted(os.listdir(root)) == sorted([ours.name, ours.tagged_name])
    assert ours.tagged_name == f"{ours.supervisor_pid}-{ours.supervisor_start}.{ours.supervisor_boot.replace('-', '')[:16]}.json"
    assert {(item.name, item.entry.task_id) for item in reg.read()} == {(ours.name, "other-0-1"),
                                                                       (ours.tagged_name, "mine-0-2")}
    ended = attrs.evolve(ours, task_id="mine-0-2", ended_wall=time.time() - 3 * DAY)
    assert reg.write(ended, prune=False)
    age(root / ours.tagged_name, 3 * DAY)
    gone = Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=DAY), alive=lambda e: False)
    assert [item.entry.task_id for item in gone.read()] == ["other-0-1"]
    assert sorted(os.listdir(root)) == [ours.name]


def test_a_supervisor_s_own_entry_is_rewritten_in_place_and_an_earlier_boot_s_kept_apart(tmp_path):
    """A second Registry of one supervisor finds its entry where the first wrote it (its
    plain name: no tagged copy); an entry of an earlier boot of this host at the same pid
    and start (a LOST task) is neither replaced nor lost."""
    ours = mine(tmp_path / "sb", task_id="mine-0-1")
    reg = shared_root(tmp_path, ours)
    again = registry(tmp_path / "root", retention=DAY)
    assert again.write(attrs.evolve(ours, task_id="mine-0-2"), prune=False)
    root = tmp_path / "root"
    assert os.listdir(root) == [ours.name]
    assert [item.entry.task_id for item in reg.read()] == ["mine-0-2"]
    earlier_boot = attrs.evolve(ours, supervisor_boot="0ld0b00t" + ours.supervisor_boot[8:], task_id="old-0-1")
    (root / ours.name).unlink()
    assert shared_root(tmp_path, earlier_boot).write(attrs.evolve(ours, task_id="mine-0-3"), prune=False)
    assert {(item.name, item.entry.task_id) for item in reg.read()} == {(ours.name, "old-0-1"),
                                                                       (ours.tagged_name, "mine-0-3")}


@pytest.mark.parametrize("errno_name", ["EPERM", "EOPNOTSUPP"])
def test_where_the_root_makes_no_hard_link_entries_are_named_as_before(tmp_path, monkeypatch, errno_name):
    """A file system that makes no hard link (some FUSE and SMB mounts: `link` fails EPERM or
    EOPNOTSUPP; tmpfs makes them, so `os.link` is made to fail as there): the entry is written
    under its name where none is, and beside another host's under its second name, as with links."""
    import errno

    def no_links(*args, **kwargs):
        raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))

    monkeypatch.setattr(os, "link", no_links)
    ours = mine(tmp_path / "sb", task_id="mine-0-1")
    reg = registry(tmp_path / "root", retention=DAY)
    assert reg.write(ours, prune=False) and reg.write(attrs.evolve(ours, task_id="mine-0-2"), prune=False)
    assert [(item.name, item.entry.task_id) for item in reg.read()] == [(ours.name, "mine-0-2")]
    assert registry(tmp_path / "root", retention=DAY).write(attrs.evolve(ours, task_id="mine-0-3"), prune=False)
    assert [(item.name, item.entry.task_id) for item in reg.read()] == [(ours.name, "mine-0-3")]  # its own, in place
    theirs = attrs.evolve(other_host_s("other-0-1"), supervisor_pid=ours.supervisor_pid,
                          supervisor_start=ours.supervisor_start)
    beside = registry(tmp_path / "root2", retention=DAY)
    assert beside.write(theirs, prune=False) and registry(tmp_path / "root2", retention=DAY).write(ours, prune=False)
    assert sorted(os.listdir(tmp_path / "root2")) == sorted([ours.name, ours.tagged_name])


def test_ps_lists_this_host_s_tasks_and_says_in_one_line_how_many_are_other_hosts(tmp_path, capsys):
    shared_root(tmp_path, mine(tmp_path / "sb"), other_host_s("other-0-1"), other_host_s("other-0-2"),
                other_host_s("third-0-1", THIRD, days_ago=0.1))
    root = str(tmp_path / "root")
    assert main(["ps", "--root", root]) == 0
    out, err = capsys.readouterr()
    assert "mine-0-1" in out and "other-0" not in out and "third-0" not in out and "LOST" not in out, out
    said = [line for line in err.splitlines() if "other hosts" in line]
    assert said == [f"stoker ps: 3 tasks of other hosts in the registry {root} are not listed (a root "
                    f"they share: a home on a network file system): other-host (2), third-host (1); "
                    f"each host lists its own"], err
    assert main(["ps", "--all", "--json", "--root", root]) == 0
    out, err = capsys.readouterr()
    assert [row["task_id"] for row in json.loads(out)] == ["mine-0-1"]
    assert [line for line in err.splitlines() if "other hosts" in line] == said


def test_status_of_another_host_s_task_says_it_runs_there_not_lost(tmp_path, capsys):
    shared_root(tmp_path, other_host_s("other-0-1"))
    root = str(tmp_path / "root")
    assert main(["status", "other-0-1", "--root", root]) == 0
    out, err = capsys.readouterr()
    assert out == (f"task 'other-0-1' runs on host 'other-host', not this one: its supervisor (pid "
                   f"{os.getpid()} there) registered it in the registry '{root}', which the two hosts "
                   f"share; `stoker status` on 'other-host' reaches it\n"), out + err
    assert main(["status", "--json", "other-0-1", "--root", root]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["host"], doc["host_id"], doc["ended"]) == ("other-host", OTHER[0], None)
    assert "runs on host 'other-host'" in doc["problem"]


@pytest.mark.parametrize("command", [["kill"], ["restart", "web"], ["tail", "web"]])
def test_kill_restart_and_tail_of_another_host_s_task_are_refused_naming_the_host(tmp_path, capsys, command):
    shared_root(tmp_path, other_host_s("other-0-1"))
    assert main([command[0], "other-0-1", *command[1:], "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert "task 'other-0-1' runs on host 'other-host', not this one" in err, err
    assert f"`stoker {command[0]}` on 'other-host' reaches it" in err


def test_a_task_id_both_hosts_have_is_this_host_s(tmp_path):
    """Another host's newer task of the same id (its own run of the same job) is not the one
    shown, killed or restarted here while this host has one of that id, live or not."""
    ours = mine(tmp_path / "sb", task_id="web-0-1", alive=False, ended=time.time() - 60,
                registered=time.time() - 120)
    reg = shared_root(tmp_path, ours, other_host_s("web-0-1", days_ago=0.0001))
    found = find(reg.read(), "web-0-1")
    assert found is not None and found.entry.name == ours.name


def test_the_observer_lists_this_host_s_tasks_and_says_how_many_are_other_hosts(tmp_path):
    """Its list page (a real server on 127.0.0.1) and its API: this host's task only; the page
    says in one line how many of the registry's are other hosts'. Another host's task's page
    is not found here."""
    import urllib.error
    import urllib.request

    from executor.observe.server import Limits
    from tests.support.observer_server import serving

    shared_root(tmp_path, mine(tmp_path / "sb"), other_host_s("other-0-1"))
    reader = Reader(RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=DAY))
    with serving(reader, Limits(idle_secs=5, loop_secs=1)) as server:
        base = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        with urllib.request.urlopen(f"{base}/", timeout=10) as answer:
            page = answer.read().decode()
        with urllib.request.urlopen(f"{base}/api/tasks", timeout=10) as answer:
            rows = json.loads(answer.read())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/tasks/other-0-1", timeout=10)
        refused.value.close()
    assert [row["task_id"] for row in rows] == ["mine-0-1"]
    assert "mine-0-1" in page and "other-0-1" not in page
    assert f"<p>1 task of other hosts in the registry {tmp_path / 'root'} is not listed" in page, page
    assert "other-host (1)" in page and refused.value.code == 404


def test_another_host_s_run_at_the_same_sandbox_path_does_not_shorten_this_host_s_lost_task_s_stay(tmp_path):
    """A LOST task stays while its checkpoint was written within the retention, up to the
    registration of a later supervisor that took its sandbox. Another host's run at the same
    path (`--sandbox /tmp/work` on each host: two directories) took nothing of this host's,
    but its registration counted: this host's LOST task was pruned at once."""
    from executor.host.sandbox import CHECKPOINT_FILE, STOKER_DIR

    sandbox = tmp_path / "sb"
    lost = mine(sandbox, task_id="mine-0-1", alive=False, registered=time.time() - 3 * DAY)
    theirs = attrs.evolve(other_host_s("other-0-1", days_ago=2.0), sandbox=str(sandbox))
    reg = shared_root(tmp_path, lost, theirs)
    (sandbox / STOKER_DIR).mkdir()
    (sandbox / STOKER_DIR / CHECKPOINT_FILE).write_text("")
    age(sandbox / STOKER_DIR / CHECKPOINT_FILE, 0.5 * DAY)  # its last sign: within the retention
    assert {item.entry.task_id for item in reg.read()} == {"mine-0-1", "other-0-1"}
    assert (tmp_path / "root" / lost.name).exists()


def test_the_host_name_is_read_again_after_the_host_was_renamed(tmp_path):
    """A long-lived reader (`stoker observe`) or supervisor kept the name it read first: after
    `hostnamectl set-hostname`, every entry written under the new name was another host's to
    it. A real process in a UTS namespace of its own, renamed while it runs."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a UTS namespace of the test's own)")
    script = ("import socket\nfrom executor.host.identity import host_identity\n"
              "socket.sethostname('stoker-test-before')\nbefore = host_identity()\n"
              "socket.sethostname('stoker-test-after')\nprint(before[1], host_identity()[1], before[0] == host_identity()[0])\n")
    done = subprocess.run(["unshare", "-u", sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split() == ["stoker-test-before", "stoker-test-after", "True"], done.stderr


@pytest.mark.parametrize("command", [["status"], ["kill"], ["restart", "web"], ["tail", "web"]])
def test_a_sandbox_another_host_s_live_supervisor_holds_is_that_host_s_task(tmp_path, capsys, command):
    """A sandbox on NFS that both hosts see, named by its path: its lock file names another
    host's supervisor (another boot), whose entry is in the shared root. `status` judged it
    from here (no record, or LOST: the lock another host holds is not in this host's
    /proc/locks), `kill` said no live supervisor held it (exit 1). It runs on that host."""
    from executor.host.sandbox import CHECKPOINT_FILE, LOCK_FILE, STOKER_DIR

    sandbox = tmp_path / "nfs-sb"
    theirs = attrs.evolve(other_host_s("other-0-1", days_ago=0.01), sandbox=str(sandbox))
    shared_root(tmp_path, theirs)
    (sandbox / STOKER_DIR).mkdir(parents=True)
    (sandbox / STOKER_DIR / CHECKPOINT_FILE).write_text("")
    (sandbox / STOKER_DIR / LOCK_FILE).write_text(json.dumps(
        {"pid": theirs.supervisor_pid, "start": theirs.supervisor_start, "boot": theirs.supervisor_boot,
         "front_end": "run", "since": theirs.registered_wall}) + "\n")
    code = main([command[0], str(sandbox), *command[1:], "--root", str(tmp_path / "root")])
    out, err = capsys.readouterr()
    assert code == (0 if command == ["status"] else 2), out + err
    assert "runs on host 'other-host', not this one" in out + err, out + err
    assert f"`stoker {command[0]}` on 'other-host' reaches it" in out + err
    if command == ["status"]:  # its task id, not the path it was named by
        assert main(["status", "--json", str(sandbox), "--root", str(tmp_path / "root")]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert (doc["task_id"], doc["host"], doc["sandbox"]) == ("other-0-1", "other-host", str(sandbox))


def test_a_sandbox_another_host_s_supervisor_holds_is_refused_naming_no_pid_here(tmp_path):
    """`stoker run --sandbox` of a directory both hosts see (NFS) that another host's supervisor
    holds (its `flock`, here a real process's; the lock file names its pid on another boot):
    refused as before, but the refusal named that pid as if it ran here and said to stop it
    with `stoker kill SANDBOX` here, which refuses it (another host's) or finds none."""
    import subprocess
    import sys

    from executor.host.lock import SandboxBusy
    from executor.host.sandbox import LOCK_FILE, STOKER_DIR

    sandbox = tmp_path / "nfs-sb"
    (sandbox / STOKER_DIR).mkdir(parents=True, mode=0o700)
    lock = sandbox / STOKER_DIR / LOCK_FILE
    lock.write_text(json.dumps({"pid": 4242, "start": 99, "boot": "b00t-of-other-host", "front_end": "run",
                                "since": time.time() - 60}) + "\n")
    lock.chmod(0o600)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()\n", str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(SandboxBusy) as refused:
            HostSession.open(sandbox, RegistrySettings(registry_root=str(tmp_path / "root")), FrontEnd.RUN)
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
    said = str(refused.value)
    assert "is held by a live stoker run of another host (pid 4242 there, since " in said, said
    assert "stop it on that host" in said and "`stoker kill" not in said.split("stop it on that host")[0], said


def test_a_host_of_this_host_s_name_and_machine_id_on_another_boot_is_another_host(tmp_path, capsys):
    """Containers of two hosts without a machine id, given one host name (`--hostname worker`),
    share a root: an entry of this name registered since this host booted, by a supervisor of
    another boot, is not this host's (it ran none then): its task was listed here as LOST, and
    its entry pruned once older than the retention while it ran there."""
    from executor.host.identity import TWIN_SLACK_SECS, boot_to_wall

    here = host_identity()
    twin = attrs.evolve(other_host_s("twin-0-1", days_ago=0.0), host_id=here[0], host_name=here[1],
                        registered_wall=boot_to_wall(0.0) + TWIN_SLACK_SECS + 1.0)  # since this host booted
    reg = registry(tmp_path / "root", retention=10.0)
    assert reg.write(twin, prune=False)
    age(tmp_path / "root" / twin.name, 60.0)  # older than the retention: LOST here, it went
    assert main(["ps", "--root", str(tmp_path / "root"), "--registry-retention", "10"]) == 0
    out, err = capsys.readouterr()
    assert "twin-0-1" not in out and f"{here[1]} (1)" in err, out + err
    assert [item.entry.task_id for item in reg.read()] == ["twin-0-1"]  # not pruned here
