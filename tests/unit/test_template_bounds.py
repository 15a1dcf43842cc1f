"""Template expansion always ends, quickly, whatever the job says (config.refs, config.templates).

Regression tests for two hangs: `_ref_parts` read `processes[0].name` as
['processes', '', 'name'], so the cycle check never followed an indexed reference (a process
named '{{task.name}}{{task.name}}' hung `stoker inspect` and the task-document decode); and
`job_key` expanded `role = 'a{{role}}{{role}}'` before any check ran. A time bound is asserted
only where it guards a hang, and it is generous (the machine is shared); the error texts are
pinned exactly.
"""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import portmap, refs, templates
from config.bind import bind
from config.document import decode
from config.errors import ConfigError, TaskDocumentError
from config.loader import job_key, load_job, prepare_job, select_job
from config.refs import reference_problems
from config.schema import Announcer, HttpHealthChecker, Job
from config.templates import KEY_LIMITS, Limits, expand, expand_field
from config.typed_tree import from_tree
from tests.support.configs import job, process, write_config

HANG_BOUND_SECS = 2.0  # each case below took for ever; each now takes a few milliseconds

PROCESS_NAME_LOOP = """
    p = Process(name='{{task.name}}{{task.name}}', cmdline='true')
    jobs = [Job(task=Task(processes=[p]), cluster='c', role='r', environment='e', name='n')]
"""
ROLE_LOOP = """
    p = Process(name='p', cmdline='true')
    jobs = [Job(task=Task(processes=[p]), cluster='c', role='a{{role}}{{role}}', environment='e', name='n')]
"""
PROCESS_NAME_PROBLEM = ("job.task.name = '{{processes[0].name}}' refers to itself (a template reference "
                        "cycle through job.task.processes[0].name = '{{task.name}}{{task.name}}')")
ROLE_PROBLEM = "job.role = 'a{{role}}{{role}}' refers to itself (a template reference cycle)"


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except ConfigError as exc:
        return exc, time.monotonic() - started


def document(role: str = "r", process_name: str = "p") -> bytes:
    job_tree = {"cluster": "c", "role": role, "environment": "e", "name": "n",
                "task": {"processes": [{"name": process_name, "cmdline": "true"}]}}
    return json.dumps({"job": job_tree}).encode()


# ---- the two hangs ----


@pytest.mark.parametrize("text, problem", [(PROCESS_NAME_LOOP, PROCESS_NAME_PROBLEM), (ROLE_LOOP, ROLE_PROBLEM)],
                         ids=["process_name", "role"])
def test_a_self_doubling_config_file_fails_at_once_naming_the_field(tmp_path, text, problem):
    path = write_config(tmp_path, text)
    error, secs = timed(lambda: load_job(path))
    assert isinstance(error, ConfigError)
    assert str(error) == f"'{path}': job: {problem}"
    assert secs < HANG_BOUND_SECS


@pytest.mark.parametrize("data, problem", [
    (document(process_name="{{task.name}}{{task.name}}"), PROCESS_NAME_PROBLEM),
    (document(role="a{{role}}{{role}}"), ROLE_PROBLEM),
], ids=["process_name", "role"])
def test_a_self_doubling_task_document_fails_at_once_naming_the_field(data, problem):
    error, secs = timed(lambda: decode(data))
    assert isinstance(error, TaskDocumentError)
    assert str(error) == f"invalid task document: task document: job: {problem}"
    assert secs < HANG_BOUND_SECS


def test_the_job_key_of_an_unchecked_job_is_bounded():
    looping = Job(task=job().task(), cluster="c", role="a{{role}}{{role}}", environment="e", name="n")
    key, secs = timed(lambda: job_key(looping))
    assert key == "c/?/e/n"
    assert secs < HANG_BOUND_SECS
    assert select_job([looping], None, "x.aurora") is looping


def test_the_job_key_expands_its_names():
    j = job(process("a", "x"), name="{{role}}-svc", role="{{environment}}x")
    assert job_key(j) == "c/ex/e/ex-svc"
    assert job_key(Job(task=job().task())) == "?/?/?/web"  # unset names; name defaults to the task's


# ---- what the reading of the plain tree finds (config.refs) ----


