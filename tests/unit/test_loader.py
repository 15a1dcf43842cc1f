"""Loading `.aurora` and JSON files, selecting jobs, and every validation error's message."""
from __future__ import annotations

import json
import sys

import pytest

from config.errors import ConfigError
from config.loader import check_bound, job_key, load_job, load_jobs, select_job, validate_job
from config.schema import Job
from tests.support.configs import EXAMPLES, job, job_text, process, write_config


def plain(obj):
    return json.loads(obj.json_dumps())


def error_of(path, jobkey=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_job(path, jobkey)
    return str(info.value)


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
        jobs = [Job(task=Task(processes=[web], resources=Resources(cpu=1, ram=1, disk=1)), cluster='c',
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
    assert error_of(path) == f"{path}: jobs[0] is nested too deeply to read"


# ---- errors while running the file ----


def test_syntax_error_names_file_and_line(tmp_path):
    path = write_config(tmp_path, "x = 1\njobs = [\n  Job(\n", "syntax.aurora")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert message.endswith("syntax.aurora:3: syntax error: '(' was never closed")


def test_exception_while_running_names_file_line_and_exception(tmp_path):
    path = write_config(tmp_path, "x = 1\ny = {}['nope']\n", "raises.aurora")
    assert error_of(path) == f"{path}:2: KeyError: 'nope'"


# Each row: config code, then the message after `FILE:LINE: ` (the failing code is on line 2).
SCHEMA_ERRORS = {
    "an unknown field names the struct and the closest field": (
        "p = Process(name='a', cmdlin='x')", "Process has no field 'cmdlin'; did you mean 'cmdline'?"),
    "an unknown field with nothing close lists the fields": (
        "r = Resources(cpu=1, bananas=3)",
        "Resources has no field 'bananas'; the known names are cpu, disk, gpu, ram"),
    "an unknown field of a Job says Job": (
        "j = Job(nmae='x')", "Job has no field 'nmae'; did you mean 'name'?"),
    "an unknown field in a dict given for a struct": (
        "t = Task(processes=[{'name': 'a', 'cmdlin': 'x'}])",
        "Process has no field 'cmdlin'; did you mean 'cmdline'?"),
    "a struct where a list belongs, on one line": (
        "t = Task(processes=Process(name='a', cmdline='x'))",
        "Task.processes must be a list of Process, not a Process"),
    "a list item that is no struct": (
        "t = Task(processes=['x'])", "Task.processes must be a list of Process; 'x' is not a Process"),
    "None where a struct belongs": (
        "t = Task(resources=None)", "Task.resources must be a Resources, not None"),
    "another struct where a struct belongs (pystachio cannot even render this one)": (
        "t = Task(resources=Process(name='a', cmdline='x', max_failures='x'))",
        "Task.resources must be a Resources, not a Process"),
    "a value outside an enum": (
        "l = Logger(destination='filez')",
        "Logger.destination must be one of file, console, both, none, not 'filez'"),
    "a map given a number": (
        "a = Announcer(portmap=3)", "Announcer.portmap must be a map from String to String, not 3"),
    "a struct called with a positional non-mapping": (
        "p = Process('web')", "Process(...) takes field = value arguments (or a dict), not 'web'"),
}


@pytest.mark.parametrize("code, message", SCHEMA_ERRORS.values(), ids=SCHEMA_ERRORS.keys())
def test_schema_errors_name_the_struct_and_field_in_one_line(tmp_path, code, message):
    path = write_config(tmp_path, f"x = 1\n{code}\n" + job_text())
    assert error_of(path) == f"{path}:2: {message}"


def test_an_error_inside_a_function_names_the_failing_line_without_fake_frames(tmp_path):
    path = write_config(tmp_path, """
        def web(n):
            return Process(name='web', cmdlin=n)
        procs = [web(str(i)) for i in range(3)]
    """)
    assert error_of(path) == f"{path}:2: Process has no field 'cmdlin'; did you mean 'cmdline'?"


def test_an_error_in_a_comprehension_names_its_line(tmp_path):
    path = write_config(tmp_path, "names = ['a', 'b']\nprocs = [Process(name=n, cmdline=1 / 0) for n in names]\n")
    assert error_of(path) == f"{path}:2: ZeroDivisionError: division by zero"


def test_runaway_recursion_is_one_short_line(tmp_path):
    path = write_config(tmp_path, "x = 1\ndef f(): return f()\nf()\n")
    message = error_of(path)
    assert message == (f"{path}:2: RecursionError: the config code recursed too deeply (a function "
                       "that calls itself without end?)")


def test_a_function_from_an_included_file_fails_at_its_own_line(tmp_path):
    write_config(tmp_path, "def make():\n    return Process(nmae='x')\n", "lib.aurora")
    path = write_config(tmp_path, "include('lib.aurora')\np = make()\n", "top.aurora")
    assert error_of(path) == f"{tmp_path}/lib.aurora:2: Process has no field 'nmae'; did you mean 'name'?"


@pytest.mark.parametrize("resources, message", [
    ("", "job.task.resources is not set; a task needs resources = Resources(cpu = 1.0, ram = 128*MB, "
         "disk = 128*MB) (Aurora requires them)"),
    (", resources=Resources(cpu=-1, ram=1*MB, disk=1*MB)", "job.task.resources.cpu = -1.0 must be more than 0"),
    (", resources=Resources(cpu=1, ram=0, disk=1*MB)", "job.task.resources.ram = 0 must be more than 0"),
    (", resources=Resources(cpu=1, ram=1*MB, disk=-5)", "job.task.resources.disk = -5 must be more than 0"),
])
def test_a_task_needs_positive_resources_as_in_aurora(tmp_path, resources, message):
    path = write_config(tmp_path, "jobs = [Job(task=Task(processes=[Process(name='web', cmdline='x')]"
                                  f"{resources}), cluster='c', role='r', environment='e')]\n")
    assert error_of(path) == f"{path}: job c/r/e/web: {message}"


def test_arguments_in_aurora_order_get_a_hint(tmp_path):
    path = write_config(tmp_path, job_text())
    message = error_of("c/r/e/web", str(path))
    assert message == ("c/r/e/web: cannot read the config file: No such file or directory; the config "
                       f"file comes first, then the job key: did you mean {path} c/r/e/web?")


def test_runaway_recursion_and_exit_become_config_errors(tmp_path):
    recursion = write_config(tmp_path, "def f():\n    return f()\nf()\n", "recursion.aurora")
    assert "recursion.aurora:2: RecursionError" in error_of(recursion)
    exits = write_config(tmp_path, "import sys\nsys.exit(3)\n", "exits.aurora")
    assert "exits.aurora:2: SystemExit: 3" in error_of(exits)


@pytest.mark.parametrize("code, what", [
    ("raise GeneratorExit", "GeneratorExit"),
    ("raise BaseException('odd')", "BaseException: odd"),
    ("raise SystemExit", "SystemExit"),
])
def test_anything_but_a_ctrl_c_the_config_raises_is_a_config_error(tmp_path, code, what):
    path = write_config(tmp_path, f"x = 1\n{code}\n")
    assert error_of(path) == f"{path}:2: {what}"


def test_a_keyboard_interrupt_stays_a_ctrl_c(tmp_path):
    # A Ctrl-C while the config runs (`stoker inspect` runs it in its own process) exits 130.
    path = write_config(tmp_path, "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_job(path)


def test_error_in_included_file_names_it_and_the_include_line(tmp_path):
    write_config(tmp_path, "y = 2\nz = undefined_name\n", "sub/bad.aurora")
    path = write_config(tmp_path, "# top\ninclude('sub/bad.aurora')\n", "top.aurora")
    message = error_of(path)
    assert message == (f"{tmp_path}/sub/bad.aurora:2: NameError: name 'undefined_name' is not "
                       f"defined (included from {path}:2)")


def test_a_file_that_includes_itself_names_each_include_line_once(tmp_path):
    path = write_config(tmp_path, "include('top.aurora')\n", "top.aurora")
    assert error_of(path) == (f"{path}:1: RecursionError: the config code recursed too deeply (a "
                              f"function that calls itself without end?) (included from {path}:1)")
    other = write_config(tmp_path, "x = 1\ninclude('a.aurora')\n", "b.aurora")
    first = write_config(tmp_path, "include('b.aurora')\n", "a.aurora")
    assert error_of(first).endswith(f"(included from {other}:2) (included from {first}:1)")


def test_include_of_a_missing_file(tmp_path):
    path = write_config(tmp_path, "x = 1\ninclude('nope.aurora')\n", "top.aurora")
    message = error_of(path)
    assert f"{path}:2: include('nope.aurora') cannot read {tmp_path}/nope.aurora" in message


def test_missing_config_file(tmp_path):
    assert "cannot read the config file" in error_of(tmp_path / "absent.aurora")


@pytest.mark.parametrize("text,expected", [
    ("x = 1\n", "defines no `jobs`"),
    ("jobs = Job()\n", "`jobs` must be a list of Job objects, not MesosJob"),
    ("jobs = [Process(name='a', cmdline='b')]\n", "jobs[0] is a Process, not a Job"),
    ("jobs = []\n", "`jobs` is empty"),
])
def test_jobs_list_problems(tmp_path, text, expected):
    path = write_config(tmp_path, text)
    message = error_of(path)
    assert expected in message and str(path) in message


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
    assert error_of(path) == (f"{path}: defines 2 jobs, so a job key is needed; one of: "
                              "c/r/prod/hello, c/r/test/hello")


def test_unknown_key_lists_the_keys_that_exist(tmp_path):
    path = write_config(tmp_path, TWO_JOBS)
    assert error_of(path, "c/r/dev/hello") == (
        f"{path}: no job c/r/dev/hello; the file defines: c/r/prod/hello, c/r/test/hello")


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


# ---- validation: types and required fields ----


def test_type_error_names_field_and_value(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='x', max_failures='x')]"))
    assert error_of(path) == (f"{path}: job c/r/e/web: "
                              "job.task.processes[0].max_failures = 'x' is not an integer")


def test_missing_required_fields_are_named(tmp_path):
    path = write_config(tmp_path, "jobs = [Job(task=Task(processes=[Process(name='a')]), cluster='c')]\n")
    message = error_of(path)
    for field in ("job.task.processes[0].cmdline", "job.role", "job.environment"):
        assert f"{field} is required but missing" in message
    assert "job c/?/?/a" in message


def test_task_without_processes(tmp_path):
    path = write_config(tmp_path, job_text("[]"))
    assert "job.task.processes is empty" in error_of(path)


# ---- validation: process names and ordering ----


def test_duplicate_process_names(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='a', cmdline='x'), Process(name='a', cmdline='y')]"))
    assert "job.task.processes[1].name = 'a' is used by more than one process" in error_of(path)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../etc", ".hidden", "a\\0b", "-x",
                                  "web {{mesos.instance}}", ".{{mesos.instance}}", "{{a}}/{{b}}", "sp ace"])
