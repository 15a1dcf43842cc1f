"""Aurora's TaskInfo.data: AssignedTasks written by thriftpy2 from Stoker's IDL in both field
orders decode to the same AuroraTask, the documented byte-level example decodes and is
what an ascending-order writer produces, unknown fields of every type are skipped, each
unusable task is one TaskDataError naming the field, and the two formats are told apart
by content (docs/contract.md §2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import attrs
import pytest

from config.aurora import task as aurora
from config.aurora.binary import LIST, MAP, SET, STRING, STRUCT, Unknown, WireFormat, sniff
from config.aurora.errors import TaskDataError, received
from config.aurora.task import AuroraTask, ContainerKind, Image, JobKey, Volume, VolumeMode
from config.aurora.taskdata import decode_task_data
from config.aurora.wire import idl
from config.document import TaskDocument, encode
from config.errors import ConfigError, TaskDocumentError
from config.loader import load_job
from tests.support.aurora_tasks import (
    EXAMPLE,
    JOB_JSON,
    TASK_ID,
    Order,
    add_future_fields,
    module,
    scheduler_task,
)
from tests.support.aurora_tasks import encode as thrift_encode
from tests.support.configs import EXAMPLES, REPO


def example_content(m):
    config = m.TaskConfig(executorConfig=m.ExecutorConfig(name="AuroraExecutor", data='{"name": "hello"}'),
                          job=m.JobKey(role="www-data", environment="prod", name="hello"),
                          container=m.Container(mesos=m.MesosContainer()))
    return m.AssignedTask(taskId="T1", slaveHost="agent1", task=config,
                          assignedPorts={"health": 31001, "http": 31002}, instanceId=0)


def test_the_documented_example_decodes():
    assert len(EXAMPLE) == 168
    assert decode_task_data(EXAMPLE) == AuroraTask(
        task_id="T1", instance_id=0, job=JobKey("www-data", "prod", "hello"), executor_name="AuroraExecutor",
        executor_data='{"name": "hello"}', slave_host="agent1", assigned_ports={"health": 31001, "http": 31002})


def test_the_documented_example_is_what_an_ascending_writer_writes():
    assert thrift_encode(example_content(module(Order.ASCENDING))) == EXAMPLE
    declared = thrift_encode(example_content(module(Order.DECLARATION)))
    # TaskConfig declares job (28) before executorConfig (25): same length, other bytes.
    assert len(declared) == len(EXAMPLE) and declared != EXAMPLE
    assert declared[25:28] == bytes.fromhex("0c001c")
    assert decode_task_data(declared) == decode_task_data(EXAMPLE)


CONTAINERS = {
    "mesos": aurora.Container(ContainerKind.MESOS),
    "mesos-volumes": aurora.Container(ContainerKind.MESOS, volumes=(
        Volume("/data", "/srv/data", VolumeMode.RO), Volume("/tmp/scratch", "/var/scratch", VolumeMode.RW))),
    "docker-image": aurora.Container(ContainerKind.MESOS_WITH_IMAGE, image=Image("docker", "library/debian", "bookworm"),
                                     volumes=(Volume("/data", "/srv/data", VolumeMode.RO),
                                              Volume("/tmp/scratch", "/var/scratch", VolumeMode.RW))),
    "appc-image": aurora.Container(ContainerKind.MESOS_WITH_IMAGE,
                                   image=Image("appc", "example.com/debian", "sha512-0123abcd")),
    "docker": aurora.Container(ContainerKind.DOCKER, docker_image="debian:bookworm",
                               docker_parameters=(("env", "A=1"), ("label", "x=y"))),
}


@pytest.mark.parametrize("order", list(Order), ids=lambda o: o.value)
@pytest.mark.parametrize("kind", list(CONTAINERS))
def test_a_scheduler_task_decodes_in_either_field_order(order, kind):
    decoded = decode_task_data(thrift_encode(scheduler_task(module(order), kind)))
    assert (decoded.task_id, decoded.slave_host, decoded.instance_id) == (TASK_ID, "agent1.example.com", 3)
    assert decoded.slave_id == "a1b2c3d4-0000-4000-8000-000000000001-S0"
    assert decoded.assigned_ports == {"http": 31000, "health": 31001}
    assert (decoded.job, str(decoded.job)) == (JobKey("www-data", "prod", "hello"), "www-data/prod/hello")
    assert (decoded.executor_name, decoded.executor_data) == ("AuroraExecutor", JOB_JSON)
    assert decoded.container == CONTAINERS[kind]
    assert decoded.resources == aurora.Resources(cpus=1.0, ram_mb=128, disk_mb=256, gpus=0,
                                                 named_ports=("health", "http"))
    assert decoded.constraints == (aurora.Constraint("host", limit=1),
                                   aurora.Constraint("rack", values=("r1", "r2"), negated=True))
    assert decoded.metadata == (("team", "search"), ("tier", "gold"))
    assert (decoded.tier, decoded.production, decoded.is_service) == ("preemptible", False, True)
    assert (decoded.priority, decoded.max_task_failures, decoded.owner_user) == (0, 1, "www-data")
    assert decoded.contact_email == "ops@example.com"
    assert decoded.task_links == (("http", "http://%host%:%port:http%"),)
    assert decoded.fetcher_uris == (aurora.FetcherUri("https://example.com/app.tgz", True, False, "app.tgz"),)
    assert decoded.partition_policy == aurora.PartitionPolicy(True, 300)
    assert decoded.sla_policy == aurora.SlaPolicy("percentage", percentage=95.0, duration_secs=1800)


def test_the_two_orders_differ_on_the_wire_and_not_after_decoding():
    ascending, declared = (thrift_encode(scheduler_task(module(order))) for order in Order)
    assert ascending != declared and sorted(ascending) == sorted(declared)
    assert decode_task_data(ascending) == decode_task_data(declared)


@pytest.mark.parametrize("policy, expected", [
    ("count", aurora.SlaPolicy("count", count=2, duration_secs=60)),
    ("coordinator", aurora.SlaPolicy("coordinator", coordinator_url="http://c", status_key="ok")),
])
def test_other_sla_policies(policy, expected):
    m = module(Order.ASCENDING)
    sla = (m.SlaPolicy(countSlaPolicy=m.CountSlaPolicy(count=2, durationSecs=60)) if policy == "count" else
           m.SlaPolicy(coordinatorSlaPolicy=m.CoordinatorSlaPolicy(coordinatorUrl="http://c", statusKey="ok")))
    assert decode_task_data(thrift_encode(scheduler_task(m, slaPolicy=sla))).sla_policy == expected


@pytest.mark.parametrize("order", list(Order), ids=lambda o: o.value)
def test_unknown_fields_of_every_type_are_skipped(order):
    plain = decode_task_data(thrift_encode(scheduler_task(module(order), "docker-image")))
    future = thrift_encode(add_future_fields(scheduler_task(module(order, future=True), "docker-image")))
    # Fields 1001-1012, one of each Thrift type (binary travels as STRING), in every struct.
    headers = [bytes([code]) + fid.to_bytes(2, "big")
               for fid, code in zip(range(1001, 1013), (2, 3, 4, 6, 8, 10, 11, 11, 12, 13, 14, 15))]
    assert all(future.count(header) >= 10 for header in headers)
    assert decode_task_data(future) == plain


def test_a_known_field_with_another_wire_type_is_skipped():
    # TaskConfig.tier (30) sent as an I32 instead of a STRING, right after the TaskConfig header.
    data = EXAMPLE[:25] + bytes.fromhex("08 001e 00000007".replace(" ", "")) + EXAMPLE[25:]
    assert decode_task_data(data) == decode_task_data(EXAMPLE)


def test_a_missing_container_is_the_idl_default_mesos():
    data = EXAMPLE[:116] + EXAMPLE[124:]  # TaskConfig without field 29
    assert decode_task_data(data).container == aurora.Container(ContainerKind.MESOS)


def _without(field):
    def build(m):
        raw = scheduler_task(m)
        setattr(raw, field, None)
        return raw
    return build


NO_THERMOS_CONFIG = "task.executorConfig.data is empty: the task has no Thermos config"
UNUSABLE = {  # name: (the AssignedTask from a module, the problem the message states)
    "no-executor-config": (lambda m: scheduler_task(m, executorConfig=None), NO_THERMOS_CONFIG),
    "empty-data": (lambda m: scheduler_task(m, data=""), NO_THERMOS_CONFIG),
    "no-job": (lambda m: scheduler_task(m, job=None),
               "task.job is missing: the task has no job key (TaskConfig field 28, a JobKey)"),
    "no-task": (_without("task"), "it has no task (field 4, a TaskConfig struct)"),
    "no-task-id": (_without("taskId"), "it has no taskId (field 1, a STRING)"),
    "no-instance": (_without("instanceId"), "it has no instanceId (field 6, an I32)"),
    "negative-instance": (lambda m: scheduler_task(m, instance=-1), "instanceId is -1; it must be 0 or more"),
    "bad-ports": (lambda m: scheduler_task(m, ports={"http": 0, "x": 70000}),
                  "assignedPorts numbers must be in 1..65535: http=0, x=70000"),
    "empty-container": (lambda m: scheduler_task(m, container=m.Container()),
                        "task.container sets neither mesos nor docker (a newer kind?); "
                        "Stoker runs exactly one of them"),
    "two-containers": (lambda m: scheduler_task(m, container=m.Container(
                           mesos=m.MesosContainer(), docker=m.DockerContainer(image="x"))),
                       "task.container sets both mesos and docker; Stoker runs exactly one of them"),
    "empty-image": (lambda m: scheduler_task(m, container=m.Container(mesos=m.MesosContainer(image=m.Image()))),
                    "task.container.mesos.image must set exactly one of docker and appc"),
    "bad-volume-mode": (lambda m: scheduler_task(m, container=m.Container(mesos=m.MesosContainer(
                            volumes=[m.Volume(containerPath="/a", hostPath="/b", mode=7)]))),
                        "a task.container.mesos.volumes mode is 7, neither RW (1) nor RO (2)"),
}


@pytest.mark.parametrize("name", list(UNUSABLE))
def test_an_unusable_task_is_one_error_naming_the_field(name):
    build, problem = UNUSABLE[name]
    raw = thrift_encode(build(module(Order.ASCENDING)))
    with pytest.raises(TaskDataError) as caught:
        decode_task_data(raw)
    assert str(caught.value) == f"invalid Aurora task in TaskInfo.data ({received(raw)}): {problem}"


def test_a_string_that_is_not_utf8_is_named_by_its_field():
    data = EXAMPLE.replace(b'"hello"}', b'"hell\xff"}')
    with pytest.raises(TaskDataError, match=r"task\.executorConfig\.data is not UTF-8 \(byte 14: invalid start byte\)"):
        decode_task_data(data)


def test_the_message_shows_the_length_and_the_first_bytes():
    assert received(EXAMPLE) == "168 bytes: 0b 00 01 00 00 00 02 54 31 0b 00 03 00 00 00 06 ... |.......T1.......|"
    assert received(b"x") == "1 byte: 78 |x|"
    assert received(b"") == "0 bytes"
    edges = bytes([0x1F, 0x20, 0x21, 0x7E, 0x7F, 0x80])  # printable from the space to the tilde
    assert received(edges) == "6 bytes: 1f 20 21 7e 7f 80 |. !~..|"
    assert received(bytes(range(65, 81))) == "16 bytes: " + " ".join(f"{b:02x}" for b in range(65, 81)) \
        + " |ABCDEFGHIJKLMNOP|"  # exactly SHOWN_BYTES: nothing more to say
    with pytest.raises(TaskDataError) as caught:
        decode_task_data(EXAMPLE[:60])
    assert str(caught.value) == (
        "invalid Aurora task in TaskInfo.data (60 bytes: 0b 00 01 00 00 00 02 54 31 0b 00 03 00 00 00 06 ... "
        "|.......T1.......|): truncated at byte 60: the string of field 4.25.2 (task.executorConfig.data) "
        "at byte 52 claims 17 bytes, only 4 remain")
    assert isinstance(caught.value, TaskDocumentError) and isinstance(caught.value, ConfigError)


@pytest.mark.parametrize("data, expected", [
    (b'{"job": {}}', WireFormat.STOKER_JSON),
    (b' \n\t\r{', WireFormat.STOKER_JSON),
    (EXAMPLE, WireFormat.AURORA_THRIFT),
    (b"\x00", WireFormat.AURORA_THRIFT),  # an empty struct
    (b"\x0a\x00\x01", WireFormat.AURORA_THRIFT),  # an I64 field: 0x0a is also JSON whitespace
    (b"\x0c", WireFormat.AURORA_THRIFT),  # truncated, still Thrift
    (b"", Unknown("it is empty")),
    (b"   \n", Unknown("it holds only whitespace")),
    (b"\x80\x01\x00\x01", Unknown("it starts with a TBinaryProtocol message header (0x8001), not a bare struct")),
    (b"\x1f\x8b\x08\x00", Unknown("it looks compressed (gzip or zlib), and Aurora sends TaskInfo.data uncompressed")),
    (b"[1, 2]", Unknown("it looks like JSON starting with '[', but a task document is a JSON object ('{')")),
    (b"CwABAAAAAlQx", Unknown("it looks like base64 text, and TaskInfo.data must be the decoded bytes")),
    (b"hello", Unknown("it starts with 'h', which is neither '{' (a JSON task document) nor a Thrift field "
                       "type (a TBinaryProtocol struct starts with 0x00 or one of 0x02, 0x03, 0x04, 0x06, "
                       "0x08, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f)")),
])
def test_sniff_tells_the_formats_apart_by_their_first_bytes(data, expected):
    assert sniff(data) == expected


def test_neither_format_is_one_error_saying_what_arrived():
    with pytest.raises(TaskDataError) as caught:
        decode_task_data(b"\x05junk")
    assert str(caught.value).startswith(
        "TaskInfo.data (5 bytes: 05 6a 75 6e 6b |.junk|) is neither a Stoker task document (JSON) nor an "
        "Aurora AssignedTask (Thrift): it starts with 0x05, which is neither '{'")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_a_json_document_is_decoded_by_config_document(path):
    decoded = decode_task_data(encode(load_job(path), 2, {"http": 31000}))
    assert isinstance(decoded, TaskDocument) and (decoded.instance, decoded.assigned_ports) == (2, {"http": 31000})
    assert decode_task_data(encode(load_job(path)).decode()).instance == 0  # text works too


def test_a_bad_json_document_keeps_its_own_error():
    with pytest.raises(TaskDocumentError, match='"job" must be a JSON object') as caught:
        decode_task_data(b'{"job": 1}')
    assert not isinstance(caught.value, TaskDataError)


def test_nothing_of_the_decoder_leaks_out():
    def plain(value, where):
        if attrs.has(type(value)):
            assert type(value).__module__ == "config.aurora.task", where
            for field in attrs.fields(type(value)):
                plain(getattr(value, field.name), f"{where}.{field.name}")
        elif isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                plain(item, f"{where}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                plain(key, where)
                plain(item, f"{where}[{key}]")
        else:
            assert type(value) in (str, int, float, bool, type(None), ContainerKind, VolumeMode), (where, value)

    for kind in CONTAINERS:
        plain(decode_task_data(thrift_encode(scheduler_task(module(Order.ASCENDING), kind))), "task")


def test_the_idl_has_aurora_field_ids_and_types():
    tables = idl().structs

    def table(name):
        return {fid: (idl().wire_type(f.type), f.name) for fid, f in tables[name].items()}

    assert {name: table(name) for name in ("AssignedTask", "ExecutorConfig", "JobKey")} == {
        "AssignedTask": {1: (11, "taskId"), 2: (11, "slaveId"), 3: (11, "slaveHost"), 4: (12, "task"),
                         5: (13, "assignedPorts"), 6: (8, "instanceId")},
        "ExecutorConfig": {1: (11, "name"), 2: (11, "data")},
        "JobKey": {1: (11, "role"), 2: (11, "environment"), 3: (11, "name")},
    }
    assert [(fid, *spec) for fid, spec in table("TaskConfig").items()] == [
        (28, 12, "job"), (17, 12, "owner"), (7, 2, "isService"), (11, 8, "priority"), (13, 8, "maxTaskFailures"),
        (18, 2, "production"), (30, 11, "tier"), (32, 14, "resources"), (20, 14, "constraints"),
        (33, 14, "mesosFetcherUris"), (22, 13, "taskLinks"), (23, 11, "contactEmail"), (25, 12, "executorConfig"),
        (27, 14, "metadata"), (34, 12, "partitionPolicy"), (35, 12, "slaPolicy"), (29, 12, "container")]


def _thriftpy2_type(ttype, spec=None):
    """A thriftpy2 field type as (TType, inner...), structs by name."""
    def element(inner):
        return (inner,) if isinstance(inner, int) else _thriftpy2_type(*inner)

    if ttype == STRUCT:
        return (STRUCT, spec.__name__)
    if ttype in (LIST, SET):
        return (ttype, element(spec))
    if ttype == MAP:
        return (MAP, element(spec[0]), element(spec[1]))
    return (ttype,)  # an enum's class is its spec; it travels as an I32


def _stoker_type(t):
    code = idl().wire_type(t)
    if isinstance(t, tuple):
        return (code, *(_stoker_type(inner) for inner in t[1:]))
    return (STRUCT, t) if code == STRUCT else (code,)


def test_the_idl_reads_as_thriftpy2_reads_it():
    # Every struct and union, every field id, name and type (containers' element types and
    # structs' names included), against thriftpy2's parser of the same file.
    m = module(Order.DECLARATION)
    theirs = {name: {fid: (spec[1], _thriftpy2_type(spec[0], spec[2] if len(spec) == 4 else None))
                     for fid, spec in cls.thrift_spec.items()}
              for name, cls in vars(m).items() if isinstance(cls, type) and hasattr(cls, "thrift_spec")}
    ours = {name: {fid: (f.name, _stoker_type(f.type)) for fid, f in fields.items()}
            for name, fields in idl().structs.items()}
    assert ours == theirs
    assert ours["AssignedTask"][5] == ("assignedPorts", (13, (STRING,), (8,)))


DECODE_JSON = """
import json, sys
from config.aurora.taskdata import decode_task_data
import executor.mesos.process, executor.cli.main  # what `stoker executor` imports at start-up
decoded = decode_task_data(sys.stdin.buffer.read())
print(json.dumps([type(decoded).__name__, "thriftpy2" in sys.modules]))
"""


@pytest.mark.parametrize("data, decoded", [
    (encode(load_job(REPO / "examples/hello_world.aurora")), "TaskDocument"),
    (EXAMPLE, "AuroraTask"),
])
def test_thriftpy2_is_never_imported_by_the_executor(data, decoded):
    done = subprocess.run([sys.executable, "-c", DECODE_JSON], input=data, capture_output=True, cwd=REPO,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [decoded, False]
