"""`RunStart.plan` (executor/local/runstart.py) with what the entry point began: the child it
forked to plan ahead (a real one, `launchfirst._fork_ahead`) is the plan's when it planned for
these settings, and cancelled with one DEBUG line naming the inputs that differ when not; an
early start of a plan made ahead for other settings is given up; a config that ends its own
process is named; ports given with --port are claimed; a port every plan chooses another
process claims ends the run naming it; and the lines a start says once (a plan not kept, a
damaged code bundle). Each config here appends its process id to LOADS as it is loaded: how
many loads a start made is what says whether the child's plan was used."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.registry import RegistrySettings
from config.settings import RunSettings
from executor import codebundle
from executor.cli.launchfirst import _fork_ahead, _inputs
from executor.host.early import EarlyStart
from executor.host.entry import claims_name
from executor.host.identity import boot_id, host_identity
from executor.host.lock import byte_lock_holder
from executor.local.planahead import PlanAhead
from executor.local.runstart import RunStart, forget_listings
from tests.support.logevents import lines
from tests.support.waiting import wait_for
from tests.unit.test_runstart import claims, importer_cache  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(60)

HOST = os.uname().nodename
ENVIRON = {"STOKER_PLAN_CACHE": "off", "USER": "me"}
CONFIG = """\
import os
with open({loads!r}, 'a') as loads:
    loads.write('%d\\n' % os.getpid())