def test_unsafe_process_names_are_rejected(tmp_path, name):
    path = write_config(tmp_path, job_text(f"[Process(name={name!r}, cmdline='x')]",
                                           extra=", name='job'"))
    message = error_of(path)
    assert "is not a safe process name" in message
    assert "^[A-Za-z0-9_][A-Za-z0-9_.-]*$" in message


@pytest.mark.parametrize("name", ["web", "web_1", "a.b-c", "9lives", "_x", "hello_{{mesos.instance}}",
                                  "{{thermos.task_id}}", "w.{{mesos.hostname}}"])
def test_safe_process_names_are_accepted(name):
    validate_job(job(process(name), name="web"), "test")


def test_constraint_naming_unknown_process(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='a', cmdline='x')]",
                                           task_extra=", constraints=order('a', 'ghost')"))
    assert ("job.task.constraints[0].order = ['a', 'ghost'] names unknown processes: ghost "
            "(the task has: a)") in error_of(path)


def test_ordering_cycle_is_named(tmp_path):
    path = write_config(tmp_path, """
        a = Process(name='a', cmdline='x'); b = Process(name='b', cmdline='x'); c = Process(name='c', cmdline='x')
        jobs = [Job(task=Task(processes=[a, b, c], constraints=order(a, b, c) + order(c, a),
                              resources=Resources(cpu=1, ram=1, disk=1)),
                    cluster='c', role='r', environment='e')]
    """)
    assert "job.task.constraints form a cycle, so none of these can ever start: a -> b -> c -> a" \
        in error_of(path)


