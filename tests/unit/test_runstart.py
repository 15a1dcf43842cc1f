"""The parts of `stoker run`'s start (executor/local/runstart.py) that need no child process:
the first wave kept for the next run's early start, the job's announcement, and the import
system's finders dropped as the start ends. (The plan, the plan made ahead and the early
start run `stoker run` in child processes: tests/e2e/test_early_start.py,
tests/integration/test_planning.py.)"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from importlib.machinery import FileFinder
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.plan import JobPlan, plan_job
from config.registry import RegistrySettings
from config.settings import RunSettings
from executor.host.early import EarlyStart
from executor.host.entry import claims_name
from executor.host.identity import boot_id, host_identity
from executor.host.lock import byte_lock_holder as _lock_holder
from executor.local import plancache, planfiles
from executor.local.runstart import PortClaims, RunStart, announcement_for, forget_listings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "hello_world.aurora"


def planned(config: Path) -> JobPlan:
    return plan_job(str(config), None, (), instance=0, fixed_ports={}, hostname="h", user="u",
                    allocate=lambda names, fixed: {**fixed, **{n: 20000 + i for i, n in enumerate(names)}})


def first_wave(**settings: object) -> list[str] | None:
    start = RunStart(RunSettings(config=str(EXAMPLE), **settings), {}, None, None)  # type: ignore[arg-type]
    return start._first_wave(planned(EXAMPLE))


def test_the_first_wave_is_kept_for_a_run_the_next_one_may_start_early():
    assert first_wave() == plancache.first_wave(planned(EXAMPLE)) == ["hello"]


@pytest.mark.parametrize("settings", [
    {"jobkey": "devcluster/www-data/prod/hello"}, {"instance": 1}, {"bindings": (("k", "v"),)},
    {"ports": {"http": 8080}},
], ids=["jobkey", "instance", "bind", "port"])
def test_no_first_wave_is_kept_for_a_run_with_other_words_than_the_early_start_takes(settings):
    assert first_wave(**settings) is None


def test_the_first_wave_of_a_large_task_is_all_of_it_not_a_decision_s_batch(tmp_path):
    """A decision starts START_BATCH runs at most; the early start starts the whole first
    wave (a re-run of 500: its first 128 only, the rest 130 ms later from the owner)."""
    config = tmp_path / "big.aurora"
    config.write_text("jobs = [Job(cluster='c', role='r', environment='e', name='big', task=Task(\n"
                      "  processes=[Process(name='p%d' % i, cmdline='true') for i in range(300)],\n"
                      "  resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]\n")
    assert plancache.first_wave(planned(config)) == [f"p{i}" for i in range(300)]


ANNOUNCING = """\
    jobs = [Service(cluster='local', role='me', environment='test', name='web', {announce}
                    task=Task(processes=[Process(name='a', cmdline='echo {{{{thermos.ports[http]}}}}')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def announcing(tmp_path: Path, announce: str) -> Path:
    config = tmp_path / "web.aurora"
    config.write_text(textwrap.dedent(ANNOUNCING.format(announce=announce)))
    return config


@pytest.fixture
def unloaded(monkeypatch):
    """The announcing modules as not loaded yet; put back as they were after the test (in
    `sys.modules` and as their package's attributes)."""
    import executor.task.announcer
    import executor.task.serverset

    for name in ("announcer", "serverset"):
        monkeypatch.setattr(executor.task, name, getattr(executor.task, name))
        monkeypatch.delitem(sys.modules, f"executor.task.{name}")
    return ("executor.task.announcer", "executor.task.serverset")


def test_a_job_announces_with_announce_as_the_host_it_is_given(tmp_path, unloaded):
    pytest.importorskip("kazoo")
    config = announcing(tmp_path, "announce=Announcer(primary_port='http'),")
    spec = planned(config).spec
    got = announcement_for(spec, RunSettings(config=str(config), announce="127.0.0.1:2181"), "box")
    assert got is not None
    assert set(unloaded) <= sys.modules.keys()  # kazoo's absence is refused before anything starts
    assert (got.ensemble, got.path, got.primary.host, got.primary.port, got.shard) == (
        "127.0.0.1:2181", "/aurora/me/test/web", "box", spec.ports["http"], 0)


@pytest.mark.parametrize("announce, flag", [("announce=Announcer(primary_port='http'),", None), ("", "127.0.0.1:1")],
                         ids=["no-flag", "no-announcer"])
def test_a_job_announces_only_with_both_its_announcer_and_announce(tmp_path, announce, flag, unloaded):
    config = announcing(tmp_path, announce)
    assert announcement_for(planned(config).spec, RunSettings(config=str(config), announce=flag), "box") is None
    assert not set(unloaded) & sys.modules.keys()  # nor their modules loaded


def test_an_announcement_that_cannot_be_made_is_the_config_s_error(tmp_path):
    config = announcing(tmp_path, "announce=Announcer(primary_port='http', zk_path='relative'),")
    with pytest.raises(ConfigError) as raised:
        announcement_for(planned(config).spec, RunSettings(config=str(config), announce="127.0.0.1:1"), "box")
    assert str(raised.value).startswith(f"'{config}': job local/me/test/web: Announcer.zk_path: ")


@pytest.fixture
def importer_cache(monkeypatch):
    """The import system's finders, copied: the test's own entries are dropped with the copy."""
    monkeypatch.setattr(sys, "path_importer_cache", dict(sys.path_importer_cache))
    return sys.path_importer_cache


def test_the_finders_of_own_packages_are_kept_and_the_others_dropped(importer_cache, tmp_path):
    import executor  # the package whose directory is kept

    top = executor.__path__[0]
    below, beside, other = os.path.join(top, "host"), top + "x", str(tmp_path)
    for path in (top, below, beside, other):
        importer_cache[path] = FileFinder(path)
    importer_cache[str(tmp_path / "not-made")] = None
    importer_cache[b"bytes"] = FileFinder(other)  # a key that is no str
    forget_listings(("executor", "no_such_package", "os"))  # os: a module, no package
    assert {top, below, str(tmp_path / "not-made")} <= importer_cache.keys()
    assert not {beside, other, b"bytes"} & importer_cache.keys()
    assert all(not key.startswith(top) or key in (top, below) or key.startswith(top + os.sep)
               for key in importer_cache if isinstance(key, str))


def test_with_no_own_package_loaded_only_the_entries_without_a_finder_are_kept(importer_cache, tmp_path):
    import executor

    top = executor.__path__[0]
    importer_cache[top] = FileFinder(top)
    importer_cache[str(tmp_path)] = None
    forget_listings(("no_such_package",))
    assert importer_cache[str(tmp_path)] is None
    assert top not in importer_cache and all(finder is None for finder in importer_cache.values())


def plan_of(config: Path, environ: dict[str, str], host: str = "h") -> JobPlan:
    """The plan one run of `config` starts from; its lease let go, as the run's end does."""
    start = RunStart(RunSettings(config=str(config)), environ, None, None)
    try:
        return start.plan(host)
    finally:
        start.close()


def test_a_plan_made_is_kept_and_the_next_run_of_the_same_settings_starts_from_it(tmp_path):
    """(The plan is made in a child process this test's process forks: `plan_apart`.)"""
    config, environ = announcing(tmp_path, ""), {"STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    first = plan_of(config, environ)
    assert plan_of(config, environ).stand_in == first.stand_in  # 8 random hex digits: the same plan
    assert plan_of(config, {"STOKER_PLAN_CACHE": "off"}).stand_in != first.stand_in
    assert plan_of(config, environ, host="another").stand_in != first.stand_in  # kept for each host


def test_the_plan_kept_has_its_launch_record_for_the_next_run_s_early_start(tmp_path):
    config, plans = announcing(tmp_path, ""), tmp_path / "plans"
    plan_of(config, {"STOKER_PLAN_CACHE": str(plans)})
    kept = sorted(path.suffix for path in plans.rglob("*") if path.is_file())
    assert planfiles.PLAN_SUFFIX in kept and planfiles.START_SUFFIX in kept


def test_a_kept_plan_whose_port_is_taken_meanwhile_is_planned_again(tmp_path):
    config, environ = announcing(tmp_path, ""), {"STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    first = plan_of(config, environ)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first.spec.ports["http"]))
        taken.listen()
        again = plan_of(config, environ)
    assert again.stand_in != first.stand_in and again.spec.ports["http"] != first.spec.ports["http"]
    assert plan_of(config, environ).stand_in == again.stand_in  # the new one kept in its place


def test_a_run_that_cannot_keep_its_plan_says_why_in_one_line(tmp_path, caplog):
    config = announcing(tmp_path, "")
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        plan_of(config, {"STOKER_PLAN_CACHE": "plans"})
        plan_of(config, {"STOKER_PLAN_CACHE": "off"})  # turned off: nothing to say
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, caplog.records[0].getMessage())]
    assert "STOKER_PLAN_CACHE (plans) is not an absolute path (nor off)" in caplog.records[0].getMessage()
    assert "each run plans the job again" in caplog.records[0].getMessage()


def early_start(sandbox: Path, entry: str = "") -> EarlyStart:
    """An early start that made `sandbox` and holds a lease (on a file of the test's), no
    runs started: what `stoker run`'s entry point hands over before the run exists."""
    sandbox.mkdir()
    fd = os.open(sandbox.parent / "lease", os.O_RDWR | os.O_CREAT, 0o600)
    return EarlyStart(entry=entry, sandbox=str(sandbox.resolve()), lease_fd=fd, task_id="t", marker="m")


def test_the_early_start_s_sandbox_is_the_run_s_when_it_is_the_one_asked_for(tmp_path):
    early = early_start(tmp_path / "sb")
    start = RunStart(RunSettings(config=str(EXAMPLE), sandbox=str(tmp_path / "sb")), {}, early, None)
    assert start.early_sandbox("hello") is early and start.early is early and early.made_sandbox
    start.handed_over()
    assert start.early is None
    start.close()  # nothing to give up
    assert (tmp_path / "sb").is_dir() and early.take_lease() >= 0


def test_the_early_start_s_sandbox_is_the_run_s_when_it_is_a_default_one_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    early = early_start(tmp_path / planfiles.sandbox_name("hello"))
    start = RunStart(RunSettings(config=str(EXAMPLE)), {}, early, None)
    try:
        assert start.early_sandbox("hello") is early
    finally:
        start.close()
    assert start.early is None and early.take_lease() == -1  # given up as the run ended


def test_an_early_start_given_up_as_the_run_ends_says_no_task_starts(tmp_path, caplog):
    """Was: "...; its runs were killed and the task starts as without it", the run's last
    line after its `stoker: error: cannot go on` (no thread could be started)."""
    early = early_start(tmp_path / "sb")
    start = RunStart(RunSettings(config=str(EXAMPLE), sandbox=str(tmp_path / "sb")), {}, early, None)
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        start.close()
    assert [r.getMessage() for r in caplog.records if "early start given up" in r.getMessage()] == [
        'early_start_given_up reason="early start given up: the run ended before its task started; '
        'its runs were killed"']


@pytest.mark.parametrize("name, requested", [("elsewhere", "sb"), (planfiles.sandbox_name("hello"), None)],
                         ids=["another-asked-for", "another-job-s-default"])
def test_an_early_start_in_another_sandbox_is_given_up_in_one_line(tmp_path, monkeypatch, caplog, name, requested):
    monkeypatch.chdir(tmp_path)
    early = early_start(tmp_path / name)
    settings = RunSettings(config=str(EXAMPLE), sandbox=requested and str(tmp_path / requested))
    start = RunStart(settings, {}, early, None)
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        assert start.early_sandbox("other" if requested is None else "hello") is None
    assert start.early is None and not (tmp_path / name).exists() and early.take_lease() == -1
    assert [r.getMessage() for r in caplog.records if "early start given up" in r.getMessage()] == [
        caplog.records[-1].getMessage()]
    assert f"early start given up: it made sandbox {tmp_path / name}, not the one this run uses; its runs " \
           "were killed and the task starts as without it" in caplog.records[-1].getMessage()


def test_the_early_start_s_lease_is_the_run_s_only_on_this_plan(tmp_path, caplog):
    key = plancache.plan_key(RunSettings(config=str(EXAMPLE)), "h", "u")
    another = plancache.plan_key(RunSettings(config=str(EXAMPLE), instance=1), "h", "u")
    early = early_start(tmp_path / "sb", entry=plancache.entry_stem(str(tmp_path), key))
    start = RunStart(RunSettings(config=str(EXAMPLE)), {}, early, None)
    lease = start._early_lease(str(tmp_path), key)
    assert lease is not None and lease.held and start.early is early and early.take_lease() == -1
    lease.close()
    other = early_start(tmp_path / "sb2", entry=plancache.entry_stem(str(tmp_path), key))
    start = RunStart(RunSettings(config=str(EXAMPLE)), {}, other, None)
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        assert start._early_lease(str(tmp_path), another) is None
    assert start.early is None and "early start given up: it took another plan's lease;" in caplog.records[-1].getMessage()
    assert start._early_lease(str(tmp_path), key) is None  # nothing left to take


LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for number in sys.argv[2:]:  # N+: from N to the file's end, however long it grows
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 0 if number.endswith("+") else 1, int(number.rstrip("+")))
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def claims(tmp_path):
    """A claims file in a registry root of the test's, and a child process that claims ports
    in it (as another live run would): started with the numbers, ended with the test."""
    settings = RegistrySettings(registry_root=str(tmp_path / "root"))
    children: list[subprocess.Popen[str]] = []

    def claimed_by_another(*numbers: int | str, name: str = "") -> subprocess.Popen[str]:
        path = tmp_path / "root" / (name or claims_name(boot_id(), host_identity()))
        os.makedirs(path.parent, mode=0o700, exist_ok=True)
        path.touch(mode=0o600)
        child = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), *map(str, numbers)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        return child

    yield settings, claimed_by_another
    for child in children:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def test_ports_another_process_claims_are_not_taken_and_it_is_named(claims):
    settings, claimed_by_another = claims
    other = claimed_by_another(40002)
    mine = PortClaims(settings)
    assert mine.take([40001, 40003]) and mine.contested is None
    assert mine.take([40001, 40004]) and mine.take([])  # its own again: as it was
    assert _lock_holder(os.stat(settings.registry_root + "/" + claims_name(boot_id(), host_identity())), 40004) == os.getpid()
    assert not mine.take([40001, 40005, 40002]) and mine.contested == 40002
    assert mine.holder(40002).startswith(f"pid {other.pid} (") and "python" in mine.holder(40002)
    assert mine.holder(40001).startswith(f"pid {os.getpid()} (")
    assert mine.holder(40009) == "a process this host's /proc/locks does not name"  # no one's
    # 40005 was let go with the refusal, 40001 (held before) stays this process's
    after = claimed_by_another(40005)
    assert after.poll() is None
    assert _lock_holder(os.stat(settings.registry_root + "/" + claims_name(boot_id(), host_identity())), 40001) == os.getpid()


def test_a_port_claimed_to_the_file_s_end_names_its_holder(claims):
    settings, claimed_by_another = claims
    other = claimed_by_another("40030+")
    mine = PortClaims(settings)
    assert mine.take([40029]) and not mine.take([40031]) and mine.holder(40031).startswith(f"pid {other.pid} (")


def test_a_port_given_with_port_is_claimed_unless_another_process_claims_it(claims):
    settings, claimed_by_another = claims
    claimed_by_another(40011)
    mine = PortClaims(settings)
    mine.take_given([40011, 40012, 40013])
    root = settings.registry_root + "/" + claims_name(boot_id(), host_identity())
    assert [_lock_holder(os.stat(root), n) == os.getpid() for n in (40011, 40012, 40013)] == [False, True, True]


def test_another_host_s_claims_hold_none_of_this_host_s_ports(claims):
    """A registry root several hosts share (a home on NFS) held one claims file: another host's
    run's claim on its own loopback port kept this host's runs from choosing that number on
    theirs. Each host claims in a file of its own; a lock held by another host's run (as its
    Stoker takes it, or an older Stoker's in the one shared `ports.claims`) claims nothing here."""
    settings, claimed_by_another = claims
    claimed_by_another(40041, name=claims_name("b00t-of-other-host", ("0ther0machine0id", "other-host")))
    claimed_by_another(40041, name="ports.claims")  # was every host's file
    mine = PortClaims(settings)
    assert mine.take([40041]) and mine.contested is None
    here = settings.registry_root + "/" + claims_name(boot_id(), host_identity())
    assert _lock_holder(os.stat(here), 40041) == os.getpid()
    # one file a boot, whatever the host's name: renamed since a run started, or a container
    # of the host's network named otherwise, it claims where the other runs claim
    assert claims_name(boot_id(), host_identity()) == claims_name(boot_id(), ("", "another-name"))
    assert claims_name(boot_id(), host_identity()) != claims_name("b00t-of-other-host", host_identity())


@pytest.mark.parametrize("name", ["0f1e2d", "a/b c\nd", "..", "ünï.example.com"])
def test_a_host_s_claims_file_is_one_plain_file_name(name):
    found = claims_name("", ("0f1e2d", name))  # no boot id known: by the host's
    assert found.startswith("ports.0f1e2d.") and found.endswith(".claims")
    assert "/" not in found and found.isascii() and found.isprintable()
    by_boot = claims_name(name, ("0f1e2d", "host"))
    assert by_boot.startswith("ports.") and "/" not in by_boot and by_boot.isascii() and by_boot.isprintable()


def test_a_claims_file_that_takes_no_lock_leaves_the_ports_unclaimed_with_one_warning(claims, monkeypatch, caplog):
    """ENOLCK (an NFS home whose server's lock manager is not reached; no local file system
    gives it, so `lockf` is made to fail as there): the run went on, its ports unclaimed,
    and said nothing. Now one WARNING says so, and no lock is asked for again."""
    import errno
    import fcntl

    settings, _ = claims
    asked: list[int] = []

    def no_locks(fd: int, cmd: int, length: int = 0, start: int = 0, whence: int = 0) -> None:
        asked.append(start)
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    mine = PortClaims(settings)
    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        assert mine.take([40051, 40052]) and mine.take([40053]) and mine.contested is None
        mine.take_given([40054])
    assert [r.getMessage() for r in caplog.records] == [
        f'ports_unclaimed reason="the port claims file in {settings.registry_root} takes no lock (ENOLCK: No locks '
        "available): this run's ports are taken unclaimed, and another run of this host may be given the same one\""]
    assert asked == [40051] and caplog.records[0].levelno == logging.WARNING
    monkeypatch.setattr(fcntl, "lockf", lambda *args: (_ for _ in ()).throw(OSError(9999, "strange")))
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        assert PortClaims(settings).take([40055])
    assert "takes no lock (9999: strange): " in caplog.records[1].getMessage()  # an errno Python does not name


def test_without_a_claims_file_ports_are_taken_unclaimed(tmp_path):
    (tmp_path / "file").write_text("")
    for claims in (PortClaims(None), PortClaims(RegistrySettings(registry_root=str(tmp_path / "file" / "root")))):
        assert claims.take([40021]) and claims.contested is None
        assert claims.holder(40021) == "a process this host's /proc/locks does not name"


def test_an_early_start_of_the_kept_plan_is_the_run_s_with_its_lease(tmp_path):
    config, environ = announcing(tmp_path, ""), {"STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    kept = plan_of(config, environ)
    key = plancache.plan_key(RunSettings(config=str(config)), "h", planfiles.login_name(environ))
    early = early_start(tmp_path / "sb", entry=plancache.entry_stem(str(tmp_path / "plans"), key))
    start = RunStart(RunSettings(config=str(config)), environ, early, None)
    try:
        assert start.plan("h").stand_in == kept.stand_in
        assert start.early is early and early.take_lease() == -1  # its lease is the run's now
    finally:
        start.close()


def test_an_early_start_of_a_plan_not_kept_is_given_up_in_one_line(tmp_path, caplog):
    config, environ = announcing(tmp_path, ""), {"STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    (tmp_path / "plans").mkdir(mode=0o700)  # where the early start took its lease: its plan is kept there
    key = plancache.plan_key(RunSettings(config=str(config)), "h", planfiles.login_name(environ))
    early = early_start(tmp_path / "sb", entry=plancache.entry_stem(str(tmp_path / "plans"), key))
    start = RunStart(RunSettings(config=str(config)), environ, early, None)
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        try:
            start.plan("h")
        finally:
            start.close()
    assert [r.getMessage() for r in caplog.records if "early start given up" in r.getMessage()] == [
        caplog.records[-1].getMessage()]
    assert "early start given up: its plan is not the one kept;" in caplog.records[-1].getMessage()
    assert not (tmp_path / "sb").exists()
