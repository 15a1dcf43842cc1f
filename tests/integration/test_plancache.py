"""`executor/local/plancache.py` with real files, directories and sockets: a kept plan is
served only while everything it came from is unchanged, and a cache that is damaged,
foreign or in the way is never an error."""
from __future__ import annotations

import marshal
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from executor.local import plancache
from executor.local.planfiles import ports_free
from tests.support.plancache_rig import JOB, entries, look, planned, settings
from tests.support.stoker_proc import REPO
from tests.support.users import STRANGER, needs_root


def test_a_kept_plan_is_served_whole(job, plan_dir):
    plan, key = planned(job, plan_dir)
    assert look(plan_dir, key) == plan
    assert plan.spec.task.processes[0].cmdline == f"serve {plan.ports['http']} one"
    assert [os.stat(os.path.join(plan_dir, e)).st_mode & 0o777 for e in entries(plan_dir)] == [0o600]
    assert os.stat(plan_dir).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("edit", ["job", "include"])
def test_an_edited_file_is_planned_afresh(job, plan_dir, edit):
    _, key = planned(job, plan_dir)
    target = job if edit == "job" else job.with_name("lib.aurora")
    target.write_text(target.read_text().replace("one", "two").replace("serve", "serve2"))
    assert look(plan_dir, key) is None


@pytest.mark.parametrize("change", [{"instance": 1}, {"bindings": (("x", "y"),)}, {"ports": {"http": 8080}}])
def test_other_arguments_are_another_plan(job, plan_dir, change):
    planned(job, plan_dir)
    other = plancache.plan_key(settings(job, **change), "host", "me")
    assert look(plan_dir, other) is None


def test_another_host_or_user_is_another_plan(job, plan_dir):
    planned(job, plan_dir)
    for host, user in (("elsewhere", "me"), ("host", "you")):
        assert look(plan_dir, plancache.plan_key(settings(job), host, user)) is None


def test_a_port_taken_since_is_planned_afresh(job, plan_dir):
    plan, key = planned(job, plan_dir)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", plan.ports["http"]))
        taken.listen()
        assert look(plan_dir, key) is None
    assert look(plan_dir, key) == plan


