"""Aurora's AssignedTask, field by field: a string that is not UTF-8 is named by its own field
wherever it is (each struct, list, set and map the decoder reads), the numbers a scheduler may
set other than 0 arrive (priority, GPUs), a constraint of a kind the IDL lacks is a constraint
by name alone, and `field_names` follows a path through structs, lists and sets, and stops at
a scalar or an id the IDL lacks (docs/contract.md §2)."""
from __future__ import annotations

import pytest

from config.aurora import task as aurora
from config.aurora import wire
from config.aurora.errors import TaskDataError, received
from config.aurora.taskdata import decode_task_data
from config.aurora.wire import field_names
from tests.support.aurora_tasks import EXAMPLE, Order, module, scheduler_task
from tests.support.aurora_tasks import encode as thrift_encode

MARK = "MARK\u00e9"  # written as the field's value, its first byte then made 0xff: not UTF-8
BAD = b"\xff" + MARK.encode()[1:]


def _sla(m, **coordinator):
    return scheduler_task(m, slaPolicy=m.SlaPolicy(coordinatorSlaPolicy=m.CoordinatorSlaPolicy(
        **{"coordinatorUrl": "http://c", "statusKey": "ok", **coordinator})))


def _image(m, image):
    return scheduler_task(m, container=m.Container(mesos=m.MesosContainer(image=image, volumes=[])))


def _docker(m, image="debian", name="env", value="A=1"):
    return scheduler_task(m, container=m.Container(docker=m.DockerContainer(
        image=image, parameters=[m.DockerParameter(name=name, value=value)])))


def _volume(m, container_path="/a", host_path="/b"):
    return scheduler_task(m, container=m.Container(mesos=m.MesosContainer(volumes=[
        m.Volume(containerPath=container_path, hostPath=host_path, mode=m.Mode.RO)])))


def _fetcher(m, value="https://example.com/a", output="a"):
    return scheduler_task(m, mesosFetcherUris=[m.MesosFetcherURI(value=value, extract=True, cache=False,
                                                                 outputFile=output)])


def _value_constraint(m, name="rack", value="r1"):
    return scheduler_task(m, constraints=[m.Constraint(name=name, constraint=m.TaskConstraint(
        value=m.ValueConstraint(negated=False, values=[value])))])


def _with_assigned(m, **fields):
    raw = scheduler_task(m)
    for name, value in fields.items():
        setattr(raw, name, value)
    return raw


# field: the AssignedTask with MARK in that field alone
FIELDS = {
    "taskId": lambda m: _with_assigned(m, taskId=MARK),
    "slaveId": lambda m: _with_assigned(m, slaveId=MARK),
    "slaveHost": lambda m: _with_assigned(m, slaveHost=MARK),
    "an assignedPorts name": lambda m: scheduler_task(m, ports={MARK: 31000}),
    "task.executorConfig.name": lambda m: scheduler_task(m, executorConfig=m.ExecutorConfig(name=MARK, data="{}")),
    "task.job.role": lambda m: scheduler_task(m, job=m.JobKey(role=MARK, environment="prod", name="hello")),
    "task.job.environment": lambda m: scheduler_task(m, job=m.JobKey(role="r", environment=MARK, name="hello")),
    "task.job.name": lambda m: scheduler_task(m, job=m.JobKey(role="r", environment="prod", name=MARK)),
    "task.tier": lambda m: scheduler_task(m, tier=MARK),
    "task.owner.user": lambda m: scheduler_task(m, owner=m.Identity(user=MARK)),
    "task.contactEmail": lambda m: scheduler_task(m, contactEmail=MARK),
    "a task.metadata key": lambda m: scheduler_task(m, metadata=[m.Metadata(key=MARK, value="v")]),
    "a task.metadata value": lambda m: scheduler_task(m, metadata=[m.Metadata(key="k", value=MARK)]),
    "a task.taskLinks key": lambda m: scheduler_task(m, taskLinks={MARK: "v"}),
    "a task.taskLinks value": lambda m: scheduler_task(m, taskLinks={"k": MARK}),
    "a task.mesosFetcherUris value": lambda m: _fetcher(m, value=MARK),
    "a task.mesosFetcherUris outputFile": lambda m: _fetcher(m, output=MARK),
    "task.container.docker.image": lambda m: _docker(m, image=MARK),
    "a task.container.docker.parameters key": lambda m: _docker(m, name=MARK),
    "a task.container.docker.parameters value": lambda m: _docker(m, value=MARK),
    "task.container.mesos.image.docker.name": lambda m: _image(m, m.Image(docker=m.DockerImage(name=MARK, tag="t"))),
    "task.container.mesos.image.docker.tag": lambda m: _image(m, m.Image(docker=m.DockerImage(name="n", tag=MARK))),
    "task.container.mesos.image.appc.name": lambda m: _image(m, m.Image(appc=m.AppcImage(name=MARK, imageId="i"))),
    "task.container.mesos.image.appc.imageId": lambda m: _image(m, m.Image(appc=m.AppcImage(name="n", imageId=MARK))),
    "a volume containerPath": lambda m: _volume(m, container_path=MARK),
    "a volume hostPath": lambda m: _volume(m, host_path=MARK),
    "a task.resources namedPort": lambda m: scheduler_task(m, resources=[m.Resource(namedPort=MARK)]),
    "a task.constraints name": lambda m: _value_constraint(m, name=MARK),
    "a value of constraint 'rack'": lambda m: _value_constraint(m, value=MARK),
    "task.slaPolicy coordinatorUrl": lambda m: _sla(m, coordinatorUrl=MARK),
    "task.slaPolicy statusKey": lambda m: _sla(m, statusKey=MARK),
}


