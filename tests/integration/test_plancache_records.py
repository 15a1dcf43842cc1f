"""`executor/local/plancache.py`'s launch record (what the early start of the next run starts
before Stoker is loaded), its first wave and entry names, the lease taken by a lock file's
path, and what the cache says in its DEBUG lines and its reasons (`stoker run`'s one
plan_not_kept line): with real files and directories."""
from __future__ import annotations

import errno
import logging
import marshal
import os
import socket
from pathlib import Path

import pytest

from config.plan import JobPlan
from executor.local import plancache, planfiles
from executor.local.planfiles import ports_free
from executor.local.planform import encode
from tests.support.plancache_rig import entries, look, plan_of, planned, write_job
from tests.support.users import STRANGER, needs_root

ORDERED = """
jobs = [Job(cluster='c', role='r', environment='e', name='waves',
            task=Task(processes=[Process(name='setup', cmdline='echo {{thermos.ports[http]}}'),
                                 Process(name='web', cmdline='serve'),
                                 Process(name='side', cmdline='side'%s)],
                      constraints=order('setup', 'web'),
                      resources=Resources(cpu=1, ram=1*MB, disk=1*MB)))]
"""




@pytest.fixture
def ordered(tmp_path) -> Path:
    config = tmp_path / "ordered.aurora"
    config.write_text(ORDERED % "")
    return config


def debug_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "executor.local.plancache"]


# ---- the launch record ----


def test_the_first_wave_is_each_process_nothing_orders_after_another(ordered):
    plan, _, _ = plan_of(ordered)
    assert plancache.first_wave(plan) == ["setup", "side"]


@pytest.mark.parametrize("logger", ["Logger(destination='console')", "Logger(destination='both')",
                                    "Logger(mode='rotate')"])
def test_no_wave_when_one_of_it_logs_anywhere_but_a_plain_file(tmp_path, logger):
    config = tmp_path / "ordered.aurora"
    config.write_text(ORDERED % f", logger={logger}")
    assert plancache.first_wave(plan_of(config)[0]) is None


def test_the_launch_fields_are_what_the_early_start_starts(ordered):
    plan, _, _ = plan_of(ordered)
    fields = plancache.launch_fields(plan, ["setup", "side"], ("TOKEN",))
    port = plan.ports["http"]
    assert fields == {"name": plan.name, "instance": 0, "standin": plan.stand_in,
                      "wave": [("setup", f"echo {port}"), ("side", "side")],
                      "ports": [port], "secrets": ["TOKEN"]}
    assert plan.name == "waves" and plan.allocated == ("http",)


def _record(plan_dir: str, key: tuple) -> dict:
    return marshal.loads(Path(plancache.entry_stem(plan_dir, key) + planfiles.START_SUFFIX).read_bytes())


def test_the_launch_record_is_kept_beside_the_plan_and_rewritten_only_when_it_changed(ordered, plan_dir):
    plan, key, sources = plan_of(ordered)
    held = plancache.lease(plan_dir, key)
    try:
        plancache.keep_launch(plan_dir, key, sources, plan, ["setup", "side"], ("TOKEN",), held)
        path = plancache.entry_stem(plan_dir, key) + planfiles.START_SUFFIX
        record = _record(plan_dir, key)
        assert record == {"format": planfiles.LAUNCH_FORMAT, "key": key, "roots": planfiles.code_roots(),
                          "sources": ((str(ordered), ORDERED % ""),),
                          **plancache.launch_fields(plan, ["setup", "side"], ("TOKEN",))}
        assert os.stat(path).st_mode & 0o777 == 0o600
        first = os.stat(path).st_ino
        plancache.keep_launch(plan_dir, key, sources, plan, ["setup", "side"], ("TOKEN",), held)
        assert os.stat(path).st_ino == first  # the same record: not written again
        plancache.keep_launch(plan_dir, key, sources, plan, ["setup"], ("TOKEN",), held)
        assert os.stat(path).st_ino != first and _record(plan_dir, key)["wave"] == [
            ("setup", f"echo {plan.ports['http']}")]
        plancache.keep_launch(plan_dir, key, sources, plan, None, (), held)  # no wave now: none kept
        assert not os.path.exists(path)
        plancache.keep_launch(plan_dir, key, sources, plan, None, (), held)  # (none there: nothing to do)
    finally:
        held.close()


def test_no_launch_record_without_the_lease(ordered, plan_dir):
    plan, key, sources = plan_of(ordered)
    first = plancache.lease(plan_dir, key)  # a live run of the same config holds it
    try:
        second = plancache.lease(plan_dir, key)
        plancache.keep_launch(plan_dir, key, sources, plan, ["setup"], (), second)
        assert plancache.store(plan_dir, key, sources, plan, second, None) == ""  # nothing to say
        assert entries(plan_dir, planfiles.START_SUFFIX) == entries(plan_dir) == []
        plancache.keep_launch(plan_dir, key, sources, plan, ["setup"], (), first)
        assert len(entries(plan_dir, planfiles.START_SUFFIX)) == 1
        plancache.keep_launch(plan_dir, key, sources, plan, None, (), second)  # nor is it dropped
        assert len(entries(plan_dir, planfiles.START_SUFFIX)) == 1
    finally:
        first.close()