@pytest.mark.parametrize("tree, problems", [
    ({"a": "{{b}}", "b": "{{a}}{{a}}"},
     ["job.a = '{{b}}' refers to itself (a template reference cycle through job.b = '{{a}}{{a}}')"]),
    ({"task": {"processes": [{"name": "x", "cmdline": "x{{cmdline}}"}]}},
     ["job.task.processes[0].cmdline = 'x{{cmdline}}' refers to itself (a template reference cycle)"]),
    # indexed references are followed ([0] is an index, not an empty name)
    ({"task": {"name": "{{processes[0].name}}", "processes": [{"name": "{{task.name}}"}]}},
     [PROCESS_NAME_PROBLEM.replace("{{task.name}}{{task.name}}", "{{task.name}}")]),
    ({"task": {"processes": [{"name": "p", "cmdline": "{{[0]}}"}]}}, []),
    # a reference to a struct stands for everything in it, itself included
    ({"task": {"name": "t", "processes": [{"name": "p", "cmdline": "{{task}}"}]}},
     ["job.task.processes[0].cmdline = '{{task}}' refers to itself (a template reference cycle)"]),
    # every string on the loop is named (at most three more)
    ({"a": "{{b}}", "b": "{{c}}", "c": "{{d}}", "d": "{{e}}", "e": "{{a}}"},
     ["job.a = '{{b}}' refers to itself (a template reference cycle through job.b = '{{c}}' "
      "through job.c = '{{d}}' through job.d = '{{e}}')"]),
])
def test_reference_cycles_are_found_on_every_reference_kind(tree, problems):
    assert reference_problems(tree) == problems


def test_references_that_are_not_cycles_pass():
    ok = {"role": "r", "name": "{{task.name}}",
          "task": {"name": "{{processes[0].name}}",
                   "processes": [{"name": "x", "cmdline": "echo {{role}} {{name}} {{thermos.ports[http]}}"},
                                 {"name": "y", "cmdline": "{{processes[2].name}} {{processes[x].name}} {{&name}}"}]}}
    assert reference_problems(ok) == []


@pytest.mark.parametrize("depth, limit, oversized", [
    (10, 1 << 20, []),  # 2**10 copies of 'x': 1 KiB
    (10, 1023, ["f0"]),  # f0 is 1024 characters: one over the limit is one too many
    (10, 1024, []),
    (40, 1 << 20, [f"f{i}" for i in range(20)]),  # f19 would be 2**21 characters
])
def test_a_string_that_would_expand_past_the_limit_is_named_before_expanding(depth, limit, oversized):
    tree = {f"f{i}": f"{{{{f{i + 1}}}}}{{{{f{i + 1}}}}}" for i in range(depth)}
    tree[f"f{depth}"] = "x"
    problems = reference_problems(tree, limit)
    assert problems == [f"job.{name} = {tree[name]!r} would expand to more than {limit} characters"
                        for name in oversized]


@pytest.mark.parametrize("limit, oversized", [(1199, ["job.b"]), (1200, [])])
def test_a_reference_to_a_struct_counts_everything_in_it(limit, oversized):
    tree = {"a": {"x": "y" * 500, "z": ["w" * 95, 12345]}, "b": "{{a}}{{a}}"}  # 2 * (500 + 95 + 5)
    assert [p.split(" = ")[0] for p in reference_problems(tree, limit)] == oversized


@pytest.mark.parametrize("length, shown", [(80, "{{a}}" + "x" * 75), (81, "{{a}}" + "x" * 75 + "...")])
def test_a_long_string_is_shown_cut_in_the_problem(length, shown):
    text = "{{a}}" + "x" * (length - 5)
    assert reference_problems({"a": text}) == [f"job.a = {shown!r} refers to itself (a template reference cycle)"]


@pytest.mark.parametrize("tree", [
    {"name": "abc", "x": "{{name.a}}"},  # a string has no fields, whatever it contains
    {"a": "{{.}} {{[]}}"},  # references with no name at all
    {"l": ["0", "1"], "x": "{{l.0}}"},  # a list is indexed with [N], not .N
])
def test_references_into_what_has_no_fields_name_nothing(tree):
    assert reference_problems(tree) == []


def test_the_default_limit_is_one_mebibyte():
    assert refs.MAX_EXPANDED_CHARS == 1 << 20
    big = "x" * (1 << 20)
    assert reference_problems({"a": big, "b": "{{a}}"}) == []
    assert reference_problems({"a": big, "b": "{{a}}!"}) == [
        "job.b = '{{a}}!' would expand to more than 1048576 characters"]


