"""`config.plan`: a job planned once, bound with a stand-in task id, gives every attempt the
spec a fresh binding with that attempt's id would give."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.bind import bind
from config.errors import ConfigError
from config.loader import load_job
from config.plan import JobPlan, open_problem, plan_job, replace_text, task_id
from config.spec import CheckKind, JobSpec, LoggerSpec, LogMode, ProcessSpec, TaskSpec
from tests.support.configs import job_text, write_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aurora"))
TASK_ID_JOB = """
jobs = [Job(cluster='c', role='r', environment='e', name='idjob',
            task=Task(processes=[Process(name='p_{{thermos.task_id}}', cmdline='echo {{thermos.task_id}} {{thermos.ports[http]}}'),
                                 Process(name='health', cmdline='serve {{thermos.ports[health]}}')],
                      resources=Resources(cpu=1, ram=1*MB, disk=1*MB)),
            health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig(
                shell=ShellHealthChecker(shell_command='check {{thermos.task_id}}'))))]
"""


def numbered(names, fixed):
    """Ports 20000, 20001, ... for the names not fixed (what `allocate` would give)."""
    ports = dict(fixed)
    for i, name in enumerate(n for n in names if n not in fixed):
        ports[name] = 20000 + i
    return ports


def plan(path, **kw) -> JobPlan:
    args = dict(instance=2, fixed_ports={}, hostname="host", user="me", allocate=numbered)
    return plan_job(str(path), None, (), **{**args, **kw})


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_attempt_gets_what_a_fresh_binding_with_its_task_id_gives(path):
    planned = plan(path)
    fresh = task_id(planned.name, 2)
    expected = bind(load_job(str(path)), instance=2, ports=planned.ports, task_id=fresh,
                    hostname="host", user="me")
    assert planned.spec_for(fresh) == expected
    assert planned.spec_for(fresh) != planned.spec_for(task_id(planned.name, 2))


def test_the_task_id_lands_everywhere_a_template_put_it(tmp_path):
    config = tmp_path / "job.aurora"
    config.write_text(TASK_ID_JOB)
    planned = plan(config)
    spec = planned.spec_for("idjob-2-0123abcd")
    assert spec.task_id == "idjob-2-0123abcd"
    assert [p.name for p in spec.task.processes] == ["p_idjob-2-0123abcd", "health"]
    assert spec.task.processes[0].cmdline == "echo idjob-2-0123abcd 20001"
    assert spec.health.kind is CheckKind.SHELL and spec.health.shell_command == "check idjob-2-0123abcd"
    assert planned.stand_in not in repr(spec)
    # what holds no task id is shared, not rebuilt (an attempt of 100 processes costs little)
    assert spec.task.processes[1] is planned.spec.task.processes[1]
    assert spec.task.processes[0] is not planned.spec.task.processes[0]
    assert planned.allocated == ("health", "http") and planned.ports == {"health": 20000, "http": 20001}


def test_ports_given_on_the_command_line_are_not_allocated(tmp_path):
    config = tmp_path / "job.aurora"
    config.write_text(TASK_ID_JOB)
    planned = plan(config, fixed_ports={"http": 8080})
    assert planned.allocated == ("health",) and planned.ports == {"health": 20000, "http": 8080}
    with pytest.raises(ConfigError, match=r"--port htp=1: job c/r/e/idjob has no port named 'htp' \(did you mean"):
        plan(config, fixed_ports={"htp": 1})


def test_the_text_of_every_file_read_is_reported_and_judged(tmp_path):
    (tmp_path / "lib.aurora").write_text("procs = [Process(name='a', cmdline='x')]\r\n")
    config = tmp_path / "job.aurora"
    config.write_text("include('lib.aurora')\njobs = [Job(cluster='c', role='r', environment='e', "
                      "name='n', task=Task(processes=procs, resources=Resources(cpu=1, ram=1*MB, disk=1*MB)))]\n")
    sources: dict[str, str] = {}
    plan(config, sources=sources)
    assert sources == {str(config): config.read_text(),  # as run: universal newlines
                       str(tmp_path / "lib.aurora"): "procs = [Process(name='a', cmdline='x')]\n"}
    assert open_problem(sources) is None
    assert open_problem({**sources, "x.aurora": "import os\n"}) == "x.aurora:1: imports a module"
    assert open_problem({"j.json": '{"jobs": [], "service": false}'}) is None  # data, not code


def test_a_reference_that_is_never_bound_names_the_file(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo {{thermos.nope}}')]"))
    with pytest.raises(ConfigError) as info:
        plan(path)
    assert str(info.value) == f"'{path}': job c/r/e/web: unbound template references: {{{{thermos.nope}}}}"
    assert info.value.unbound == ("{{thermos.nope}}",)  # still the BindError it was


@pytest.mark.parametrize("extra, instance, notes, warnings", [
    ("", 0, (), ()),
    (", instances=3", 2, ("job c/r/e/web has instances = 3; this run is instance 2 alone (one "
                          "`stoker run --instance N` per instance)",), ()),
    (", instances=3", 3, (), ("job c/r/e/web has instances 0 to 2: Aurora's scheduler would "
                              "run no instance 3; running it here anyway",)),
    ("", 2, (), ("job c/r/e/web has instances = 1: Aurora's scheduler would run no instance 2; "
                 "running it here anyway",)),
    (", cron_schedule='0 3 * * *'", 0, ("job c/r/e/web has cron_schedule = '0 3 * * *'; stoker run "
                                        "has no cron: it runs the job once, now, not on that schedule",), ()),
])
def test_what_the_scheduler_would_do_and_stoker_run_does_not_is_said(tmp_path, extra, instance, notes, warnings):
    """`stoker run` runs one instance and has no cron: a job with other instances or a cron
    schedule gets a sentence saying so, and an instance the job does not have a warning (a
    `run_warning` event, as every `stoker run: warning:` line), printed before the task
    starts; a plain job none."""
    path = write_config(tmp_path, job_text(extra=f", name='web'{extra}"))
    planned = plan(path, instance=instance)
    assert (planned.notes, planned.warnings) == (notes, warnings)


UNUSED = ") is not used: its processes run on this host, not in the image"


@pytest.mark.parametrize("container, warnings", [
    ("", ()),
    (", container=Mesos()", ()),  # the agent's own filesystem, as here
    (", container=Docker(image='python:3.11')", ("the job's container (Docker image python:3.11" + UNUSED,)),
    (", container=Container(docker=Docker(image='python:3.11'))",
     ("the job's container (Docker image python:3.11" + UNUSED,)),
    (", container=Mesos(image=DockerImage(name='library/debian', tag='bookworm'))",
     ("the job's container (Mesos, Docker image library/debian:bookworm" + UNUSED,)),
    (", container=Mesos(image=AppcImage(name='ex\\nample', image_id='sha512-1'))",
     ("the job's container (Mesos, appc image ex\\nample (id sha512-1)" + UNUSED,)),
])
def test_a_container_that_stoker_run_does_not_use_is_a_warning(tmp_path, container, warnings):
    """`stoker run` runs the processes on this host whatever the job's container: a
    container with an image gets a warning naming its kind and image (escaped: one line)."""
    path = write_config(tmp_path, job_text(extra=f", name='web'{container}"))
    assert plan(path, instance=0).warnings == warnings


VOLUMES = "the job's container volumes are not mounted (its processes see this host's paths): "
PARAMETERS = "the job's Docker parameters are ignored (there is no docker run here): "
DATA = "Volume(container_path='/data', host_path='/srv/data', mode=VolumeMode('RO'))"


@pytest.mark.parametrize("container, warnings", [
    (f", container=Mesos(volumes=[{DATA}, Volume(container_path='/c\\n', host_path='/tmp', mode=Mode('RW'))])",
     (VOLUMES + "/data (host /srv/data, RO), /c\\n (host /tmp, RW)",)),
    (f", container=Mesos(image=DockerImage(name='debian', tag='12'), volumes=[{DATA}])",
     ("the job's container (Mesos, Docker image debian:12" + UNUSED,)),  # the image line says it all
    (", container=Docker(image='py', parameters=[Parameter(name='env', value='A=b'), "
     "Parameter(name='cap-add', value='NET_ADMIN')])",
     ("the job's container (Docker image py" + UNUSED, PARAMETERS + "env=A=b, cap-add=NET_ADMIN")),
    (", container=Container(docker=Docker(image='py', parameters=[Parameter(name='rm', value='true')]))",
     ("the job's container (Docker image py" + UNUSED, PARAMETERS + "rm=true")),
])
def test_container_volumes_and_docker_parameters_stoker_run_ignores_are_warnings(tmp_path, container, warnings):
    """A Mesos container's volumes are not mounted under `stoker run` and Docker's
    `parameters` go to no `docker run`: one more line each, naming them (escaped: one line);
    volumes beside an image are covered by the image's line."""
    path = write_config(tmp_path, job_text(extra=f", name='web'{container}"))
    assert plan(path, instance=0).warnings == warnings


