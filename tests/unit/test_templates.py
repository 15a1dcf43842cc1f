"""`<<ref>>` spelling, port discovery and binding a job into a JobSpec."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from config import loader, spec, templates
from config.bind import bind, bound_job
from config.errors import BindError, ConfigError
from config.loader import load_job
from config.portmap import port_names, port_names_of_tree, port_refs
from config.schema import (
    Announcer,
    Constraint,
    DisableLifecycle,
    Docker,
    HealthCheckConfig,
    HealthCheckerConfig,
    HttpHealthChecker,
    HttpLifecycleConfig,
    LifecycleConfig,
    Logger,
    Parameter,
    Ref,
    RotatePolicy,
    ShellHealthChecker,
    TcpHealthChecker,
    UpdateConfig,
    VariableBatchUpdateStrategy,
)
from config.templates import flatten, normalize_angle_refs, refs_in
from tests.support.configs import job, process, write_config

BIND = dict(instance=3, task_id="task-7", hostname="host.example", user="alice")


def bound(j, **ports):
    return bind(j, ports=ports, **BIND)


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
                                  resources=Resources(cpu=1, ram=1, disk=1)),
                        cluster='c', role='r', environment='e')]
    """)
    assert port_names(load_job(path)) == ["http"]


# ---- bind ----


def test_bind_expands_every_namespace_into_the_job_spec():
    j = job(process("web", "serve --port {{thermos.ports[http]}} --id {{thermos.task_id}} "
                           "--user {{thermos.user}} --shard {{mesos.instance}} --host {{mesos.hostname}} "
                           "--as {{role}}/{{environment}}/{{cluster}}"),
            name="svc", service=True, max_task_failures=-1)
    s = bound(j, http=31000, other=31001)
    assert s.task.processes[0].cmdline == ("serve --port 31000 --id task-7 --user alice --shard 3 "
                                           "--host host.example --as r/e/c")
    assert (s.role, s.environment, s.cluster, s.name, s.instance, s.task_id) == ("r", "e", "c", "svc", 3, "task-7")
    assert s.key == "c/r/e/svc" and s.label == "svc.3"
    assert s.service is True and s.max_task_failures == -1
    assert s.ports == {"http": 31000, "other": 31001}


def test_bind_maps_process_and_task_fields():
    j = job(process("a", "x", max_failures=3, daemon=True, ephemeral=True, min_duration=0.05,
                    logger=Logger(destination="both", mode="rotate", rotate=RotatePolicy(log_size=2048))),
            process("b", "y", final=True),
            process("c", "z"),
            task_fields={"constraints": [{"order": ["c", "a"]}], "max_failures": 2, "max_concurrency": 4,
                         "finalization_wait": 0.5, "name": "tsk"})
    s = bound(j)
    assert s.task == spec.TaskSpec(
        name="tsk",
        processes=(
            spec.ProcessSpec(name="a", cmdline="x", max_failures=3, daemon=True, ephemeral=True,
                             min_duration_secs=0.05,
                             logger=spec.LoggerSpec(spec.LogDestination.BOTH, spec.LogMode.ROTATE, 2048, 5)),
            spec.ProcessSpec(name="b", cmdline="y", final=True, logger_unset=True),  # no logger: an
            spec.ProcessSpec(name="c", cmdline="z", logger_unset=True),  # executor's defaults apply
        ),
        constraints=(("c", "a"),), max_failures=2, max_concurrency=4, finalization_wait_secs=0.5,
        disk_bytes=1024,  # Resources.disk: the disk-limit check's limit
        cpu=0.1, ram_bytes=1024)  # shown against the task's use (stoker status, the observer)
    assert isinstance(s.task.processes[1].min_duration_secs, float)
    assert isinstance(s.task.cpu, float)


def test_bind_uses_logger_defaults_when_unset():
    s = bound(job(process("a", "x", logger=Logger(mode="rotate"))))
    assert s.task.processes[0].logger == spec.LoggerSpec(mode=spec.LogMode.ROTATE)


HEALTH_PORT = process("web", "serve {{thermos.ports[health]}}")
SHELL = HealthCheckerConfig(shell=ShellHealthChecker(shell_command="probe {{thermos.ports[health]}} {{thermos.task_id}}"))
TCP = HealthCheckerConfig(tcp=TcpHealthChecker())


