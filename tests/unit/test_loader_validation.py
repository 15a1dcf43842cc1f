"""Validating a loaded job: types and required fields, process names and ordering, numbers,
commands, templates; every message names the field and the value."""
from __future__ import annotations

import pytest

from config.bind import bind
from config.errors import ConfigError
from config.loader import load_job, validate_job
from tests.support.configs import error_of, job, job_text, process, write_config

# ---- validation: types and required fields ----


def test_type_error_names_field_and_value(tmp_path):
    path = write_config(tmp_path, job_text("[Process(name='web', cmdline='x', max_failures='x')]"))
    assert error_of(path) == (f"'{path}': job c/r/e/web: "
                              "job.task.processes[0].max_failures = 'x' is not an integer")


@pytest.mark.parametrize("value", ["1e5", "{{n}}"])
def test_an_integer_written_with_an_exponent_names_the_field_and_value(tmp_path, value):
    """`int('1e5')` fails where `float('1e5')` does not: it was a bare traceback
    (pystachio's CoercionError), by a literal or a `--bind` value alike."""
    path = write_config(tmp_path, job_text(f"[Process(name='web', cmdline='x', max_failures='{value}')]"))
    with pytest.raises(ConfigError) as info:
        load_job(path, bindings=[("n", "1e5")])
    assert str(info.value) == (f"'{path}': job c/r/e/web: "
                               "job.task.processes[0].max_failures = '1e5' is not an integer")


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
                       "ephemeral process: the task does not wait for ephemeral processes, so a "
                       "process it waits for may not wait for one"),
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


@pytest.mark.parametrize("where", ["cmdline", "shell_command"])
def test_a_command_s_length_is_judged_bound_its_templates_aside_at_load(where):
    """The text as written was measured at load: 10,000 port references (240,005 bytes,
    60,005 once bound) were refused. Its templates count for nothing until bound; the bound
    command is measured again, so a short template that binds past the limit is refused then."""
    from config.bind import bind

    def candidate(command: str):
        if where == "cmdline":
            return job(process("web", cmdline=command))
        return job(process("web", cmdline="sleep 1"),
                   health_check_config={"health_checker": {"shell": {"shell_command": command}}})

    # 600 references to a port with a 200-character name (132,004 bytes as written, 3,004
    # bound): past the limit as the 10,000 were, with a tenth of the references to bind
    # (pystachio binds 10,000 in 6 s; the test took 12-46 s with them)
    name = "p" * 200
    ports = "echo" + f" {{{{thermos.ports[{name}]}}}}" * 600
    assert len(ports) > LONGEST
    validate_job(candidate(ports), "test")  # was refused: "is 132,004 bytes long"
    spec = bind(candidate(ports), instance=0, ports={name: 8080}, task_id="t", hostname="h", user="u")
    assert str(spec).count("8080") >= 600
    with pytest.raises(ConfigError, match=f"is {LONGEST + 1:,} bytes long without its templates"):
        validate_job(candidate(":" + " " * LONGEST + "{{thermos.task_id}}"), "test")
    ids = "echo" + " {{thermos.task_id}}" * 200  # 4,004 bytes as written
    with pytest.raises(ConfigError, match=r"\(bound\).* is 162,004 bytes long: Linux"):
        bind(candidate(ids), instance=0, ports={}, task_id="t" * 809, hostname="h", user="u")


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


@pytest.mark.parametrize("port", ["a b", "$x", "a]", "{{"])
def test_a_lifecycle_port_that_no_port_reference_can_name_is_refused(tmp_path, port):
    """`stoker inspect` and `run` printed pystachio's traceback (InvalidRefError: Badly formed
    address .thermos.ports[a b]), and the executor a TASK_FAILED of an internal error; a
    `{{` was refused nowhere before the bind."""
    path = write_config(tmp_path, job_text(extra=f", lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port={port!r}))"))
    message = error_of(path) if "{{" not in port else _bind_error(path)
    assert f"job.lifecycle.http.port = {port!r} is not a port name" in message


def _bind_error(path) -> str:
    with pytest.raises(ConfigError) as caught:
        bind(load_job(path), ports={"{{": 31000}, instance=0, task_id="t", hostname="h", user="u")
    return str(caught.value)


@pytest.mark.parametrize("port", ["http", "admin-2", "x.y", "a/b", "_0", "ß"])
def test_a_lifecycle_port_any_port_reference_can_name_is_valid(tmp_path, port):
    path = write_config(tmp_path, job_text(extra=f", lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port={port!r}))"))
    assert bind(load_job(path), ports={port: 31000}, instance=0, task_id="t", hostname="h", user="u")


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
    assert "job.name = 'a/b' may only contain ASCII letters, digits, _, - and ." in error_of(path)


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
