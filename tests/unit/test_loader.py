"""Loading `.aurora` and JSON files, selecting jobs, and parity with the Aurora client (--bind,
include, the whole namespace, unbound refs). The errors a running config raises are in
test_loader_errors.py, the validation's messages in test_loader_validation.py."""
from __future__ import annotations

import json
import sys

import pytest

from config.errors import ConfigError
from config.loader import check_bound, job_key, load_job, load_jobs, select_job
from config.schema import Job
from tests.support.configs import EXAMPLES, error_of, job, job_text, plain, process, write_config

# ---- loading ----


def test_hello_world_example_loads_as_a_service():
    hello = plain(load_job(next(p for p in EXAMPLES if p.name == "hello_world.aurora")))
    assert job_key(load_job(EXAMPLES[0])).count("/") == 3
    assert (hello["cluster"], hello["role"], hello["environment"], hello["name"]) == \
        ("devcluster", "www-data", "prod", "hello")
    assert hello["service"] is True
    assert [p["name"] for p in hello["task"]["processes"]] == ["hello"]
    assert "echo hello world" in hello["task"]["processes"][0]["cmdline"]
    assert hello["task"]["resources"]["ram"] == 128 * 1024 * 1024


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads_and_validates(path):
    loaded = load_job(path)
    assert isinstance(loaded, Job)


def test_load_expands_job_names_and_binds_but_keeps_thermos_and_mesos_refs(tmp_path):
    path = write_config(tmp_path, """
        profile = Struct  # the schema's pystachio names are in scope
        web = Process(name='web', cmdline='serve {{role}} {{thermos.ports[http]}} {{mesos.instance}} {{greeting}}')
        jobs = [Job(task=Task(processes=[web], resources=Resources(cpu=1, ram=1*MB, disk=1*MB)), cluster='c',
                    role='www', environment='e').bind(greeting='hi')]
    """)
    cmdline = plain(load_job(path))["task"]["processes"][0]["cmdline"]
    assert cmdline == "serve www {{thermos.ports[http]}} {{mesos.instance}} hi"


def test_angle_refs_are_rewritten_when_loading(tmp_path):
    path = write_config(tmp_path, job_text(
        "[Process(name='web', cmdline='serve <<thermos.ports[http]>> as <<role>>; cat <<EOF\\nx\\nEOF')]"))
    cmdline = plain(load_job(path))["task"]["processes"][0]["cmdline"]
    assert cmdline == "serve {{thermos.ports[http]}} as r; cat <<EOF\nx\nEOF"


def test_include_is_relative_to_the_including_file_and_nests(tmp_path):
    write_config(tmp_path, "include('more.aurora')\nweb = Process(name='web', cmdline=cmd)\n",
                 "lib/base.aurora")
    write_config(tmp_path, "cmd = 'echo included'\n", "lib/more.aurora")
    path = write_config(tmp_path, "include('lib/base.aurora')\n" + job_text("[web]"))
    assert plain(load_job(path))["task"]["processes"][0]["cmdline"] == "echo included"


def test_each_load_gets_a_fresh_namespace(tmp_path):
    first = write_config(tmp_path, "leak = 'x'\n" + job_text(), "first.aurora")
    second = write_config(tmp_path, job_text("[Process(name=leak, cmdline='c')]"), "second.aurora")
    load_job(first)
    message = error_of(second)
    assert "second.aurora:1: NameError: name 'leak' is not defined" in message


def test_json_file_with_a_jobs_list_or_a_single_job(tmp_path):
    one = plain(job(process("web")))
    listed = write_config(tmp_path, json.dumps({"jobs": [one, {**one, "environment": "f"}]}), "jobs.json")
    single = write_config(tmp_path, json.dumps(one), "single.json")
    assert [job_key(j) for j in load_jobs(listed)] == ["c/r/e/web", "c/r/f/web"]
    assert plain(load_job(single)) == one
    assert plain(load_job(listed, "c/r/f/web"))["environment"] == "f"


def test_json_file_errors_name_the_file_and_field(tmp_path):
    bad = write_config(tmp_path, '{"jobs": [{"task": 1}]}', "bad.json")
    message = error_of(bad)
    assert "bad.json" in message and "jobs[0].task must be a Task" in message
    broken = write_config(tmp_path, '{"jobs": [\n', "broken.json")
    assert "broken.json:2: not valid JSON" in error_of(broken)


# Deep enough for the walk to recurse past Python's limit, shallow enough for json.loads to
# read: on 3.11 the walk takes two frames a level (a comprehension's own; 3.12 inlines it,
# PEP 709) and json.loads stops short of 1,000 levels less the frames below the test (700,
# not 900: mutmut's runner has more of those than pytest's); from 3.12 on it reads 1,200.
DEEP = 700 if sys.version_info < (3, 12) else 1200