@pytest.mark.parametrize("checker,ports,kind,port", [
    (None, {}, spec.CheckKind.NONE, None),
    (None, {"health": 9000}, spec.CheckKind.HTTP, 9000),
    (HealthCheckerConfig(http=HttpHealthChecker(endpoint="/ready")), {}, spec.CheckKind.NONE, None),
    (HealthCheckerConfig(), {"health": 9000}, spec.CheckKind.HTTP, 9000),
    (SHELL, {"health": 9000}, spec.CheckKind.SHELL, None),
    (HealthCheckerConfig(shell=ShellHealthChecker(shell_command="true"), http=HttpHealthChecker()),
     {"health": 9000}, spec.CheckKind.SHELL, None),
    (TCP, {"health": 9000}, spec.CheckKind.TCP, 9000),
    (TCP, {}, spec.CheckKind.NONE, None),
])
def test_health_kind_selection(checker, ports, kind, port):
    hc = HealthCheckConfig() if checker is None else HealthCheckConfig(health_checker=checker)
    procs = [HEALTH_PORT] if "health" in ports else [process("web", "sleep 1")]
    s = bound(job(*procs, health_check_config=hc), **ports)
    assert (s.health.kind, s.health.port) == (kind, port)


def test_health_spec_fields():
    hc = HealthCheckConfig(initial_interval_secs=0.5, interval_secs=0.1, timeout_secs=0.2,
                           max_consecutive_failures=2, min_consecutive_successes=3,
                           health_checker=HealthCheckerConfig(http=HttpHealthChecker(
                               endpoint="/ready", expected_response="", expected_response_code=204)))
    s = bound(job(HEALTH_PORT, health_check_config=hc), health=9000)
    assert s.health == spec.HealthSpec(kind=spec.CheckKind.HTTP, initial_interval_secs=0.5, interval_secs=0.1,
                                       timeout_secs=0.2, max_consecutive_failures=2, min_consecutive_successes=3,
                                       port=9000, endpoint="/ready", expected_response="",
                                       expected_response_code=204)


def test_shell_command_is_expanded():
    s = bound(job(HEALTH_PORT, health_check_config=HealthCheckConfig(health_checker=SHELL)), health=9000)
    assert s.health.shell_command == "probe 9000 task-7"


def test_lifecycle_spec():
    assert bound(job(process("a", "x"))).lifecycle is None  # no `health` port
    s = bound(job(HEALTH_PORT), health=9000)
    assert s.lifecycle == spec.LifecycleSpec(port=9000)
    assert bound(job(HEALTH_PORT, lifecycle=DisableLifecycle), health=9000).lifecycle is None
    custom = job(process("a", "x"), lifecycle=LifecycleConfig(http=HttpLifecycleConfig(
        port="admin", graceful_shutdown_wait_secs=0.5, shutdown_endpoint="/die")))
    assert bound(custom, admin=7000).lifecycle == spec.LifecycleSpec(
        port=7000, shutdown_endpoint="/die", graceful_shutdown_wait_secs=0.5)


def test_unbound_references_are_all_named():
    j = job(process("a", "run {{foo.bar}} {{thermos.ports[http]}}"), process("b", "{{mesos.nothing}}"))
    with pytest.raises(BindError) as info:
        bound(j, http=1)
    assert str(info.value).endswith("unbound template references: {{foo.bar}}, {{mesos.nothing}}")
    assert info.value.unbound == ("{{foo.bar}}", "{{mesos.nothing}}")


def test_unbound_reference_in_the_health_command_is_named():
    hc = HealthCheckConfig(health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command="x {{nope}}")))
    with pytest.raises(BindError, match=r"unbound template references: \{\{nope\}\}"):
        bound(job(process("a", "x"), health_check_config=hc))


def test_unbound_references_in_fields_the_task_does_not_use_are_ignored():
    s = bound(job(process("a", "x"), contact="{{owner}}@example.com"))
    assert s.task.processes[0].cmdline == "x"


def test_missing_ports_are_named():
    j = job(process("a", "run {{thermos.ports[http]}} {{thermos.ports[admin]}} {{thermos.ports[db]}}"))
    with pytest.raises(BindError) as info:
        bound(j, http=1)
    message = str(info.value)
    assert "missing ports: admin, db (assigned: http)" in message
    assert info.value.missing_ports == ("admin", "db")
    assert "{{thermos.ports[admin]}}" in message