def test_task_ids_have_the_shape_of_aurora_ones():
    assert re.fullmatch(r"web-3-[0-9a-f]{8}", task_id("web", 3))
    assert task_id("web", 3) != task_id("web", 3)


def test_replace_text_rebuilds_containers_and_keeps_the_rest():
    spec = JobSpec(role="r", environment="e", cluster="c", name="n", instance=0, task_id="OLD",
                   task=TaskSpec(name="t", processes=(ProcessSpec(name="p", cmdline="a OLD b",
                                                                  logger=LoggerSpec(mode=LogMode.ROTATE)),),
                                 constraints=(("p", "OLD"),)),
                   ports={"http": 1}, warnings=("OLD!",))
    new = replace_text(spec, "OLD", "NEW")
    assert (new.task_id, new.task.processes[0].cmdline, new.task.constraints, new.warnings) == \
        ("NEW", "a NEW b", (("p", "NEW"),), ("NEW!",))
    assert new.task.processes[0].logger.mode is LogMode.ROTATE and new.ports == {"http": 1}
    assert replace_text([("OLD", 1.5, None, True)], "OLD", "x") == [("x", 1.5, None, True)]
    with pytest.raises(TypeError, match="cannot rebuild an object"):
        replace_text(object(), "OLD", "x")


TWO_JOBS = """
procs = [Process(name='p', cmdline='echo {{greeting}}')]
jobs = [Job(cluster='c', role='r', environment='e', name=name, task=Task(processes=procs,
            resources=Resources(cpu=1, ram=1*MB, disk=1*MB))) for name in ('a', 'b')]
"""