@pytest.mark.parametrize("field", list(FIELDS))
def test_a_string_that_is_not_utf8_is_named_by_its_own_field(field):
    good = thrift_encode(FIELDS[field](module(Order.ASCENDING)))
    assert good.count(MARK.encode()) == 1
    raw = good.replace(MARK.encode(), BAD)
    with pytest.raises(TaskDataError) as caught:
        decode_task_data(raw)
    assert str(caught.value) == (f"invalid Aurora task in TaskInfo.data ({received(raw)}): "
                                 f"{field} is not UTF-8 (byte 0: invalid start byte)")


def test_a_priority_and_gpus_other_than_0_arrive():
    m = module(Order.ASCENDING)
    decoded = decode_task_data(thrift_encode(scheduler_task(
        m, priority=7, resources=[m.Resource(numGpus=2), m.Resource(numGpus=1), m.Resource(numCpus=1.5)])))
    assert (decoded.priority, decoded.resources.gpus, decoded.resources.cpus) == (7, 3, 1.5)


@pytest.mark.parametrize("constraint", ["none", "empty-union"])
def test_a_constraint_of_no_kind_the_idl_has_is_the_name_alone(constraint):
    m = module(Order.ASCENDING)
    kind = None if constraint == "none" else m.TaskConstraint()
    decoded = decode_task_data(thrift_encode(scheduler_task(m, constraints=[m.Constraint(name="zone", constraint=kind)])))
    assert decoded.constraints == (aurora.Constraint("zone"),)


@pytest.mark.parametrize("path, expected", [
    ((4, 25, 2), "task.executorConfig.data"),
    ((4, 20, 2, 1, 1), "task.constraints.constraint.value.negated"),  # through a set of structs
    ((4, 33, 1), "task.mesosFetcherUris.value"),
    ((5,), "assignedPorts"),
    ((5, 1), None),  # a map of strings to numbers: no field inside
    ((1, 1), None),  # past a string
    ((4, 999), None),  # an id the IDL lacks
    ((999, 1), None),
    ((), ""),
])
def test_field_names_follows_structs_lists_and_sets_and_stops_past_a_scalar(path, expected):
    assert field_names(path) == expected



@pytest.mark.parametrize("number, usable", [(1, True), (65535, True), (0, False), (65536, False)])
def test_an_assigned_port_is_1_to_65535(number, usable):
    raw = thrift_encode(scheduler_task(module(Order.ASCENDING), ports={"http": number}))
    if usable:
        assert decode_task_data(raw).assigned_ports == {"http": number}
        return
    with pytest.raises(TaskDataError, match=rf"assignedPorts numbers must be in 1\.\.65535: http={number}$"):
        decode_task_data(raw)


def test_bytes_cut_before_the_first_field_s_id_name_the_assigned_task():
    with pytest.raises(TaskDataError) as caught:
        decode_task_data(b"\x0b\x00")
    assert str(caught.value).endswith("): truncated at byte 2: the field id of the AssignedTask at byte 1 "
                                      "needs 2 bytes, only 1 remain")


@pytest.mark.parametrize("step, said", [
    ("_Reader", "the Thrift decoder failed: ValueError: no such thing"),
    ("_Convert", "unexpected value: ValueError: no such thing"),
])
def test_a_failure_past_the_byte_check_is_one_error_naming_the_step(monkeypatch, step, said):
    def fail(*args):
        raise ValueError("no such thing")

    monkeypatch.setattr(getattr(wire, step), "struct" if step == "_Reader" else "assigned_task", fail)
    with pytest.raises(TaskDataError) as caught:
        decode_task_data(EXAMPLE)
    assert str(caught.value) == f"invalid Aurora task in TaskInfo.data ({received(EXAMPLE)}): {said}"