jobs = [Service(cluster='local', role='me', environment='test', name='web',
                task=Task(processes=[Process(name='a', cmdline='echo {{{{thermos.ports[http]}}}}')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


def config_in(tmp_path: Path) -> tuple[Path, Path]:
    loads = tmp_path / "loads"
    config = tmp_path / "web.aurora"
    config.write_text(CONFIG.format(loads=str(loads)))
    return config, loads


def forked_ahead(config: Path) -> PlanAhead:
    """The planning child for `stoker run CONFIG`, forked and let answer first."""
    ahead = _fork_ahead(_inputs(str(config), ENVIRON))
    assert ahead is not None
    wait_for(ahead.answered, 30)
    return ahead


def started(settings: RunSettings, ahead: PlanAhead | None, early: EarlyStart | None = None,
            registry: RegistrySettings | None = None, host: str = HOST) -> object:
    start = RunStart(settings, ENVIRON, early, ahead, registry)
    try:
        return start.plan(host)
    finally:
        start.close()


def planned_ahead_early(tmp_path: Path) -> EarlyStart:
    """An early start of the plan made ahead, in a sandbox of its own, holding a lease on a
    file of the test's, no runs started (as test_runstart.py's `early_start`, planned ahead)."""
    (tmp_path / "sb").mkdir()
    lease = os.open(tmp_path / "lease", os.O_RDWR | os.O_CREAT, 0o600)
    return EarlyStart(entry="", sandbox=str(tmp_path / "sb"), lease_fd=lease, task_id="t", marker="m",
                      planned_ahead=True)


def test_the_child_that_planned_for_these_settings_is_the_plan_s(tmp_path, caplog):
    config, loads = config_in(tmp_path)
    ahead = forked_ahead(config)
    with caplog.at_level(logging.DEBUG, logger="executor.local.runstart"):
        plan = started(RunSettings(config=str(config)), ahead)
    assert len(loads.read_text().split()) == 1 and ahead.pid == -1
    assert lines(caplog, "plan_ahead_unused") == [] and plan.spec.name == "web"


@pytest.mark.parametrize(("settings", "host", "differ"), [
    ({"jobkey": "local/me/test/web"}, HOST, "jobkey"),
    ({}, "another", "host"),
    ({"instance": 1, "ports": {"http": 40123}}, HOST, "instance, ports"),
], ids=["jobkey", "host", "instance and ports"])
def test_a_child_that_planned_for_other_settings_is_cancelled_naming_them(tmp_path, caplog, settings, host, differ):
    config, loads = config_in(tmp_path)
    ahead = forked_ahead(config)
    with caplog.at_level(logging.DEBUG, logger="executor.local.runstart"):
        started(RunSettings(config=str(config), **settings), ahead, host=host)
    assert len(loads.read_text().split()) == 2 and ahead.pid == -1
    assert lines(caplog, "plan_ahead_unused") == [
        f'plan_ahead_unused reason="it planned for other inputs ({differ}); planning afresh"']
    assert caplog.records[0].levelno == logging.DEBUG


def test_an_early_start_of_the_plan_made_ahead_for_other_settings_is_given_up(tmp_path, caplog):
    config, loads = config_in(tmp_path)
    early = planned_ahead_early(tmp_path)
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        started(RunSettings(config=str(config), instance=1), forked_ahead(config), early)
    assert lines(caplog, "early_start_given_up") == [
        'early_start_given_up reason="early start given up: it started the plan made ahead for other settings; '
        'its runs were killed and the task starts as without it"']


def test_a_config_that_ends_its_own_process_is_named(tmp_path):
    """(In the child forked ahead: planned without one, in a process with another thread,
    as a pytest-xdist worker is, the config runs in that process.)"""
    config = tmp_path / "exits.aurora"
    config.write_text("import os\nos._exit(3)\n")
    with pytest.raises(ConfigError) as raised:
        started(RunSettings(config=str(config)), forked_ahead(config))
    assert str(raised.value).startswith(f"'{config}': the process running the config ended (exit status 3)")


def claimed_by_me(registry: RegistrySettings, port: int) -> bool:
    return byte_lock_holder(os.stat(os.path.join(registry.registry_root, claims_name(boot_id(), host_identity()))),
                            port) == os.getpid()


def test_a_port_given_with_port_is_claimed(tmp_path):
    registry = RegistrySettings(registry_root=str(tmp_path / "root"))
    config, _ = config_in(tmp_path)
    started(RunSettings(config=str(config), ports={"http": 40123}), None, registry=registry)
    assert claimed_by_me(registry, 40123) and not claimed_by_me(registry, 40124)


def test_a_kept_plan_s_ports_are_claimed_as_a_run_takes_it(tmp_path):
    """(A config that writes no file: one it read and changed since, the plan is not kept.)"""
    registry = RegistrySettings(registry_root=str(tmp_path / "root"))
    config = tmp_path / "web.aurora"
    config.write_text("jobs = " + CONFIG.format(loads="").split("jobs = ", 1)[1])
    environ = {**ENVIRON, "STOKER_PLAN_CACHE": str(tmp_path / "plans")}
    plans = [RunStart(RunSettings(config=str(config)), environ, None, None, registry) for _ in range(2)]
    first = plans[0].plan(HOST)
    plans[0].close()
    again = plans[1].plan(HOST)
    plans[1].close()
    assert again.stand_in == first.stand_in  # the kept one: 8 random hex digits
    assert claimed_by_me(registry, first.spec.ports["http"])
    another = RunStart(RunSettings(config=str(config)), {**environ, "USER": "another"}, None, None, registry)
    assert another.plan(HOST).stand_in != first.stand_in  # each user's own
    another.close()


def test_a_port_every_plan_chose_another_process_claims_ends_the_start_naming_it(tmp_path, claims, caplog):  # noqa: F811
    """The child's plan first, then seven more made here, each refused; an early start of
    the child's plan is given up at the first refusal."""
    registry, claimed_by_another = claims
    config, loads = config_in(tmp_path)
    config.write_text(config.read_text().replace("}}')", "}} {{thermos.ports[admin]}}')"))
    other = claimed_by_another("1+")
    early = planned_ahead_early(tmp_path)
    with pytest.raises(ConfigError) as raised, caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        started(RunSettings(config=str(config)), forked_ahead(config), early, registry=registry)
    said = str(raised.value)
    assert said.startswith(f"'{config}': job local/me/test/web: no free loopback port could be chosen for admin, "
                           "http: each one offered, 8 times, was claimed by another process on this host (the last, ")
    assert f", by pid {other.pid} (" in said and said.endswith(")") and len(loads.read_text().split()) == 8
    assert lines(caplog, "early_start_given_up") == [
        'early_start_given_up reason="early start given up: another `stoker run` claims a port its plan chose; '
        'its runs were killed and the task starts as without it"']


def test_a_plan_not_kept_says_why_and_what_follows_in_one_line(tmp_path, caplog):
    config, _ = config_in(tmp_path)
    with caplog.at_level(logging.WARNING, logger="executor.local.runstart"):
        started(RunSettings(config=str(config)), None)  # STOKER_PLAN_CACHE=off: nothing said
        start = RunStart(RunSettings(config=str(config)), {**ENVIRON, "STOKER_PLAN_CACHE": "plans"}, None, None)
        start.plan(HOST)
        start.close()
    (line,) = lines(caplog, "plan_not_kept")
    assert line.startswith('plan_not_kept reason="STOKER_PLAN_CACHE (plans) is not an absolute path')
    assert line.endswith(' consequence="each run plans the job again (STOKER_PLAN_CACHE names a place)"')
    assert caplog.records[0].levelno == logging.WARNING


def test_a_code_bundle_found_damaged_is_said_once_as_the_start_ends(importer_cache, caplog):  # noqa: F811
    codebundle.found_damaged("/cache/nodoc/run.codebundle")
    with caplog.at_level(logging.DEBUG, logger="executor.local.runstart"):
        forget_listings()
        forget_listings()
    assert lines(caplog, "code_bundle_damaged") == [
        'code_bundle_damaged file=/cache/nodoc/run.codebundle consequence="its modules were loaded each from its '
        'own file; `python -m executor.codecache run` writes it again"']
    assert caplog.records[0].levelno == logging.DEBUG