def test_constraint_mixing_final_and_regular(tmp_path):
    path = write_config(tmp_path, job_text(
        "[Process(name='a', cmdline='x'), Process(name='z', cmdline='y', final=True)]",
        task_extra=", constraints=order('a', 'z')"))
    assert "job.task.constraints[0].order = ['a', 'z'] mixes final and non-final processes" in error_of(path)


@pytest.mark.parametrize("flags, expected", [
    ("daemon=True", "job.task.constraints[0].order = ['a', 'b'] makes 'b' wait for 'a', a daemon "
                    "process: a daemon runs again after each success and never finishes, so 'b' would "
                    "never start"),
    ("ephemeral=True", "job.task.constraints[0].order = ['a', 'b'] makes 'b' wait for 'a', an "
                       "ephemeral process: the task does not wait for ephemeral processes, so one it "
                       "waits for may not wait for one"),
])
def test_a_process_waiting_for_a_daemon_or_an_ephemeral_one_is_refused_as_thermos_does(tmp_path, flags, expected):
    path = write_config(tmp_path, job_text(
        f"[Process(name='a', cmdline='x', {flags}), Process(name='b', cmdline='y')]",
        task_extra=", constraints=order('a', 'b')"))
    assert expected in error_of(path)


def test_a_daemon_may_wait_for_a_process_and_an_ephemeral_one_for_an_ephemeral_one():
    validate_job(job(process("a"), process("d", daemon=True), process("e", ephemeral=True),
                     process("f", ephemeral=True, daemon=True),
                     task_fields={"constraints": [{"order": ["a", "d"]}, {"order": ["e", "f"]}]}), "test")