def test_a_port_whose_last_connections_wait_out_time_wait_is_still_free(job, plan_dir):
    # A service stopped a moment ago closed its connections first: they linger in TIME_WAIT
    # on its port, where a server (which binds with SO_REUSEADDR) can listen again at once.
    plan, key = planned(job, plan_dir)
    number = plan.ports["http"]
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", number))
        server.listen()
        with socket.create_connection(("127.0.0.1", number)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server's side closes first: it is the one in TIME_WAIT
            client.recv(1)
    with socket.socket() as plain:  # without SO_REUSEADDR the port looks taken...
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", number))
    assert look(plan_dir, key) == plan  # ...but a server may listen there: the plan is served
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", number))
        again.listen()
        assert look(plan_dir, key) is None  # a listener there now: planned afresh


def test_a_port_given_with_port_is_not_probed(job, plan_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        plan, key = planned(job, plan_dir, ports={"http": number})
        assert plan.allocated == () and look(plan_dir, key) == plan


def test_a_config_that_reads_the_world_is_not_kept(job, plan_dir):
    job.write_text("import os\n" + JOB.replace("' + WORD", "' + os.environ.get('W', WORD)"))
    planned(job, plan_dir)
    assert entries(plan_dir) == []


def test_a_json_job_is_kept(tmp_path, plan_dir):
    config = tmp_path / "job.json"  # data: nothing in it can read the world (true/false too)
    config.write_text('{"jobs": [{"cluster": "c", "role": "r", "environment": "e", "name": "j", '
                      '"service": false, "task": {"name": "t", "processes": [{"name": "p", '
                      '"cmdline": "x {{thermos.task_id}}"}], "resources": {"cpu": 1, "ram": 1048576, '
                      '"disk": 1048576}}}]}')
    plan, key = planned(config, plan_dir)
    assert len(entries(plan_dir)) == 1 and look(plan_dir, key) == plan


@pytest.mark.parametrize("damage", [b"", b"garbage", marshal.dumps(("key",)),
                                    marshal.dumps((None, (), ("a", "os", {})))])
def test_a_damaged_entry_is_a_miss_and_is_rewritten(job, plan_dir, damage):
    plan, key = planned(job, plan_dir)
    [name] = entries(plan_dir)
    Path(plan_dir, name).write_bytes(damage)
    assert look(plan_dir, key) is None
    plan, key = planned(job, plan_dir)
    assert look(plan_dir, key) == plan


def test_an_entry_naming_a_class_it_may_not_build_is_a_miss(job, plan_dir):
    plan, key = planned(job, plan_dir)
    [name] = entries(plan_dir)
    key_, sources, _ = marshal.loads(Path(plan_dir, name).read_bytes())
    Path(plan_dir, name).write_bytes(marshal.dumps((key_, sources, marshal.dumps(("a", "RunSettings", {"config": "x"})))))
    assert look(plan_dir, key) is None


def test_files_others_can_write_are_ignored(job, plan_dir):
    plan, key = planned(job, plan_dir)
    [name] = entries(plan_dir)
    os.chmod(Path(plan_dir, name), 0o622)
    assert look(plan_dir, key) is None
    os.chmod(Path(plan_dir, name), 0o600)
    os.chmod(plan_dir, 0o777)
    assert look(plan_dir, key) is None
    planned(job, plan_dir)  # nor is one written there
    assert os.stat(Path(plan_dir, name)).st_mode & 0o777 == 0o600


def test_a_fifo_in_its_place_does_not_block(job, plan_dir):
    plan, key = planned(job, plan_dir)
    [name] = entries(plan_dir)
    os.unlink(Path(plan_dir, name))
    os.mkfifo(Path(plan_dir, name))
    assert look(plan_dir, key) is None


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("replace", [_fifo, lambda path: path.write_bytes(b"WORD = '\xff'\n")],
                         ids=["fifo", "not-utf-8"])
def test_an_included_file_now_a_fifo_or_not_utf_8_is_a_miss_without_blocking(job, plan_dir, replace):
    """The kept plan's sources are read again as the loader reads them: a FIFO in the place
    of one is never opened for a blocking read, bytes that are no UTF-8 are no match."""
    plan, key = planned(job, plan_dir)
    replace(job.parent / "lib.aurora")
    assert look(plan_dir, key) is None


def test_an_unwritable_place_is_no_error(job, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    plan, key = planned(job, str(blocker / "cache"))  # a directory under a file
    assert look(str(blocker / "cache"), key) is None


def test_a_run_holding_the_lease_keeps_the_plan_from_a_second_one(job, plan_dir):
    plan, key = planned(job, plan_dir)
    first = plancache.lease(plan_dir, key)  # a run of the config, still up
    try:
        second = plancache.lease(plan_dir, key)
        assert first.held and not second.held
        assert plancache.lookup(plan_dir, key, ports_free, second) is None  # plans afresh...
        other, _ = planned(job, str(Path(plan_dir).with_name("elsewhere")))
        plancache.store(plan_dir, key, {str(job): JOB}, other, second, None)
        assert plancache.lookup(plan_dir, key, ports_free, first) == plan  # ...and keeps nothing
    finally:
        first.close()
    assert look(plan_dir, key) == plan


def test_the_lease_ends_with_the_run_however_it_ends(job, plan_dir):
    _, key = planned(job, plan_dir)
    code = ("import os, sys\nfrom executor.local import plancache\n"
            f"held = plancache.lease({plan_dir!r}, {key!r})\n"
            "print(held.held, flush=True)\nos.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=str(REPO))
    assert (done.stdout, done.returncode) == ("True\n", -9)
    assert look(plan_dir, key) is not None


def test_at_most_keep_entries_stay_and_their_locks_go_with_them(tmp_path, plan_dir):
    (tmp_path / "lib.aurora").write_text("WORD = 'one'\n")
    first = None
    for i in range(plancache.KEEP + 3):
        config = tmp_path / f"job{i}.aurora"
        config.write_text(JOB)
        _, key = planned(config, plan_dir)
        if i == 0:
            first = plancache.lease(plan_dir, key)  # the oldest entry's run is still up
    try:
        assert len(entries(plan_dir)) == plancache.KEEP
        assert len(entries(plan_dir, ".lock")) == plancache.KEEP + 1  # the held one stays
    finally:
        assert first is not None
        first.close()


def test_where_the_cache_lives(tmp_path):
    home = str(tmp_path)  # this user's: pytest made it
    assert plancache.cache_dir({"STOKER_PLAN_CACHE": "/c", "HOME": home}) == "/c"
    assert plancache.cache_dir({"STOKER_PLAN_CACHE": "off", "HOME": home}) is None
    assert plancache.cache_dir({"STOKER_PLAN_CACHE": "rel", "HOME": home}) is None
    assert plancache.cache_dir({"XDG_CACHE_HOME": "/x", "HOME": home}) == "/x/stoker/plans"
    assert plancache.cache_dir({"XDG_CACHE_HOME": "rel", "HOME": home}) == f"{home}/.cache/stoker/plans"
    assert plancache.cache_dir({"HOME": home}, euid=4242421) is None  # not that uid's; it has no entry
    listed = pwd.getpwuid(os.geteuid()).pw_dir  # HOME unset (a cron job, `env -i`): the password database's
    if os.path.isdir(listed) and os.stat(listed).st_uid == os.geteuid():
        assert plancache.cache_dir({}) == f"{listed}/.cache/stoker/plans"


@needs_root
def test_root_keeps_no_plan_where_another_user_could_redirect_it(tmp_path, job):
    """`sudo stoker run` keeping the caller's HOME (or XDG_CACHE_HOME): root kept its plans
    in the user's ~/.cache/stoker/plans, and a user who made that a symlink to a directory
    of root's (/etc/cron.d, say) had root write plan-*.bin, .lock and .start there. Now
    root's plans go to its own home, and a path with a level another user owns or may
    write is no cache at all."""
    home = tmp_path / "home"
    (home / ".cache" / "stoker").mkdir(parents=True)
    target = tmp_path / "roots"  # root's, 0755: where the symlink leads
    target.mkdir(mode=0o755)
    (home / ".cache" / "stoker" / "plans").symlink_to(target)
    for level in (home, home / ".cache", home / ".cache" / "stoker"):
        os.chown(level, STRANGER, STRANGER)
    os.lchown(home / ".cache" / "stoker" / "plans", STRANGER, STRANGER)
    planted = str(home / ".cache" / "stoker" / "plans")
    assert plancache.cache_dir({"HOME": str(home)}, euid=0) == f"{pwd.getpwuid(0).pw_dir}/.cache/stoker/plans"
    assert plancache.cache_dir({"XDG_CACHE_HOME": str(home / ".cache")}, euid=0) is None
    assert plancache.cache_dir({"STOKER_PLAN_CACHE": planted}, euid=0) is None
    held = plancache.lease(planted, ("k",))  # and its own check, once the levels exist
    assert not held.held
    held.close()
    os.chmod(target, 0o777)  # a directory of root's that others may write
    assert plancache.cache_dir({"STOKER_PLAN_CACHE": str(target)}, euid=0) is None
    assert os.listdir(target) == []


def test_why_no_plan_is_kept(tmp_path):
    """The reason `stoker run`'s one plan_not_kept line gives (`plancache.unkept_reason`)."""
    from executor.local.plancache import unkept_reason

    assert unkept_reason({"HOME": str(tmp_path)}) is None  # kept there
    assert unkept_reason({"STOKER_PLAN_CACHE": "off"}) is None  # turned off: nothing to say
    assert unkept_reason({"STOKER_PLAN_CACHE": "rel"}) == "STOKER_PLAN_CACHE (rel) is not an absolute path (nor off)"
    assert unkept_reason({"HOME": str(tmp_path / "gone")}, euid=4242421) == (
        f"HOME ({tmp_path}/gone) is not a directory this user owns, nor is the password database's home "
        f"of uid 4242421")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert unkept_reason({"STOKER_PLAN_CACHE": str(shared / "plans")}).startswith(
        f"another user could redirect {shared}/plans: ")


def test_a_cache_directory_that_takes_no_lock_says_why_no_plan_is_kept(monkeypatch, job, plan_dir):
    """ENOLCK (a home on NFS whose server's lock manager is not reached; no local file system
    gives it, so `flock` is made to fail as there): no plan was kept, each run planned
    afresh, and nothing said why (the claims file's ENOLCK is said). The lease's problem,
    the run's one plan_not_kept WARNING, now names it; a live run's hold still says nothing."""
    import errno
    import fcntl

    real = fcntl.flock
    key = plancache.plan_key(settings(job), "host", "me")
    held = plancache.lease(plan_dir, key)
    assert held.held and plancache.lease(plan_dir, key).problem == ""  # held by a live run: nothing to say
    held.close()

    def no_locks(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_UN:
            return real(fd, operation)
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lease = plancache.lease(plan_dir, key)
    assert not lease.held
    assert lease.problem == f"cannot lock in {plan_dir}: No locks available (ENOLCK)"
