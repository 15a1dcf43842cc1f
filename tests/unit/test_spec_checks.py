"""`config.spec`'s checks called alone, at their edges: an endpoint's characters, the HTTP
codes whose answer has no body that counts, a command measured with its templates once
bound (the default), cpu left out of the size bound, and a task's process by name (the
loader's tests meet them through whole configs)."""
from __future__ import annotations

import pytest

from config.spec import (
    MAX_ARGUMENT_BYTES,
    ProcessSpec,
    TaskSpec,
    _argument_problem,
    cmdline_problem,
    endpoint_problem,
    http_check_problems,
    resources_problems,
    shell_check_problems,
)

NOT_ONE_SLASH = "must be an absolute path starting with one '/', such as '/health'"
NO_SPACES = "must be an absolute path without spaces or control characters"


@pytest.mark.parametrize(("endpoint", "problem"), [
    ("/health", None), ("/a/b?c=d", None), ("/~", None), ("/!", None),
    ("//host/x", NOT_ONE_SLASH), ("health", NOT_ONE_SLASH),
    ("/a b", NO_SPACES), ("/a\tb", NO_SPACES), ("/a\x7f", NO_SPACES), ("/a\x1f", NO_SPACES),
])
def test_an_endpoint_is_one_absolute_path_without_spaces_or_controls(endpoint, problem):
    assert endpoint_problem(endpoint) == problem


def never_passes(code: int, why: str) -> list[str]:
    return [f"health_checker.http.expected_response_code = {code} with expected_response = 'ok' can never pass: "
            f"an HTTP {code} answer {why}; set expected_response = '' to accept any body"]


@pytest.mark.parametrize(("code", "body", "problems"), [
    (True, "ok", []), ("{{code}}", "ok", []),  # a bool is no status; a template is checked once bound
    (0, "ok", []), (200, "ok", []), (299, "ok", []),
    (204, "ok", never_passes(204, "has no body")),
    (300, "ok", never_passes(300, "counts as an empty body (as in Aurora)")),
    (500, "ok", never_passes(500, "counts as an empty body (as in Aurora)")),
    (500, "", []), (500, "{{body}}", []),  # any body; a template the binding decides
])
def test_a_code_whose_answer_has_no_body_that_counts_cannot_expect_one(code, body, problems):
    assert http_check_problems(code, body) == problems


def test_a_command_is_measured_with_its_templates_unless_told_it_is_not_bound_yet():
    command = "{{" + "x" * MAX_ARGUMENT_BYTES + "}}"
    too_long = (f"is {MAX_ARGUMENT_BYTES + 4:,} bytes long: Linux passes at most {MAX_ARGUMENT_BYTES:,} bytes in "
                f"one argument (MAX_ARG_STRLEN), so /bin/bash -c could never start it; put the commands in a "
                f"script and run that")
    assert _argument_problem(command) == too_long and cmdline_problem(command) == too_long
    assert shell_check_problems(command)[0].endswith(too_long)
    assert _argument_problem(command, False) is None and cmdline_problem(command, bound=False) is None
    assert shell_check_problems(command, bound=False) == []


def test_each_resource_is_named_when_missing_and_cpu_has_no_size_bound():
    assert resources_problems({"ram": 1, "disk": 1}) == ["job.task.resources.cpu is not set (Aurora requires it)"]
    assert resources_problems({"cpu": 1}) == ["job.task.resources.ram is not set (Aurora requires it)",
                                              "job.task.resources.disk is not set (Aurora requires it)"]
    assert resources_problems({"cpu": 2**64, "ram": 1, "disk": 1}) == []  # cores, not bytes


def test_a_task_s_process_by_name():
    first, second = ProcessSpec("a", "x"), ProcessSpec("b", "y")
    task = TaskSpec(name="t", processes=(first, second))
    assert task.process("b") is second and task.process("a") is first
    with pytest.raises(KeyError) as missing:
        task.process("c")
    assert missing.value.args == ("c",)