def test_final_processes_may_be_ordered_among_themselves():
    validate_job(job(process("a"), process("y", final=True), process("z", final=True),
                     task_fields={"constraints": [{"order": ["y", "z"]}]}), "test")


# ---- validation: numbers ----


@pytest.mark.parametrize("config,expected", [
    ("interval_secs=0", "job.health_check_config.interval_secs = 0.0 must be greater than 0"),
    ("interval_secs=-1", "job.health_check_config.interval_secs = -1.0 must be greater than 0"),
    ("timeout_secs=0", "job.health_check_config.timeout_secs = 0.0 must be greater than 0"),
    ("initial_interval_secs=-1", "job.health_check_config.initial_interval_secs = -1.0 must be at least 0"),
    ("max_consecutive_failures=-1", "job.health_check_config.max_consecutive_failures = -1 must be at least 0"),
    ("min_consecutive_successes=-2", "job.health_check_config.min_consecutive_successes = -2 must be at least 0"),
])
def test_health_check_numbers(tmp_path, config, expected):
    path = write_config(tmp_path, job_text(extra=f", health_check_config=HealthCheckConfig({config})"))
    message = error_of(path)
    assert expected in message and str(path) in message and "job c/r/e/web" in message


CODE_FIELD = "job.health_check_config.health_checker.http.expected_response_code"


@pytest.mark.parametrize("code", [-1, 1, 99, 600, 1000, 2**40])
def test_an_expected_response_code_that_no_http_answer_can_have_is_refused_at_load(code):
    # It used to be accepted, and every health check then failed ("answered HTTP 200,
    # expected 1000"): a task that could never become healthy.
    with pytest.raises(ConfigError) as info:
        validate_job(job(health_check_config={
            "health_checker": {"http": {"expected_response_code": code}}}), "test")
    assert f"{CODE_FIELD} = {code} must be 0 (any status) or an HTTP status from 100 to 599" \
        in str(info.value)


@pytest.mark.parametrize("code,body", [(0, "ok"), (200, "ok"), (299, "ok"), (204, ""), (503, ""),
                                       (100, ""), (599, "")])
def test_an_expected_response_code_of_0_or_an_http_status_is_valid(code, body):
    validate_job(job(health_check_config={"health_checker": {"http": {
        "expected_response_code": code, "expected_response": body}}}), "test")


