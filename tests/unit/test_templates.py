"""`<<ref>>` spelling, port discovery, template reference cycles and the one port-reference
pattern. Binding a job into a JobSpec is in test_bind.py, what binding carries through and
checks once bound in test_bound_job.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from config import portmap, templates
from config.errors import ConfigError
from config.loader import load_job
from config.portmap import port_names, port_refs
from config.schema import (
    DisableLifecycle,
    Docker,
    HealthCheckConfig,
    HealthCheckerConfig,
    HttpHealthChecker,
    HttpLifecycleConfig,
    LifecycleConfig,
    Ref,
    ShellHealthChecker,
    TcpHealthChecker,
)
from config.templates import flatten, normalize_angle_refs, refs_in
from tests.support.configs import bound, job, process, write_config

# ---- <<ref>> ----


@pytest.mark.parametrize("text,expected", [
    ("serve <<thermos.ports[http]>>", "serve {{thermos.ports[http]}}"),
    ("<<mesos.instance>>/<<thermos.task_id>>", "{{mesos.instance}}/{{thermos.task_id}}"),
    ("<<a.b[c-d.e/f].g>>", "{{a.b[c-d.e/f].g}}"),
    ("<<role>>", "{{role}}"),
    ("cat <<EOF\nhello\nEOF", "cat <<EOF\nhello\nEOF"),
    ("cat <<-EOF\n\thello\n\tEOF", "cat <<-EOF\n\thello\n\tEOF"),
    ("python3 - <<'PY'\nprint(1)\nPY", "python3 - <<'PY'\nprint(1)\nPY"),
    ("echo $((1 << 3 >> 1))", "echo $((1 << 3 >> 1))"),
    ("a << b >> c", "a << b >> c"),
    ("<< thermos.ports[http] >>", "<< thermos.ports[http] >>"),
    ("cat <<EOF >> out\nx <<thermos.ports[h]>>\nEOF", "cat <<EOF >> out\nx {{thermos.ports[h]}}\nEOF"),
    ("{{thermos.ports[http]}}", "{{thermos.ports[http]}}"),
    # a heredoc whose delimiter is followed by an append: upper-case bare names stay
    ("cat <<EOF>>out\nx\nEOF", "cat <<EOF>>out\nx\nEOF"),
    ("cat <<END_OF_IT>>log\n<<thermos.ports[h]>>\nEND_OF_IT",
     "cat <<END_OF_IT>>log\n{{thermos.ports[h]}}\nEND_OF_IT"),
    ("<<Name.x>>", "{{Name.x}}"),
    ("<<_private>>", "{{_private}}"),
])
def test_normalize_angle_refs(text, expected):
    assert normalize_angle_refs(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<")))
def test_text_without_angle_brackets_is_untouched(text):
    assert normalize_angle_refs(text) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["<<", ">>", "thermos.ports[http]", "a.b", " ", "EOF", "\n", "x", "[", "]"]),
                max_size=12).map("".join))
def test_normalizing_leaves_no_angle_ref_and_is_idempotent(text):
    once = normalize_angle_refs(text)
    assert normalize_angle_refs(once) == once
    assert "<<thermos.ports[http]>>" not in once


# ---- port names ----


def test_ports_come_from_cmdlines_sorted_and_unique():
    j = job(process("a", "run {{thermos.ports[http]}} {{thermos.ports[admin]}}"),
            process("b", "run <<thermos.ports[http]>> {{thermos.task_id}} {{mesos.instance}}"))
    assert port_names(j) == ["admin", "http"]


def test_ports_come_from_process_names_too():
    # docs/contract.md §3: a reference in a process's cmdline or name. (A name with a
    # template does not pass validation; port_names reads the job as given.)
    assert port_names(job(process("{{thermos.ports[x]}}", "sleep 1"))) == ["x"]


def test_ports_come_from_the_shell_health_command():
    j = job(process("a", "sleep 1"), health_check_config=HealthCheckConfig(
        health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command="probe {{thermos.ports[probe]}}"))))
    assert port_names(j) == ["probe"]


def test_health_port_only_when_referenced():
    # The default HTTP checker and the default lifecycle both name `health`, but only a
    # reference allocates it: otherwise every job would be health-checked.
    assert port_names(job(process("a", "sleep 1"))) == []
    explicit = job(process("a", "sleep 1"), health_check_config=HealthCheckConfig(
        health_checker=HealthCheckerConfig(http=HttpHealthChecker(endpoint="/ready"))))
    assert port_names(explicit) == []
    tcp = job(process("a", "sleep 1"),
              health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig(tcp=TcpHealthChecker())))
    assert port_names(tcp) == []
    assert port_names(job(process("a", "serve {{thermos.ports[health]}}"))) == ["health"]


def test_a_non_default_lifecycle_port_is_allocated():
    j = job(process("a", "serve {{thermos.ports[http]}}"),
            lifecycle=LifecycleConfig(http=HttpLifecycleConfig(port="admin")))
    assert port_names(j) == ["admin", "http"]
    assert port_names(job(process("a", "x"), lifecycle=DisableLifecycle)) == []


def test_ports_of_a_loaded_example(tmp_path):
    path = write_config(tmp_path, """
        jobs = [Service(task=Task(processes=[Process(name='web', cmdline='serve <<thermos.ports[http]>>')],
                                  resources=Resources(cpu=1, ram=1*MB, disk=1*MB)),
                        cluster='c', role='r', environment='e')]
    """)
    assert port_names(load_job(path)) == ["http"]


# ---- template reference cycles (found before anything interpolates) ----


def test_a_field_that_refers_to_itself_twice_is_rejected_at_once():
    import json
    import time

    from config.document import decode, encode
    from config.errors import TaskDocumentError
    from config.loader import load_job

    doc = json.loads(encode(load_job(Path(__file__).resolve().parents[2] / "examples/batch_job.aurora")))
    doc["job"]["role"] = "a{{role}}{{role}}"  # pystachio alone would expand this for ever
    started = time.monotonic()
    with pytest.raises(TaskDocumentError, match=r"job.role = 'a\{\{role\}\}\{\{role\}\}' refers to itself"):
        decode(json.dumps(doc).encode())
    assert time.monotonic() - started < 5


# ---- the one port-reference pattern ----


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10))
@example("0][0")  # found by a random run in CI: two indexes that print as one
def test_the_port_pattern_takes_exactly_what_pystachio_parses_as_one_port_index(name):
    text = "run {{thermos.ports[" + name + "]}}"
    # one reference, and one index under `ports` (`0][0` reads back the same, as two indexes)
    parsed = (refs_in(text) == [f"thermos.ports[{name}]"]
              and len(Ref.from_address(f"thermos.ports[{name}]").components()) == 3)
    assert port_refs(text) == ([name] if parsed else [])


@pytest.mark.parametrize("text, names", [
    ("{{&x}} {{thermos.ports[a]}}", ["a"]),  # an escape is skipped, not the end
    ("{{x[}} {{thermos.ports[a]}} {{thermos.ports[b]}}", ["a", "b"]),  # so is an invalid reference
])
def test_every_port_reference_in_a_text_is_found(text, names):
    assert port_refs(text) == names


def test_an_angle_reference_binds_to_the_jobs_own_fields_at_load():
    flat = flatten(job(process("a", "echo <<role>> <<thermos.ports[http]>>")))
    assert templates.raw(flat)["task"]["processes"][0]["cmdline"] == "echo r {{thermos.ports[http]}}"


def test_an_escaped_reference_comes_out_as_a_reference():
    tree, out = templates.expand(job(process("a", "echo {{&role}} {{role}}")))
    assert tree["task"]["processes"][0]["cmdline"] == "echo {{role}} r"


def test_a_choice_given_as_a_plain_map_is_carried_as_written_then_typed():
    j = job(process("a", "x"), container={"image": "i:{{role}}"})
    assert templates.raw(j)["container"] == {"image": "i:{{role}}"}
    assert templates.expand(j)[0]["container"] == {"image": "i:{{role}}"}
    assert templates.expand(flatten(j))[0]["container"] == {"image": "i:r", "parameters": []}


@pytest.mark.parametrize("fields, problem", [
    (dict(constraints={"{{x[}}": "v"}),
     "job.constraints key = '{{x[}}' has an invalid template reference: Badly formed address .x["),
    (dict(container=Docker(image="{{x[}}")),
     "job.container.image = '{{x[}}' has an invalid template reference: Badly formed address .x["),
])
def test_a_problem_in_a_map_key_or_a_choice_names_its_place(fields, problem):
    _, out = templates.expand(job(process("a", "x"), **fields))
    assert out.problems == [problem]


def test_a_templated_number_renders_as_pystachio_renders_it():
    # A Float field given as a template is coerced once its own scopes expand it: '2' becomes
    # '2.0' (left unbound there, it would be expanded later as the text '2').
    j = job(process("a", "x"), contact="{{health_check_config.interval_secs}}",
            health_check_config=HealthCheckConfig(interval_secs="{{x}}").bind(x="2"))
    tree, out = templates.expand(j)
    assert tree["contact"] == "2.0" == str(j.contact())
    # Bound only where the reference is, it stays a template in the field and is not coerced.
    j = job(process("a", "x"), contact="{{health_check_config.interval_secs}}",
            health_check_config=HealthCheckConfig(interval_secs="{{x}}")).bind(x="2")
    tree, out = templates.expand(j)
    assert (tree["contact"], out.problems) == ("2", []) and str(j.contact()) == "2"


@pytest.mark.parametrize("problem", [
    "job.contact = 'a{{contact}}' refers to itself (a template reference cycle)",  # seen before expanding
    "job.contact = '{{x[}}' has an invalid template reference: Badly formed address .x[",  # while expanding
])
def test_bind_names_what_cannot_be_expanded(problem):
    contact = problem.split("'")[1]
    with pytest.raises(ConfigError) as info:
        bound(job(process("a", "x"), contact=contact))
    assert str(info.value) == f"invalid job: {problem}"
    assert info.value.problems == (problem,)


def test_port_names_of_a_job_past_the_expansion_s_limits_is_a_config_error_naming_the_field():
    # `.bind()`'s values double each pass: the expansion stops, with no tree to read names in
    problem = ("job.task.processes[0].cmdline = '{{x}}' needs more than 5600 template steps to expand "
               "(its references repeat or lead to each other too often: a long chain of bound names, "
               "`--bind` flags among them)")
    with pytest.raises(ConfigError) as info:
        port_names(job(process("a", "{{x}}")).bind(x="{{x}}{{x}}"))
    assert str(info.value) == f"invalid job: {problem}"
    assert info.value.problems == (problem,)

def test_the_loader_checks_port_references_with_the_templates_pattern():
    assert portmap.PORT_REF is templates.PORT_REF  # `port_ref_problems`, the loader's check