# ---- expansion itself is bounded, for what the plain tree does not show ----


def test_a_loop_through_a_bound_scope_stops_at_the_limits():
    # `.bind()` values are invisible to config.refs: each pass doubles the text. The job has
    # 3 references (the cmdline's, and the defaults of the task's and the job's names).
    j = job(process("a", "{{x}}")).bind(x="{{x}}{{x}}")
    (tree, out), secs = timed(lambda: expand(j))
    assert tree is None and len(out.problems) == 1
    assert out.problems[0] == ("job.task.processes[0].cmdline = '{{x}}' needs more than 5600 template "
                               "steps to expand (its references repeat or lead to each other too often: "
                               "a long chain of bound names, `--bind` flags among them)")
    assert secs < HANG_BOUND_SECS


@pytest.mark.parametrize("refs, steps", [
    (0, 5_000), (1, 5_200), (10, 7_000),
    (4_975, 1_000_000), (4_976, 1_000_000), (10**9, 1_000_000),  # the cap, and its boundary
])
def test_the_work_allowed_grows_with_the_references_written_up_to_a_cap(refs, steps):
    assert Limits().steps(refs) == steps
    assert KEY_LIMITS.steps(refs) == 2_000


def test_an_expanded_string_stops_at_its_character_limit():
    j = job(process("a", "{{x}}")).bind(x="{{x}}{{x}}")
    tree, out = expand(j, limits=Limits(field_chars=1000))
    assert tree is None
    assert out.problems == ["job.task.processes[0].cmdline = '{{x}}' expands to more than 1000 characters"]


def test_all_strings_together_stop_at_the_job_limit():
    j = job(*[process(f"p{i}", "{{x}}{{x}}") for i in range(4)]).bind(x="y" * 100)
    tree, out = expand(j, limits=Limits(job_chars=700))
    assert tree is None
    assert out.problems == ["job.task.processes[3].cmdline = '{{x}}{{x}}' takes the job's expanded "
                            "strings past 700 characters"]
    assert expand(j, limits=Limits(job_chars=1000))[0] is not None


@pytest.mark.parametrize("limit, ok", [(1000, True), (999, False)])
def test_an_expanded_string_may_be_exactly_as_long_as_its_limit(limit, ok):
    tree, out = expand(job(process("a", "{{x}}")).bind(x="y" * 1000), limits=Limits(field_chars=limit))
    assert (tree is not None) is ok


def test_the_limits_are_the_documented_ones():
    assert Limits() == Limits(base_steps=5_000, steps_per_ref=200, max_steps=1_000_000,
                              field_chars=1 << 20, job_chars=1 << 25)
    assert KEY_LIMITS == Limits(base_steps=2_000, steps_per_ref=0, max_steps=1_000_000,
                                field_chars=4096, job_chars=65536)


def test_a_step_is_one_reference_read_or_one_scope_searched():
    # '{{role}}' in a job's own field: one reference read, then the job's scopes searched in
    # order until one has it (the 'self' scope first, then the job's own fields).
    def steps(**fields):
        return expand(job(process("a", "x"), name="n", **fields))[1].steps

    assert steps(contact="{{role}}") - steps() == 1 + 2
    assert steps(contact="{{nothing}}") - steps() == 2 * (1 + 2)  # found nowhere; the last pass reads it again


def test_a_reference_to_a_whole_struct_is_what_pystachio_renders():
    j = job(process("a", "x"), contact="{{executor_config}}")
    tree, out = expand(j)
    assert out.problems == [] and tree["contact"] == str(j.executor_config())
    assert out.unbound == []


def test_a_struct_that_cannot_be_expanded_is_named_through_the_reference():
    j = job(process("a", "x"), contact="{{announce}}", announce=Announcer(primary_port="{{x[}}"))
    _, out = expand(j)
    assert out.problems[0] == (
        "job.contact = '{{announce}}' cannot be expanded: it names {{announce}}, which cannot be expanded: "
        "{{announce}}.primary_port = '{{x[}}' has an invalid template reference: Badly formed address .x[")