@pytest.mark.parametrize("code,body,why", [
    (204, "ok", "an HTTP 204 answer has no body"),
    (503, "ok", "an HTTP 503 answer counts as an empty body"),
    (302, "moved", "an HTTP 302 answer counts as an empty body"),
])
def test_an_expected_response_code_whose_answer_cannot_carry_the_expected_body_is_refused(code, body,
                                                                                          why):
    # A health endpoint that answers 204 No Content, configured with its code and the
    # default expected_response 'ok', failed every check: a task never healthy.
    with pytest.raises(ConfigError) as info:
        validate_job(job(health_check_config={"health_checker": {"http": {
            "expected_response_code": code, "expected_response": body}}}), "test")
    message = str(info.value)
    assert f"{CODE_FIELD} = {code} with expected_response = {body!r} can never pass: {why}" \
        in message, message
    assert "set expected_response = ''" in message


@pytest.mark.parametrize("command,what", [
    ("", "is empty: it would pass every check"),
    ("  \n", "is empty: it would pass every check"),
    ("echo a\0b", "contains a NUL character, which no command can hold"),
])
def test_a_health_command_that_cannot_check_anything_is_refused_at_load(command, what):
    # An empty one passed every check (a task checked by nothing); one with a NUL failed
    # every check, each attempt logging an internal error with its traceback.
    with pytest.raises(ConfigError) as info:
        validate_job(job(health_check_config={"health_checker": {"shell": {"shell_command": command}}}),
                     "test")
    assert f"job.health_check_config.health_checker.shell.shell_command = {command!r} {what}" \
        in str(info.value), str(info.value)


LONGEST = 32 * 4096 - 1  # bytes in one exec argument (Linux's MAX_ARG_STRLEN, less its NUL)