@pytest.mark.parametrize("inner", [
    pytest.param('{"a":' * DEEP + "1" + "}" * DEEP, id="maps"),
    pytest.param("[" * (DEEP + 50) + "]" * (DEEP + 50), id="lists"),
])
def test_a_json_file_nested_too_deeply_is_one_error(tmp_path, inner):
    # json.loads reads it; turning it into a job recursed past Python's limit (a traceback).
    path = tmp_path / "deep.json"
    path.write_text('{"jobs": [{"name": "web", "metadata": ' + inner + "}]}")
    assert error_of(path) == f"'{path}': jobs[0] is nested too deeply to read"


def test_a_json_file_nested_too_deeply_to_parse_is_one_error_without_a_line(tmp_path):
    # json.loads itself recursed past Python's limit: it gives no line (was `deep.json:?: not
    # valid JSON: maximum recursion depth exceeded while decoding a JSON array ...`)
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    assert error_of(path) == f"{path}: it is nested too deeply to read"


def test_a_json_number_too_long_to_read_is_an_error_without_a_line(tmp_path):
    # a ValueError of json.loads with no line (Python's limit on an integer's digits)
    text = '{"jobs": [{"name": "web", "instances": ' + "1" * 5000 + "}]}"
    with pytest.raises(ValueError) as why:
        json.loads(text)
    path = write_config(tmp_path, text, "long.json")
    assert error_of(path) == f"{path}: not valid JSON: {why.value}"


def test_a_json_jobs_entry_that_is_not_a_list_is_one_error(tmp_path):
    path = write_config(tmp_path, '{"jobs": {"web": {}}}', "jobs.json")
    assert error_of(path) == f"'{path}': \"jobs\" must be a list of job objects"


def test_a_json_job_s_problems_are_each_one_as_an_aurora_job_s_are(tmp_path):
    path = write_config(tmp_path, '{"jobs": [{"name": "web", "role": "r"}]}', "jobs.json")
    with pytest.raises(ConfigError) as info:
        load_job(path)
    missing = tuple(f"jobs[0].{field} is required but missing" for field in ("cluster", "environment", "task"))
    assert info.value.problems == missing
    assert str(info.value) == f"'{path}': invalid jobs[0]: 3 problems: " + "; ".join(missing)


# ---- selecting ----

TWO_JOBS = """
    t = SimpleTask('hello', 'echo hi')
    jobs = [Job(task=t, cluster='c', role='r', environment='prod'),
            Job(task=t, cluster='c', role='r', environment='test')]
"""


def test_select_by_key(tmp_path):
    path = write_config(tmp_path, TWO_JOBS)
    assert plain(load_job(path, "c/r/test/hello"))["environment"] == "test"


def test_multiple_jobs_need_a_key_and_the_message_lists_them(tmp_path):
    path = write_config(tmp_path, TWO_JOBS)
    assert error_of(path) == (f"'{path}': defines 2 jobs, so a job key is needed; one of: "
                              "c/r/prod/hello, c/r/test/hello")


def test_unknown_key_lists_the_keys_that_exist(tmp_path):
    path = write_config(tmp_path, TWO_JOBS)
    assert error_of(path, "c/r/dev/hello") == (
        f"'{path}': no job c/r/dev/hello; the file defines: c/r/prod/hello, c/r/test/hello")


MANY_JOBS = """
    t = SimpleTask('hello', 'echo hi')
    jobs = [Job(task=t, cluster='c', role='r', environment='e', name='n%d' % i) for i in range(1000)]
"""


@pytest.mark.parametrize("jobkey, start", [(None, "defines 1000 jobs, so a job key is needed; one of: "),
                                           ("c/r/e/zz", "no job c/r/e/zz; the file defines: ")])
def test_a_file_of_1000_jobs_lists_the_first_20_keys_not_all(tmp_path, jobkey, start):
    """Every key was listed: one error line of 129 KB for 10,000 (12 KB for these 1,000)."""
    path = write_config(tmp_path, MANY_JOBS)
    shown = ", ".join(f"c/r/e/n{i}" for i in range(20))
    assert error_of(path, jobkey) == f"'{path}': {start}{shown}, ... (1000 jobs in all)"


def test_a_key_with_aurora_s_instance_suffix_points_at_instance(tmp_path):
    path = write_config(tmp_path, TWO_JOBS)
    assert error_of(path, "c/r/prod/hello/2") == (
        "job key 'c/r/prod/hello/2' is not cluster/role/environment/name (an instance, Aurora's "
        "`/N` after the key, is `stoker run --instance N`)")


@pytest.mark.parametrize("key", ["hello", "c/r/hello", "c//e/hello", "c/r/e/n/x"])
def test_malformed_key(tmp_path, key):
    path = write_config(tmp_path, TWO_JOBS)
    assert f"job key {key!r} is not cluster/role/environment/name" in error_of(path, key)


def test_duplicate_keys_are_reported():
    with pytest.raises(ConfigError, match="2 jobs have the key c/r/e/web"):
        select_job([job(), job()], "c/r/e/web", "x.aurora")