def test_a_named_struct_past_the_limits_names_the_field_that_names_it():
    # A struct bound with .bind() is invisible to config.refs; this one loops inside itself.
    looping = Announcer(primary_port="{{zk_path}}{{zk_path}}", zk_path="{{primary_port}}")
    j = job(process("a", "x"), contact="{{s}}").bind(s=looping)
    tree, out = expand(j)
    assert tree is None
    assert out.problems[0].startswith(
        "job.contact = '{{s}}' cannot be expanded: {{s}}.primary_port = '{{zk_path}}{{zk_path}}' needs more than ")


def test_the_unbound_references_inside_a_named_struct_are_not_the_fields_own():
    j = job(process("a", "x"), contact="{{announce}}", announce=Announcer(primary_port="{{thermos.x}}"))
    _, out = expand(j)
    assert ("job.contact", "{{thermos.x}}") in out.unbound  # the rendered struct has it
    assert ("job.announce.primary_port", "{{thermos.x}}") in out.unbound
    assert [path for path, _ in out.unbound if not path.startswith("job.")] == []


def test_port_names_of_a_job_that_cannot_expand_is_a_config_error():
    j = job(process("a", "{{x}}")).bind(x="{{x}}{{x}}")
    with pytest.raises(ConfigError, match=r"^invalid job: job.task.processes\[0\].cmdline = '\{\{x\}\}' needs more") as info:
        portmap.port_names(j)
    assert info.value.problems == (str(info.value).removeprefix("invalid job: "),)


def test_the_exact_budget_is_enough_and_one_step_less_is_not():
    j = job(process("a", "run {{role}} {{thermos.ports[http]}}"), contact="{{name}}")
    tree, out = expand(j)
    steps, chars = out.steps, out.chars
    assert expand(j, limits=Limits(base_steps=steps, steps_per_ref=0))[0] == tree
    assert expand(j, limits=Limits(base_steps=steps - 1, steps_per_ref=0))[0] is None
    assert expand(j, limits=Limits(job_chars=chars))[0] == tree
    assert expand(j, limits=Limits(job_chars=chars - 1))[0] is None


def test_steps_and_characters_are_counted_from_zero():
    # '/{{expected_response}}' becomes '/ok': one reference read, two scopes searched (the
    # 'self' scope, then the struct's own fields), and 3 characters produced; the strings
    # without a template cost nothing.
    _, out = expand(HttpHealthChecker(endpoint="/{{expected_response}}"), "checker")
    assert (out.steps, out.chars) == (1 + 2, 3)


def test_a_loop_that_does_not_grow_is_a_cycle_after_pystachios_100_passes():
    j = job(process("a", "{{x}}")).bind(x="{{y}}", y="{{x}}")
    tree, out = expand(j)
    assert out.problems == ["job.task.processes[0].cmdline = '{{x}}' refers to itself (a template reference cycle)"]


def test_bind_reports_a_bound_loop_as_a_config_error():
    j = job(process("a", "{{x}}")).bind(x="{{x}}{{x}}")
    with pytest.raises(ConfigError, match=r"job.task.processes\[0\].cmdline = '\{\{x\}\}' (needs more|expands)"):
        bind(j, instance=0, ports={}, task_id="t", hostname="h", user="u")


def test_an_escaped_reference_that_would_loop_later_is_refused_at_load():
    # '{{&role}}' comes out of the first expansion as '{{role}}', which the next one follows.
    j = job(process("a", "x"), contact="a{{&contact}}{{&contact}}")
    with pytest.raises(ConfigError) as info:
        prepare_job(j, "test")
    assert info.value.problems == (
        "job.contact = 'a{{contact}}{{contact}}' refers to itself (a template reference cycle)",)


def test_the_limits_allow_a_large_ordinary_job():
    procs = [process(f"p{i}", "serve {{role}} {{name}} {{thermos.ports[http]}} {{mesos.instance}}")
             for i in range(100)]
    tree, out = expand(job(*procs))
    assert out.problems == [] and out.steps < templates.MAX_TEMPLATE_STEPS // 10
    assert tree["task"]["processes"][99]["cmdline"] == "serve r p99 {{thermos.ports[http]}} {{mesos.instance}}"