@pytest.mark.parametrize("where", ["cmdline", "shell_command"])
@pytest.mark.parametrize("command,size", [
    (":" + " " * (LONGEST - 1), None),
    (":" + " " * LONGEST, LONGEST + 1),
    (": " + "é" * (LONGEST // 2), LONGEST + 1),  # 65,537 characters: bytes count, not characters
])
def test_a_command_longer_than_one_exec_argument_is_refused_at_load(where, command, size):
    # `/bin/bash -c CMDLINE` with a cmdline of 128 KiB or more failed at every spawn with
    # "Argument list too long (E2BIG)", naming neither the size nor the limit; a service
    # restarted it for ever, and under Mesos the task started and failed.
    if where == "cmdline":
        candidate = job(process("web", cmdline=command))
        field = "job.task.processes[0].cmdline"
    else:
        candidate = job(health_check_config={"health_checker": {"shell": {"shell_command": command}}})
        field = "job.health_check_config.health_checker.shell.shell_command"
    if size is None:
        validate_job(candidate, "test")
        return
    with pytest.raises(ConfigError) as info:
        validate_job(candidate, "test")
    message = str(info.value)
    assert f"{field} = " in message, message
    assert (f"is {size:,} bytes long: Linux passes at most {LONGEST:,} bytes in one argument "
            "(MAX_ARG_STRLEN), so /bin/bash -c could never start it") in message, message


def test_zero_grace_and_zero_failures_are_valid():
    validate_job(job(health_check_config={"initial_interval_secs": 0, "interval_secs": 0.05,
                                          "max_consecutive_failures": 0}), "test")


@pytest.mark.parametrize("process_fields,task_fields,expected", [
    ("min_duration=-0.5", "", "job.task.processes[0].min_duration = -0.5 must be at least 0"),
    ("max_failures=-1", "", "job.task.processes[0].max_failures = -1 must be at least 0"),
    ("", ", max_failures=-1", "job.task.max_failures = -1 must be at least 0"),
    ("", ", finalization_wait=-1", "job.task.finalization_wait = -1.0 must be at least 0"),
    ("", ", max_concurrency=-1", "job.task.max_concurrency = -1 must be at least 0"),
    ("min_duration=1e300", "", "job.task.processes[0].min_duration = 1e+300 must be at most 31536000 (365 days)"),
    ("", ", finalization_wait=10**30",
     "job.task.finalization_wait = 1e+30 must be at most 31536000 (365 days)"),
    ("logger=Logger(mode='rotate', rotate=RotatePolicy(log_size=0))", "",
     "job.task.processes[0].logger.rotate.log_size = 0 must be at least 1"),
    ("logger=Logger(mode='rotate', rotate=RotatePolicy(backups=0))", "",
     "job.task.processes[0].logger.rotate.backups = 0 must be at least 1"),
    # each rotation renames .N-1 → .N down to .1: a billion backups would stall the log for hours
    ("logger=Logger(mode='rotate', rotate=RotatePolicy(backups=10**9))", "",
     "job.task.processes[0].logger.rotate.backups = 1000000000 must be at most 1000"),
])
def test_process_and_task_numbers(tmp_path, process_fields, task_fields, expected):
    sep = ", " if process_fields else ""
    path = write_config(tmp_path, job_text(f"[Process(name='web', cmdline='x'{sep}{process_fields})]",
                                           task_extra=task_fields))
    assert expected in error_of(path)


def test_a_rotate_policy_is_checked_only_for_a_rotating_logger(tmp_path):
    """Thermos checks `log_size` and `backups` in rotate mode alone; a standard logger's
    policy is never used, and a job that ran under Thermos was refused here."""
    path = write_config(tmp_path, job_text(
        "[Process(name='web', cmdline='x', logger=Logger(mode='standard', "
        "rotate=RotatePolicy(log_size=0, backups=0)))]"))
    load_job(path)


@pytest.mark.parametrize("field, value, expected", [
    ("graceful_shutdown_wait_secs", "-1", "= -1.0 must be at least 0"),
    ("shutdown_wait_secs", "1e300", "= 1e+300 must be at most 31536000 (365 days)"),
    ("graceful_shutdown_wait_secs", "10**30", "= 1e+30 must be at most 31536000 (365 days)"),
])
def test_lifecycle_waits_are_durations(tmp_path, field, value, expected):
    # Past the platform's timers (a year is far below them) a wait would crash the kill.
    path = write_config(tmp_path, job_text(
        extra=f", lifecycle=LifecycleConfig(http=HttpLifecycleConfig({field}={value}))"))
    assert f"job.lifecycle.http.{field} {expected}" in error_of(path)


def test_max_task_failures_minus_one_means_unlimited(tmp_path):
    validate_job(job(max_task_failures=-1), "test")
    path = write_config(tmp_path, job_text(extra=", max_task_failures=-2"))
    assert "job.max_task_failures = -2 must be -1 (unlimited) or more" in error_of(path)


def test_several_problems_are_all_reported(tmp_path):
    path = write_config(tmp_path, job_text(
        "[Process(name='a', cmdline='x', min_duration=-1), Process(name='a', cmdline='y')]",
        extra=", health_check_config=HealthCheckConfig(interval_secs=0)"))
    message = error_of(path)
    assert "3 problems" in message
    assert "min_duration" in message and "more than one process" in message and "interval_secs" in message


def test_port_reference_must_use_the_index_form(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='serve {{thermos.ports.http}}')]"))
    assert ("job.task.processes[0].cmdline uses {{thermos.ports.http}}, which is not a port reference; "
            "write {{thermos.ports[NAME]}}") in error_of(path)


def test_job_identifiers_must_be_path_safe(tmp_path):
    path = write_config(tmp_path, job_text(extra=", name='a/b'"))
    assert "job.name = 'a/b' may only contain letters, digits, _, - and ." in error_of(path)


def test_bad_template_reference_is_a_config_error(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='echo {{ spaced }}')]"))
    assert "job.task.processes[0].cmdline = 'echo {{ spaced }}' has an invalid template reference" \
        in error_of(path)


def test_self_referencing_template_is_a_config_error(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='{{cmdline}}')]"))
    assert "refers to itself" in error_of(path)


def test_validate_job_names_the_source():
    with pytest.raises(ConfigError) as info:
        validate_job(job(health_check_config={"interval_secs": 0}), "task document")
    assert str(info.value).startswith("task document: job c/r/e/web: ")


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