def test_a_launch_record_that_cannot_be_written_is_a_debug_line(ordered, plan_dir, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.local.plancache")
    plan, key, sources = plan_of(ordered)
    held = plancache.lease(plan_dir, key)
    try:
        os.mkdir(plancache.entry_stem(plan_dir, key) + planfiles.START_SUFFIX)  # in its way
        plancache.keep_launch(plan_dir, key, sources, plan, ["setup"], (), held)
        plancache.keep_launch(plan_dir, key, sources, plan, ["setup"], (object(),), held)  # (marshal: no)
    finally:
        held.close()
    lines = debug_lines(caplog)
    assert len(lines) == 2 and all(
        line.startswith(f'plan_cache_not_kept reason="could not keep the launch record in {plan_dir}: ')
        for line in lines)
    assert "Is a directory" in lines[0] and "unmarshallable object" in lines[1]


def test_an_entry_s_files_share_its_stem(job, plan_dir):
    plan, key = planned(job, plan_dir)
    stem = plancache.entry_stem(plan_dir, key)
    assert os.path.dirname(stem) == plan_dir and os.path.basename(stem).startswith("plan-")
    assert entries(plan_dir) == [os.path.basename(stem) + planfiles.PLAN_SUFFIX]
    assert entries(plan_dir, planfiles.LOCK_SUFFIX) == [os.path.basename(stem) + planfiles.LOCK_SUFFIX]


def test_one_entry_per_config_job_and_instance(tmp_path, plan_dir):
    """Another instance or job of one config is another entry; other arguments (a binding, a
    fixed port) are the same entry, replaced."""
    config = tmp_path / "two.aurora"
    config.write_text(ORDERED % "" + "jobs.append(jobs[0](name='other'))\n")
    stems = {plancache.entry_stem(plan_dir, plan_of(config, **kw)[1])
             for kw in ({"jobkey": "c/r/e/waves"}, {"jobkey": "c/r/e/other"},
                        {"jobkey": "c/r/e/waves", "instance": 1})}
    assert len(stems) == 3
    same = {plancache.entry_stem(plan_dir, plan_of(config, **kw)[1])
            for kw in ({"jobkey": "c/r/e/waves"}, {"jobkey": "c/r/e/waves", "bindings": (("x", "y"),)},
                       {"jobkey": "c/r/e/waves", "ports": {"http": 8080}})}
    assert len(same) == 1


# ---- the lease ----


def test_a_lease_by_its_lock_file_s_path(job, plan_dir):
    _, key = planned(job, plan_dir)
    path = plancache.entry_stem(plan_dir, key) + planfiles.LOCK_SUFFIX
    held = plancache.lease_at(plan_dir, path)
    try:
        assert held.held and held.problem == ""
        again = plancache.lease(plan_dir, key)  # the same entry's: taken
        assert not again.held and again.problem == ""
        assert plancache.lookup(plan_dir, key, ports_free, held) is not None
    finally:
        held.close()
    assert plancache.lease(plan_dir, key).held


def test_a_lease_in_a_place_that_cannot_hold_plans_says_why(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for lease in (plancache.lease_at(str(blocker / "cache"), str(blocker / "cache" / "x.lock")),
                  plancache.lease(str(blocker / "cache"), ("k",) * 7)):
        assert not lease.held
        assert lease.problem == f"cannot make {blocker}/cache: {blocker} is a regular file, not a directory (ENOTDIR)"


def test_a_lock_file_that_cannot_be_opened_says_why(plan_dir, tmp_path):
    os.makedirs(plan_dir, mode=0o700)
    in_its_way = Path(plan_dir, "x.lock")
    in_its_way.mkdir()
    lease = plancache.lease_at(plan_dir, str(in_its_way))
    assert not lease.held
    assert lease.problem == f"cannot write in {plan_dir}: Is a directory (EISDIR)"


def test_a_lock_file_planted_as_a_symlink_is_not_followed(plan_dir, tmp_path):
    os.makedirs(plan_dir, mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    os.symlink(elsewhere, Path(plan_dir, "x.lock"))
    lease = plancache.lease_at(plan_dir, str(Path(plan_dir, "x.lock")))
    assert not lease.held
    assert lease.problem == f"cannot write in {plan_dir}: Too many levels of symbolic links (ELOOP)"
    assert not elsewhere.exists()


def test_a_lease_let_go_or_handed_on_is_no_longer_held(job, plan_dir):
    _, key = planned(job, plan_dir)
    held = plancache.lease(plan_dir, key)
    held.close()
    held.close()  # twice: nothing more to close
    assert not held.held
    handed = plancache.lease(plan_dir, key)
    fd = handed.take()
    try:
        assert fd is not None and not handed.held and handed.take() is None
        handed.close()  # the descriptor is the taker's now
        os.fstat(fd)
        assert not plancache.lease(plan_dir, key).held  # still held, by the taker
    finally:
        os.close(fd)


def test_an_os_error_s_reason_names_its_code():
    assert plancache._os_reason(OSError(errno.EACCES, "Permission denied")) == "Permission denied (EACCES)"
    assert plancache._os_reason(OSError(9999, "odd")) == "odd (9999)"
    assert plancache._os_reason(OSError()) == "None (None)"  # no code at all


# ---- what it says ----


def test_each_miss_and_use_of_a_kept_plan_is_a_debug_line(job, plan_dir, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.local.plancache")
    plan, key = planned(job, plan_dir)
    assert look(plan_dir, key) == plan
    assert debug_lines(caplog) == [f"plan_cache_used config={job}"]
    caplog.clear()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", plan.ports["http"]))
        taken.listen()
        assert look(plan_dir, key) is None
    job.with_name("lib.aurora").write_text("WORD = 'two'\n")
    assert look(plan_dir, key) is None
    [name] = entries(plan_dir)
    Path(plan_dir, name).write_bytes(marshal.dumps((key, (), b"garbage")))
    assert look(plan_dir, key) is None
    lines = debug_lines(caplog)
    assert lines[:2] == ['plan_cache_missed reason="a port it chose is taken now"',
                         f'plan_cache_missed reason="{job.with_name("lib.aurora")} changed"']
    assert lines[2].startswith('plan_cache_missed reason="unusable entry (') and len(lines) == 3


def test_a_plan_not_kept_says_why(job, plan_dir, caplog):
    caplog.set_level(logging.DEBUG, logger="executor.local.plancache")
    plan, key, sources = plan_of(job)
    held = plancache.lease(plan_dir, key)
    try:
        assert plancache.store(plan_dir, key, sources, plan, held, "it calls open()") == ""
        assert plancache.store(plan_dir, key, {**sources, "x": object()}, plan, held, None) == ""  # type: ignore[dict-item]
        assert entries(plan_dir) == []
        os.mkdir(plancache.entry_stem(plan_dir, key) + planfiles.PLAN_SUFFIX)  # in its way
        assert plancache.store(plan_dir, key, sources, plan, held, None) == (
            f"cannot write in {plan_dir}: Is a directory (EISDIR)")
    finally:
        held.close()
    lines = debug_lines(caplog)
    assert lines[0] == 'plan_cache_not_kept reason="the config reads more than its text: it calls open()"'
    assert lines[1].startswith('plan_cache_not_kept reason="the plan cannot be kept: ') and len(lines) == 2


def test_a_plan_kept_with_its_bytes_is_kept_as_they_came(job, plan_dir, tmp_path):
    """The first run keeps the bytes its planning child sent, not its own encoding of them."""
    plan, key, sources = plan_of(job)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other, _, _ = plan_of(write_job(other_dir))
    held = plancache.lease(plan_dir, key)
    try:
        assert plancache.store(plan_dir, key, sources, plan, held, None, encoded=marshal.dumps(encode(other))) == ""
        kept = plancache.lookup(plan_dir, key, ports_free, held)
    finally:
        held.close()
    assert isinstance(kept, JobPlan) and kept == other != plan


def test_why_no_plan_is_kept_where_the_cache_would_be(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert plancache.unkept_reason({"XDG_CACHE_HOME": str(shared)}) == (
        f"another user could redirect {shared}/stoker/plans: {shared} may be written by others (mode 777)")
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    (home / ".cache").chmod(0o777)
    for environ in ({"HOME": str(home)}, {"HOME": str(home), "XDG_CACHE_HOME": "relative"}):
        assert plancache.unkept_reason(environ) == (
            f"another user could redirect {home}/.cache/stoker/plans: {home}/.cache may be written by others (mode 777)")
    assert plancache.unkept_reason({}, euid=4242421) == (
        "HOME (not set) is not a directory this user owns, nor is the password database's home of uid 4242421")
    assert plancache.unkept_reason({"HOME": str(tmp_path)}) is None


@needs_root
def test_the_reason_is_the_given_user_s(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o777)
    os.chown(theirs, STRANGER, STRANGER)
    reason = plancache.unkept_reason({"STOKER_PLAN_CACHE": str(theirs / "plans")}, euid=STRANGER)
    assert reason == f"another user could redirect {theirs}/plans: {theirs} may be written by others (mode 777)"
    assert plancache.unkept_reason({"STOKER_PLAN_CACHE": str(theirs / "plans")}) == (
        f"another user could redirect {theirs}/plans: {theirs} belongs to uid {STRANGER}")