def test_expand_field_is_the_field_as_pystachio_gives_it():
    j = job(process("a", "x"), role="{{environment}}-r", max_task_failures=3)
    assert expand_field(j, "role") == "e-r" == str(j.role())
    assert expand_field(j, "max_task_failures") == 3
    assert expand_field(j, "contact") is None  # unset
    assert expand_field(j.bind(x="{{x}}{{x}}")(contact="{{x}}"), "contact", KEY_LIMITS) is None
    assert expand_field(j(contact="{{x[}}"), "contact") is None  # an invalid reference


def test_expand_field_works_within_the_key_limits_by_default():
    j = job(process("a", "x"), contact="{{x}}").bind(x="y" * 5000)
    assert expand_field(j, "contact") is None  # 5000 characters: past KEY_LIMITS' 4096
    assert expand_field(j, "contact", Limits()) == "y" * 5000


# ---- the property: expansion of any mesh of references ends, quickly ----

FIELDS = ("role", "environment", "contact", "name", "task.name", "task.processes[0].name",
          "task.processes[0].cmdline", "task.processes[1].cmdline")
REFS = ("role", "environment", "contact", "name", "task.name", "processes[0].name", "processes[1].cmdline",
        "cmdline", "task.processes[0].cmdline", "thermos.task_id", "nothing", "&role", "&cmdline")


def _set(tree: dict, dotted: str, value: str) -> None:
    *heads, last = dotted.replace("[", ".").replace("]", "").split(".")
    node = tree
    for head in heads:
        node = node[int(head)] if head.isdigit() else node[head]
    node[last] = value


texts = st.lists(st.one_of(st.sampled_from(REFS).map(lambda r: "{{" + r + "}}"), st.sampled_from(["a", "-", ""])),
                 min_size=1, max_size=4).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), texts, max_size=len(FIELDS)))
def test_expanding_any_mesh_of_references_ends_quickly(assignment):
    tree = {"cluster": "c", "role": "r", "environment": "e", "name": "n",
            "task": {"processes": [{"name": "p", "cmdline": "x"}, {"name": "q", "cmdline": "y"}]}}
    for field, text in assignment.items():
        _set(tree, field, text)
    j = from_tree(Job, tree)
    result, secs = timed(lambda: prepare_job(j, "test"))
    assert secs < HANG_BOUND_SECS, assignment
    assert isinstance(result, (ConfigError, Job))


def _chain(links: int):
    """A job whose command names v0, bound to '{{v1}}', ... to v<links>, bound to 'end'."""
    names = {f"v{i}": f"{{{{v{i + 1}}}}}" for i in range(links)}
    return job(process("a", "echo {{v0}}")).bind(**names).bind(**{f"v{links}": "end"})


def test_a_chain_of_bound_names_longer_than_pystachio_follows_is_not_called_a_cycle():
    """It was `refers to itself (a template reference cycle)`: no name in it leads back."""
    tree, out = expand(_chain(98))
    assert (tree["task"]["processes"][0]["cmdline"], out.problems) == ("echo end", [])
    _, out = expand(_chain(99))
    assert out.problems == [
        "job.task.processes[0].cmdline = 'echo {{v0}}' cannot be expanded: its references lead through more "
        "than 100 levels of others (pystachio's limit: the Aurora client cannot expand it either)"]



def test_a_chain_of_bind_flags_past_pystachio_s_100_levels_runs_out_of_the_step_budget_first():
    """docs/contract.md §3: each `--bind` is a scope of its own that each reference of the
    chain searches (its cost grows as its length squared), so 100 of them take more than
    this job's 5,600 steps (three references written in it), said as the budget; the same
    chain bound in one `.bind()` is said as pystachio's 100 levels."""
    from config.loader import bind_values

    links = [(f"v{i}", f"{{{{v{i + 1}}}}}") for i in range(100)] + [("v100", "end")]
    (flagged,) = bind_values([job(process("a", "echo {{v0}}"))], links)
    assert expand(flagged)[1].problems == [
        "job.task.processes[0].cmdline = 'echo {{v0}}' needs more than 5600 template steps to expand "
        "(its references repeat or lead to each other too often: a long chain of bound names, "
        "`--bind` flags among them)"]
    assert expand(job(process("a", "echo {{v0}}")).bind(**dict(links)))[1].problems == [
        "job.task.processes[0].cmdline = 'echo {{v0}}' cannot be expanded: its references lead through more "
        "than 100 levels of others (pystachio's limit: the Aurora client cannot expand it either)"]