def _ref(name: str) -> str:
    return "{{" + name + "}}"


def _refs(count: int, sep: str = " ") -> str:
    return sep.join(_ref(f"u{i:02d}") for i in range(count))


@pytest.mark.parametrize("cmdline, ports, message", [
    # a missing port is also an unbound reference, and both are named
    ("run {{thermos.ports[http]}}", {},
     "job c/r/e/a: missing ports: http (assigned: none); unbound template references: {{thermos.ports[http]}}"),
    ("run {{thermos.ports[http]}} {{thermos.ports[db]}}", {"x": 1, "admin": 2},
     "job c/r/e/a: missing ports: db, http (assigned: admin, x); "
     "unbound template references: {{thermos.ports[db]}}, {{thermos.ports[http]}}"),
    ("run {{nope}}", {"http": 1}, "job c/r/e/a: unbound template references: {{nope}}"),
    # at most 20 references are named, each cut to 80 characters
    (_refs(20), {}, "job c/r/e/a: unbound template references: " + _refs(20, ", ")),
    (_refs(21), {}, "job c/r/e/a: unbound template references: "
     + _refs(20, ", ") + " and 1 more"),
    (_refs(25), {}, "job c/r/e/a: unbound template references: "
     + _refs(20, ", ") + " and 5 more"),
    ("{{" + "x" * 76 + "}}", {}, "job c/r/e/a: unbound template references: {{" + "x" * 76 + "}}"),
    ("{{" + "x" * 77 + "}}", {}, "job c/r/e/a: unbound template references: {{" + "x" * 75 + "..."),
])
def test_what_bind_could_not_bind_is_named(cmdline, ports, message):
    with pytest.raises(BindError) as info:
        bind(job(process("a", cmdline)), ports=ports, **BIND)
    assert str(info.value) == message


def test_long_lists_in_a_bind_error_are_cut():
    names = [f"p{i:03d}" for i in range(100)]
    cmdline = " ".join(_ref(f"thermos.ports[{n}]") for n in names)
    have = {f"h{i:03d}": 1000 + i for i in range(100)}
    with pytest.raises(BindError) as info:
        bind(job(process("a", cmdline), name="n" * 250), ports=have, **BIND)
    listed, assigned = ", ".join(names), ", ".join(sorted(have))
    refs = ", ".join(_ref(f"thermos.ports[{n}]") for n in names[:20])
    assert str(info.value) == (f"job c/r/e/{'n' * 194}: missing ports: {listed[:400]} (assigned: {assigned[:400]}); "
                               f"unbound template references: {refs} and 80 more")
    assert info.value.missing_ports == tuple(names)


def test_a_bound_value_that_loops_is_a_config_error_naming_the_job_and_the_field():
    with pytest.raises(ConfigError) as info:
        bind(job(process("a", "run {{mesos.hostname}}")), ports={}, instance=0, task_id="t",
             hostname="{{mesos.hostname}}{{mesos.hostname}}", user="u")
    assert not isinstance(info.value, BindError)
    assert info.value.problems == (str(info.value).removeprefix("job c/r/e/a: "),)
    assert str(info.value) == ("job c/r/e/a: job.task.processes[0].cmdline = 'run {{mesos.hostname}}' needs "
                               "more than 5200 template steps to expand (its references repeat each other "
                               "too often)")


@pytest.mark.parametrize("ports, shown", [
    ({"http": 65536}, "http=65536"), ({"http": 0}, "http=0"), ({"http": -1}, "http=-1"),
    ({"http": 70000}, "http=70000"), ({"http": "80"}, "http='80'"), ({"http": True}, "http=True"),
    ({"http": 1.5}, "http=1.5"), ({"http": 80, "admin": 0, "db": 65536}, "admin=0, db=65536"),
])
def test_port_numbers_out_of_range_are_refused_naming_the_port(ports, shown):
    with pytest.raises(ConfigError) as info:
        bound(job(process("a", "{{thermos.ports[http]}}")), **ports)
    assert str(info.value) == f"invalid ports (each must be a name and a number in 1..65535): {shown}"