@pytest.mark.timeout(10)
def test_duplicate_keys_are_reported_where_a_key_is_asked_for():
    """`jobs = [job] * 2` listed `one of: c/r/e/web, c/r/e/web`, and either choice was then refused."""
    with pytest.raises(ConfigError) as caught:
        select_job([job(), job(), job()], None, "x.aurora")
    assert str(caught.value) == ("'x.aurora': defines 3 jobs, so a job key is needed; one of: c/r/e/web, "
                                 "c/r/e/web, c/r/e/web (3 jobs have the key c/r/e/web; keys must be unique)")


# ---- parity with the Aurora client: --bind, include, the whole namespace, unbound refs ----

DOCKER_BOUND = """
    p = Process(name='p', cmdline='echo {{stop_file}} {{profile.tag}}')
    jobs = [Job(cluster='c', role='r', environment='{{env}}', name='j',
                task=Task(processes=[p], resources=Resources(cpu=1, ram=MB, disk=MB)),
                container=Docker(image='{{docker.image[library/python][3.11-slim]}}'),
                metadata=[Metadata(key='k', value='{{meta}}')])]
"""


def test_bind_values_reach_every_field_before_the_job_is_picked(tmp_path):
    path = write_config(tmp_path, DOCKER_BOUND)
    bindings = (("stop_file", "/tmp/stop"), ("profile.tag", "v1"), ("env", "prod"), ("meta", "m"),
                ("docker.image[library/python][3.11-slim]", "python@sha256:abc"))
    loaded = plain(load_job(path, "c/r/prod/j", bindings))
    assert loaded["task"]["processes"][0]["cmdline"] == "echo /tmp/stop v1"
    assert loaded["container"] == {"image": "python@sha256:abc", "parameters": []}
    assert loaded["metadata"] == [{"key": "k", "value": "m"}]
    check_bound(load_job(path, None, bindings), str(path))


def test_check_bound_names_what_the_aurora_client_would_refuse_container_and_metadata_included(tmp_path):
    path = write_config(tmp_path, DOCKER_BOUND)
    with pytest.raises(ConfigError) as caught:
        check_bound(load_job(path, None, (("env", "prod"),)), str(path))
    assert str(caught.value) == (
        f"{path}: job c/r/prod/j: Config contains unbound variables: {{{{stop_file}}}} {{{{profile.tag}}}} "
        "{{meta}} {{docker.image[library/python][3.11-slim]}} (bind them in the file, or with --bind NAME=VALUE)")


def test_check_bound_leaves_the_runtime_references_alone(tmp_path):
    text = job_text("[Process(name='w_{{mesos.instance}}', cmdline='echo {{thermos.ports[http]}} "
                    "{{thermos.task_id}} {{thermos.user}} {{mesos.hostname}}')]", extra=", name='w'")
    check_bound(load_job(write_config(tmp_path, text)), "x")


def test_include_takes_any_file_name_relative_to_the_including_file(tmp_path):
    write_config(tmp_path, "include('../common/base.py')\n", "lib/nested/chain.txt")
    write_config(tmp_path, "cmd = 'echo from base.py'\n", "lib/common/base.py")
    path = write_config(tmp_path, "include('lib/nested/chain.txt')\n"
                        + job_text("[Process(name='web', cmdline=cmd)]"), "top.config")
    assert plain(load_job(path))["task"]["processes"][0]["cmdline"] == "echo from base.py"


def test_a_config_may_use_aurora_s_names(tmp_path):
    text = """
        vol = Volume(container_path='/c', host_path='/h', mode=Mode('RO'))
        opts = java_options('server', Xmx='1g') + ' ' + python_options(verbose=1)
        p = Process(name='p', cmdline='java %s' % opts)
        t = Tasks.combine(Task(processes=[p], resources=Resources(cpu=1, ram=MB, disk=MB)),
                          Task(processes=[Process(name='q', cmdline='true')], finalization_wait=45,
                               constraints=Processes.order('q')))
        hc = HealthCheckConfig(health_checker=DefaultHealthChecker)
        assert AURORA_EXECUTOR_NAME == 'AuroraExecutor'
        jobs = [Job(cluster='c', role='r', environment='e', name='j', task=t, health_check_config=hc,
                    container=Mesos(image=DockerImage(name='debian', tag='12'), volumes=[vol]))]
    """
    loaded = plain(load_job(write_config(tmp_path, text)))
    assert loaded["task"]["processes"][0]["cmdline"] == "java -server -Xmx 1g --verbose 1"
    assert loaded["task"]["finalization_wait"] == 45
    assert loaded["container"]["volumes"] == [{"container_path": "/c", "host_path": "/h", "mode": "RO"}]


def test_a_process_cmdline_with_a_nul_is_refused_at_load(tmp_path):
    # Before: accepted at load, and every run of the process failed at spawn
    # ("embedded null byte"), until the task failed.
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo a\\0b')]"))
    assert ("job.task.processes[0].cmdline = 'echo a\\x00b' (process 'web') contains a NUL "
            "character, which no command can hold") in error_of(path)