def test_the_job_named_by_its_key_is_planned_with_the_values_bound(tmp_path):
    path = write_config(tmp_path, TWO_JOBS)
    planned = plan_job(str(path), "c/r/e/b", (("greeting", "hi"),), instance=2, fixed_ports={},
                       hostname="host", user="me", allocate=numbered)
    assert (planned.name, planned.spec.task.processes[0].cmdline) == ("b", "echo hi")
    assert re.fullmatch(r"b-2-[0-9a-f]{8}", planned.stand_in), planned.stand_in
    with pytest.raises(ConfigError) as info:
        plan_job(str(path), "c/r/e/a", (), instance=0, fixed_ports={}, hostname="h", user="u", allocate=numbered)
    assert str(info.value) == (f"'{path}': job c/r/e/a: Config contains unbound variables: {{{{greeting}}}} "
                               "(bind them in the file, or with --bind NAME=VALUE)")


def test_a_port_fixed_on_the_command_line_may_be_any_the_job_names_even_an_announced_alias(tmp_path):
    """`--port NAME=N` names a port the processes use, one the announcer's portmap maps
    (`aurora`), or one it maps to (`http`) though no process names it."""
    path = write_config(tmp_path, job_text(extra=", name='web', announce=Announcer(primary_port='http')"))
    assert plan(path, fixed_ports={"http": 8080}).ports == {"aurora": 8080, "http": 8080}
    assert plan(path, fixed_ports={"aurora": 8081}).ports["aurora"] == 8081
    with pytest.raises(ConfigError) as info:
        plan(path, fixed_ports={"zzz": 1})
    assert str(info.value) == "--port zzz=1: job c/r/e/web has no port named 'zzz'; its ports: aurora, http"
    with pytest.raises(ConfigError) as info:
        plan(write_config(tmp_path, job_text(extra=", name='web'"), "plain.aurora"), fixed_ports={"http": 1})
    assert str(info.value) == "--port http=1: job c/r/e/web has no port named 'http'; it uses no ports"


def test_no_free_port_is_a_config_error_naming_the_ports_wanted(tmp_path):
    path = write_config(tmp_path, TASK_ID_JOB)

    def none_free(names, fixed):
        raise OSError(98, "Address already in use")

    with pytest.raises(ConfigError) as info:
        plan(path, allocate=none_free, fixed_ports={"http": 8080})
    assert str(info.value) == (f"'{path}': job c/r/e/idjob: no free loopback port could be chosen for health: "
                               "Address already in use")
    with pytest.raises(ConfigError, match="could be chosen for health, http: Address already in use$"):
        plan(path, allocate=none_free)


@pytest.mark.parametrize("instance", [0, 1])
def test_each_instance_of_two_is_said_to_run_alone(tmp_path, instance):
    path = write_config(tmp_path, job_text(extra=", name='web', instances=2"))
    planned = plan(path, instance=instance)
    assert planned.notes == (f"job c/r/e/web has instances = 2; this run is instance {instance} alone "
                             "(one `stoker run --instance N` per instance)",)
    assert plan(path, instance=2).warnings == ("job c/r/e/web has instances 0 to 1: Aurora's scheduler would "
                                               "run no instance 2; running it here anyway",)


def test_a_json_document_is_data_even_after_blank_lines_and_code_that_only_looks_like_it_is_not():
    assert open_problem({"j.json": '\n  {"jobs": []}'}) is None
    assert open_problem({"x.aurora": "{1: __import__('os')}\n"}) == "x.aurora:1: uses the name __import__"


def test_replace_text_rebuilds_a_mapping_whose_values_change_and_keeps_whatever_holds_no_text():
    assert replace_text({"k": "OLD", "OLD": 1}, "OLD", "x") == {"k": "x", "x": 1}
    assert replace_text({"k": ("OLD",)}, "OLD", "x") == {"k": ("x",)}
    kept = {"k": ("a", 1)}
    assert replace_text(kept, "OLD", "x") is kept
    assert replace_text(kept["k"], "OLD", "x") is kept["k"]