@pytest.mark.parametrize("number", [1, 65535])
def test_the_first_and_the_last_port_numbers_are_accepted(number):
    assert bound(job(process("a", "serve {{thermos.ports[http]}}")), http=number).task.processes[0].cmdline \
        == f"serve {number}"


def test_a_port_name_must_be_a_string():
    with pytest.raises(ConfigError, match=r"^invalid ports \(each must be a name and a number in 1..65535\): 7=80$"):
        bind(job(process("a", "x")), ports={7: 80}, **BIND)  # type: ignore[dict-item]


# ---- what bind carries through, field by field (no default may replace a value) ----


def test_bind_carries_non_default_logger_and_lifecycle_fields():
    j = job(process("a", "serve {{thermos.ports[health]}}",
                    logger=Logger(destination="console", mode="rotate",
                                  rotate=RotatePolicy(log_size=4096, backups=3))),
            lifecycle=LifecycleConfig(http=HttpLifecycleConfig(
                graceful_shutdown_endpoint="/bye", shutdown_endpoint="/die",
                graceful_shutdown_wait_secs=1.5, shutdown_wait_secs=2.5)))
    s = bound(j, health=9000)
    assert s.task.processes[0].logger == spec.LoggerSpec(spec.LogDestination.CONSOLE, spec.LogMode.ROTATE,
                                                         log_size_bytes=4096, backups=3)
    assert s.lifecycle == spec.LifecycleSpec(port=9000, graceful_shutdown_endpoint="/bye",
                                             shutdown_endpoint="/die", graceful_shutdown_wait_secs=1.5,
                                             shutdown_wait_secs=2.5)
    assert isinstance(s.lifecycle.shutdown_wait_secs, float)


def test_a_rotate_policy_left_out_gives_the_spec_defaults():
    expected = spec.LoggerSpec(spec.LogDestination.BOTH, spec.LogMode.ROTATE,
                               log_size_bytes=100 * 1024 * 1024, backups=5)
    s = bound(job(process("a", "x", logger=Logger(mode="rotate", destination="both"))))
    assert s.task.processes[0].logger == expected
    s = bound(job(process("a", "x", logger=Logger(mode="rotate", destination="both", rotate=RotatePolicy()))))
    assert s.task.processes[0].logger == expected  # RotatePolicy's defaults are the same numbers


def test_a_constraint_without_order_binds_to_an_empty_order():
    s = bound(job(process("a", "x"), process("b", "y"),
                  task_fields={"constraints": [Constraint(), Constraint(order=["a", "b"])]}))
    assert s.task.constraints == ((), ("a", "b"))


def test_bind_expands_map_and_choice_fields():
    # Map (announce.portmap, job constraints) and Choice (container, update_strategy) values
    # are expanded like any other; bind reads none of them, so flatten's result shows it.
    j = job(process("a", "x"), name="svc",
            announce=Announcer(primary_port="{{name}}-port", portmap={"{{role}}": "{{primary_port}}"}),
            container=Docker(image="img:{{environment}}", parameters=[Parameter(name="{{role}}", value="v")]),
            update_config=UpdateConfig(update_strategy=VariableBatchUpdateStrategy(batch_sizes=[1, 2])),
            constraints={"host": "{{cluster}}"})
    flat, _ = templates.expand(flatten(j))
    assert flat["announce"] == {"primary_port": "svc-port", "portmap": {"r": "svc-port"}}
    assert flat["container"] == {"image": "img:e", "parameters": [{"name": "r", "value": "v"}]}
    assert flat["update_config"]["update_strategy"] == {"batch_sizes": [1, 2], "autopause_after_batch": False}
    assert flat["constraints"] == {"host": "c"}
    assert bound(j).name == "svc"


def test_a_cycle_inside_a_map_or_a_choice_is_found():
    j = job(process("a", "x"), container=Docker(image="{{image}}:1"),
            announce=Announcer(portmap={"a": "{{portmap}}"}))
    with pytest.raises(ConfigError) as info:
        flatten(j)
    assert info.value.problems == (
        "job.announce.portmap.a = '{{portmap}}' refers to itself (a template reference cycle)",
        "job.container.image = '{{image}}:1' refers to itself (a template reference cycle)")


def test_bind_does_not_change_the_job():
    j = job(process("a", "run {{thermos.ports[http]}} {{mesos.instance}}"))
    before = j.json_dumps()
    bound(j, http=5)
    assert j.json_dumps() == before
    assert json.loads(j.json_dumps())["task"]["processes"][0]["cmdline"] == "run {{thermos.ports[http]}} {{mesos.instance}}"


def test_bind_accepts_angle_refs_in_an_unloaded_job():
    s = bound(job(process("a", "run <<thermos.ports[http]>>")), http=8080)
    assert s.task.processes[0].cmdline == "run 8080"


@pytest.mark.parametrize("tree,holds", [
    ({"a": "sleep 1", "b": [1, "x", {"c": True}]}, False),
    ({"a": ["x", {"b": "{{thermos.ports[http]}}"}]}, True),
    ({"a": "run <<thermos.task_id>>"}, True),
    ({"a": "cat <<EOF"}, True),  # perhaps a heredoc, perhaps not: bind flattens to see
    ("{{&escaped}}", True),
])
def test_holds_templates_looks_in_every_string(tree, holds):
    assert templates.holds_templates(tree) is holds


def test_a_job_without_templates_binds_as_its_flattening_does():
    """bind skips flattening a job that holds no `{{` or `<<` (loaded jobs of plain commands,
    the common case): the spec and the bound tree are the same either way."""
    plain = loader.prepare_job(job(process("a", "sleep 5"), process("b", "echo hi")), "t")
    assert not templates.holds_templates(templates.raw(plain))
    direct = bound_job(plain, ports={}, **BIND)
    assert direct == bound_job(flatten(plain), ports={}, **BIND)
    assert [p.name for p in direct.spec.task.processes] == ["a", "b"]


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


def test_the_loader_checks_port_references_with_the_templates_pattern():
    assert loader.PORT_REF is templates.PORT_REF


# ---- what binding checks and gives once the job is bound ----

ANGLED = process("web", "serve <<thermos.ports[http]>> {{thermos.ports[admin]}} <<role>>")


def test_an_aurora_payload_keeps_its_angle_brackets_and_needs_no_port_for_them():
    # Aurora's own payload never treated <<ref>> as a template (angle_refs=False); a .aurora
    # file or a task document does.
    j = job(ANGLED)
    assert port_names(j) == ["admin", "http"] and port_names(j, angle_refs=False) == ["admin"]
    tree = templates.expand(j)[0]
    assert port_names_of_tree(tree) == ["admin", "http"]
    assert port_names_of_tree(tree, angle_refs=False) == ["admin"]
    payload = bind(j, ports={"admin": 9}, angle_refs=False, **BIND)
    assert payload.task.processes[0].cmdline == "serve <<thermos.ports[http]>> 9 <<role>>"
    assert bound(j, admin=9, http=8).task.processes[0].cmdline == "serve 8 9 r"
    with pytest.raises(BindError, match=r"missing ports: http \(assigned: admin\)"):
        bound(j, admin=9)


def test_the_bound_job_is_given_as_plain_values_too():
    both = bound_job(job(ANGLED), ports={"admin": 9, "http": 8}, **BIND)
    assert both.tree["task"]["processes"][0]["cmdline"] == "serve 8 9 r"
    assert both.spec == bound(job(ANGLED), admin=9, http=8)


@pytest.mark.parametrize("fields, hostname, problems", [
    (dict(health_check_config=HealthCheckConfig(health_checker=HealthCheckerConfig(
        http=HttpHealthChecker(endpoint="{{mesos.hostname}}")))), "ready",
     ["job.health_check_config.health_checker.http.endpoint = 'ready' must be an absolute path starting "
      "with one '/', such as '/health'"]),
    (dict(lifecycle=LifecycleConfig(http=HttpLifecycleConfig(graceful_shutdown_endpoint="/{{mesos.hostname}}",
                                                             shutdown_endpoint="{{mesos.hostname}}"))), "/x",
     ["job.lifecycle.http.graceful_shutdown_endpoint = '//x' must be an absolute path starting with one '/', "
      "such as '/health'"]),  # the shutdown endpoint, '/x', is fine
])
def test_templated_endpoints_are_checked_once_bound(fields, hostname, problems):
    j = job(HEALTH_PORT, **fields)
    with pytest.raises(ConfigError) as info:
        bind(j, ports={"health": 9000}, instance=0, task_id="t", hostname=hostname, user="u")
    assert info.value.problems == tuple(problems)
    assert str(info.value).startswith("job c/r/e/web (bound): ")


def test_a_process_name_is_checked_again_once_its_templates_are_bound():
    j = job(process("p-{{mesos.hostname}}", "x"), name="j")
    assert bind(j, ports={}, instance=0, task_id="t", hostname="h", user="u").task.processes[0].name == "p-h"
    with pytest.raises(ConfigError) as info:
        bind(j, ports={}, instance=0, task_id="t", hostname="a/b", user="u")
    (problem,) = info.value.problems
    assert problem.startswith("job.task.processes[0].name = 'p-a/b' is not a safe process name")
    assert str(info.value) == f"job c/r/e/j (bound): {problem}"


@pytest.mark.parametrize("name", ["{{}}", "web-{{}}"])
def test_what_still_looks_like_a_template_once_bound_is_part_of_the_name(name):
    # `{{}}` is no reference: it stays as written when the job is bound, and a bound name
    # with braces is no directory name (the fault suite's generated documents found it).
    j = job(process(name, "x"), name="j")
    with pytest.raises(ConfigError) as info:
        bind(j, ports={}, instance=0, task_id="t", hostname="h", user="u")
    (problem,) = info.value.problems
    assert "is not a safe process name" in problem
    assert str(info.value).startswith("job c/r/e/j (bound): job.task.processes[0].name = ")


NOT_CHECKED = ("job.health_check_config configures {} health check, but the task has no port named 'health', "
               "so it is not health-checked: reference {{{{thermos.ports[health]}}}} in a process, or alias "
               "the port the service answers on, e.g. announce = Announcer(portmap={{'health': 'http'}})")


@pytest.mark.parametrize("hc, ports, warnings", [
    (HealthCheckConfig(), {}, ()),  # nothing asked for: nothing to say
    (HealthCheckConfig(interval_secs=2), {}, (NOT_CHECKED.format("an HTTP"),)),  # HTTP by default
    (HealthCheckConfig(health_checker=HealthCheckerConfig(http=HttpHealthChecker(endpoint="/ready"))), {},
     (NOT_CHECKED.format("an HTTP"),)),
    (HealthCheckConfig(health_checker=TCP), {}, (NOT_CHECKED.format("a TCP"),)),
    (HealthCheckConfig(interval_secs=2), {"health": 9000}, ()),  # it runs
    (HealthCheckConfig(health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command="true"))),
     {}, ()),  # a shell check needs no port
], ids=["default", "explicit-http-default", "explicit-http", "tcp", "http-with-port", "shell"])
def test_a_health_check_asked_for_that_cannot_run_is_a_warning(hc, ports, warnings):
    procs = [HEALTH_PORT] if ports else [process("web", "sleep 1")]
    assert bound(job(*procs, health_check_config=hc), **ports).warnings == warnings


@pytest.mark.parametrize("ref, runtime", [
    ("thermos.ports[http]", True), ("thermos.task_id", True), ("mesos.instance", True),
    ("mesos.hostname", True), ("mesos.nothing", False), ("mesos.instances", False),
    ("thermosx.y", False), ("role", False),
])
def test_only_thermos_and_the_mesos_instance_and_hostname_are_bound_when_the_task_starts(ref, runtime):
    assert templates.is_runtime_ref(ref) is runtime


def test_what_must_be_bound_at_load_is_every_other_reference_once_in_the_order_found():
    j = job(process("a", "{{thermos.ports[http]}} {{thermos.task_id}} {{mesos.instance}} {{mesos.hostname}} "
                         "{{mesos.nothing}} {{x}} {{x}}"), contact="{{y}}")
    assert templates.load_time_unbound(j) == ["{{y}}", "{{mesos.nothing}}", "{{x}}"]


def test_the_announcement_is_carried_into_the_job_spec_when_the_job_has_one():
    from config.announcer import AnnouncerSpec

    s = bound(job(process("web", "serve {{thermos.ports[http]}}"),
                  announce=Announcer(primary_port="http", portmap={"health": "http"})), http=31000)
    assert s.announce == AnnouncerSpec(primary_port="http", portmap={"health": "http"})
    assert bound(job(process("web", "x"))).announce is None
