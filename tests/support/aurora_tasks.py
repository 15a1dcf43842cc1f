"""Aurora AssignedTasks for tests, written by thriftpy2's own encoder from Stoker's IDL
(config/aurora/aurora.thrift), so the bytes are what a Thrift library makes of that IDL.

Two field orders, as real writers use them: ASCENDING field ids (Aurora's Java scheduler:
libthrift's generated writers sort the fields) and DECLARATION order (thriftpy2 and
Aurora's Python code; TaskConfig declares 28, 17, 7, ...). `future=True` gives the IDL
with, in every struct, one field of every Thrift type under ids the decoder does not know
(1001-1012), plus retired ids in TaskConfig: what a newer scheduler could send.
`scheduler_task` fills every field Aurora's scheduler writes.
"""
from __future__ import annotations

import enum
import functools
import io
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

from config.aurora import wire

IDL = Path(wire.__file__).with_name(wire.IDL_FILE)


class Order(enum.Enum):
    ASCENDING = "ascending"  # Aurora's Java scheduler
    DECLARATION = "declaration"  # thriftpy2, Aurora's Python client


FUTURE_STRUCTS = """
struct FutureInner { 1: bool flag }
struct FutureStruct { 1: string note; 2: list<double> values; 3: FutureInner inner }
"""
FUTURE_FIELDS = """
  1001: bool futureBool
  1002: byte futureByte
  1003: double futureDouble
  1004: i16 futureI16
  1005: i32 futureI32
  1006: i64 futureI64
  1007: string futureString
  1008: binary futureBinary
  1009: FutureStruct futureStruct
  1010: map<string, list<FutureStruct>> futureMap
  1011: set<i64> futureSet
  1012: list<map<i32, set<string>>> futureList
"""
# Ids TaskConfig used in older Aurora versions.
RETIRED_TASK_CONFIG_FIELDS = """
  3: string retiredThree
  8: set<string> retiredEight
  31: map<string, i32> retiredThirtyOne
"""


def _future_idl(text: str) -> str:
    text = re.sub(r"^((?:struct|union) \w+ \{)$", lambda m: m.group(1) + FUTURE_FIELDS, text, flags=re.MULTILINE)
    text = text.replace("struct TaskConfig {" + FUTURE_FIELDS,
                        "struct TaskConfig {" + FUTURE_FIELDS + RETIRED_TASK_CONFIG_FIELDS)
    return FUTURE_STRUCTS + text


@functools.cache
def module(order: Order, future: bool = False) -> types.ModuleType:
    """The IDL as a thriftpy2 module whose encoder writes fields in ORDER."""
    import thriftpy2

    text = IDL.read_text()
    name = f"test_aurora_{order.value}{'_future' if future else ''}_thrift"
    loaded = thriftpy2.load_fp(io.StringIO(_future_idl(text) if future else text), module_name=name)
    if order is Order.ASCENDING:
        for cls in vars(loaded).values():
            if isinstance(cls, type) and hasattr(cls, "thrift_spec"):
                cls.thrift_spec = dict(sorted(cls.thrift_spec.items()))  # the encoder walks this dict
    return loaded


def encode(obj: Any) -> bytes:
    """OBJ in TBinaryProtocol, fields in the order of its module's thrift_spec."""
    from thriftpy2.protocol.binary import TBinaryProtocol

    out = io.BytesIO()
    TBinaryProtocol(out).write_struct(obj)
    return out.getvalue()


# A byte-by-byte AssignedTask: taskId "T1", slaveHost "agent1", a TaskConfig with only
# executorConfig, job and container, two assigned ports, instance 0. Offsets after the "#".
EXAMPLE = bytes.fromhex("".join(line.split("#")[0] for line in """
    0b 0001                                         # 0    field STRING 1 (taskId)
    00000002 5431                                   # 3    "T1"
    0b 0003                                         # 9    field STRING 3 (slaveHost)
    00000006 6167656e7431                           # 12   "agent1"
    0c 0004                                         # 22   field STRUCT 4 (task)
    0c 0019                                         # 25   field STRUCT 25 (executorConfig)
    0b 0001 0000000e                                # 28   name, 14 bytes
    4175726f72614578656375746f72                    # 35   "AuroraExecutor"
    0b 0002 00000011                                # 49   data, 17 bytes
    7b226e616d65223a202268656c6c6f227d              # 56   '{"name": "hello"}'
    00                                              # 73   STOP (ExecutorConfig)
    0c 001c                                         # 74   field STRUCT 28 (job)
    0b 0001 00000008 7777772d64617461               # 77   role "www-data"
    0b 0002 00000004 70726f64                       # 92   environment "prod"
    0b 0003 00000005 68656c6c6f                     # 103  name "hello"
    00                                              # 115  STOP (JobKey)
    0c 001d                                         # 116  field STRUCT 29 (container)
    0c 0001                                         # 119  field STRUCT 1 (mesos)
    00                                              # 122  STOP (MesosContainer)
    00                                              # 123  STOP (Container)
    00                                              # 124  STOP (TaskConfig)
    0d 0005                                         # 125  field MAP 5 (assignedPorts)
    0b 08 00000002                                  # 128  STRING -> I32, 2 entries
    00000006 6865616c7468 00007919                  # 134  "health" -> 31001
    00000004 68747470     0000791a                  # 148  "http" -> 31002
    08 0006 00000000                                # 160  field I32 6 (instanceId) = 0
    00                                              # 167  STOP (AssignedTask)
""".splitlines()).replace(" ", ""))


# What an Aurora client puts into executorConfig.data (shortened, same shape).
JOB_JSON = json.dumps({
    "environment": "prod", "role": "www-data", "name": "hello", "cluster": "devcluster", "service": True,
    "max_task_failures": 1, "priority": 0, "production": False, "tier": "preemptible",
    "health_check_config": {"initial_interval_secs": 15.0, "interval_secs": 10.0, "timeout_secs": 1.0,
                            "max_consecutive_failures": 0, "min_consecutive_successes": 1},
    "task": {"name": "hello", "max_failures": 1, "max_concurrency": 0, "finalization_wait": 30,
             "resources": {"cpu": 1.0, "ram": 134217728, "disk": 134217728, "gpu": 0},
             "processes": [{"name": "hello", "daemon": False, "ephemeral": False, "final": False,
                            "max_failures": 1, "min_duration": 5,
                            "cmdline": "echo hello on {{mesos.hostname}}:{{thermos.ports[http]}}"}],
             "constraints": []},
}, sort_keys=True)
TASK_ID = "www-data-prod-hello-3-6f1c7a2e-8a4b-4c59-9d8e-0b3f5a1d2c44"


def container(m: types.ModuleType, kind: str) -> Any:
    """mesos | mesos-volumes | docker-image | appc-image | docker."""
    volumes = [m.Volume(containerPath="/data", hostPath="/srv/data", mode=m.Mode.RO),
               m.Volume(containerPath="/tmp/scratch", hostPath="/var/scratch", mode=m.Mode.RW)]
    if kind == "mesos":
        return m.Container(mesos=m.MesosContainer(volumes=[]))
    if kind == "mesos-volumes":
        return m.Container(mesos=m.MesosContainer(volumes=volumes))
    if kind == "docker-image":
        image = m.Image(docker=m.DockerImage(name="library/debian", tag="bookworm"))
        return m.Container(mesos=m.MesosContainer(image=image, volumes=volumes))
    if kind == "appc-image":
        image = m.Image(appc=m.AppcImage(name="example.com/debian", imageId="sha512-0123abcd"))
        return m.Container(mesos=m.MesosContainer(image=image, volumes=[]))
    if kind == "docker":
        params = [m.DockerParameter(name="env", value="A=1"), m.DockerParameter(name="label", value="x=y")]
        return m.Container(docker=m.DockerContainer(image="debian:bookworm", parameters=params))
    raise ValueError(kind)


def task_config(m: types.ModuleType, container_kind: str = "mesos", data: str = JOB_JSON, **fields: Any) -> Any:
    """A TaskConfig with every field the scheduler writes (FIELDS override them)."""
    values: dict[str, Any] = dict(
        job=m.JobKey(role="www-data", environment="prod", name="hello"),
        owner=m.Identity(user="www-data"),
        isService=True, priority=0, maxTaskFailures=1, production=False, tier="preemptible",
        resources=[m.Resource(numCpus=1.0), m.Resource(ramMb=128), m.Resource(diskMb=256),
                   m.Resource(namedPort="http"), m.Resource(namedPort="health"), m.Resource(numGpus=0)],
        constraints=[m.Constraint(name="host", constraint=m.TaskConstraint(limit=m.LimitConstraint(limit=1))),
                     m.Constraint(name="rack", constraint=m.TaskConstraint(
                         value=m.ValueConstraint(negated=True, values=["r1", "r2"])))],
        mesosFetcherUris=[m.MesosFetcherURI(value="https://example.com/app.tgz", extract=True, cache=False,
                                            outputFile="app.tgz")],
        taskLinks={"http": "http://%host%:%port:http%"},
        contactEmail="ops@example.com",
        executorConfig=m.ExecutorConfig(name="AuroraExecutor", data=data),
        metadata=[m.Metadata(key="team", value="search"), m.Metadata(key="tier", value="gold")],
        partitionPolicy=m.PartitionPolicy(reschedule=True, delaySecs=300),
        slaPolicy=m.SlaPolicy(percentageSlaPolicy=m.PercentageSlaPolicy(percentage=95.0, durationSecs=1800)),
        container=container(m, container_kind),
    )
    values.update(fields)
    return m.TaskConfig(**values)


def scheduler_task(m: types.ModuleType, container_kind: str = "mesos", instance: int = 3,
                   ports: dict[str, int] | None = None, data: str = JOB_JSON, **fields: Any) -> Any:
    """An AssignedTask as Aurora's scheduler writes it (FIELDS override TaskConfig fields)."""
    return m.AssignedTask(
        taskId=TASK_ID, slaveId="a1b2c3d4-0000-4000-8000-000000000001-S0", slaveHost="agent1.example.com",
        task=task_config(m, container_kind, data, **fields),
        assignedPorts={"http": 31000, "health": 31001} if ports is None else ports, instanceId=instance)


def add_future_fields(obj: Any) -> Any:
    """Fill the future fields of every struct inside OBJ (built from a `future=True` module)."""
    _fill(obj, type(obj))
    return obj


def _fill(obj: Any, root: type) -> None:
    if isinstance(obj, list):
        for item in obj:
            _fill(item, root)
    elif isinstance(obj, dict):
        for item in obj.values():
            _fill(item, root)
    elif hasattr(obj, "thrift_spec"):
        names = [entry[1] for entry in obj.thrift_spec.values()]
        for name in names:
            _fill(getattr(obj, name), root)
        if "futureBool" in names:
            future = _future_values(root)
            for name, value in future.items():
                setattr(obj, name, value)


def _future_values(root: type) -> dict[str, Any]:
    m = sys.modules[root.__module__]  # thriftpy2 registers the loaded IDL under its name
    inner = m.FutureStruct(note="skip me", values=[1.5, -2.0], inner=m.FutureInner(flag=True))
    return dict(futureBool=True, futureByte=-7, futureDouble=2.5, futureI16=-300, futureI32=70000,
                futureI64=2 ** 40, futureString="ünïcödé", futureBinary=b"\x00\xff\x0b\x0c",
                futureStruct=inner, futureMap={"k": [inner, m.FutureStruct(note="two")]},
                futureSet=[1, 2, 3], futureList=[{1: ["a", "b"]}, {}])


# ---- AssignedTasks that carry a job, for the executor ----

# The fields the Aurora client leaves out of executorConfig.data (config/thrift.py's
# ALIASED_FIELDS): the scheduler's, not the executor's.
CLIENT_DROPS = ("update_config", "instances")


def client_json(path: Path | str, jobkey: str | None = None, bindings: tuple[tuple[str, str], ...] = ()) -> str:
    """What the Aurora client puts into executorConfig.data for the job in PATH, made with
    Stoker's loader: the job with every load-time template bound (`{{thermos.*}}`,
    `{{mesos.instance}}` and `{{mesos.hostname}}` left as written), without CLIENT_DROPS."""
    from config.loader import check_bound, load_job

    job = load_job(path, jobkey, bindings)
    check_bound(job, str(path))
    doc = json.loads(job.json_dumps())
    for field in CLIENT_DROPS:
        doc.pop(field, None)
    return json.dumps(doc, sort_keys=True)


def described_container(m: types.ModuleType, description: dict[str, Any]) -> Any:
    """A Container from plain values: {"docker": {"image", "parameters": [[name, value]...]}}
    or {"mesos": {"volumes": [[container, host, "RO"|"RW"]...], "image": {"docker"|"appc": [a, b]}}}."""
    if "docker" in description:
        docker = description["docker"]
        return m.Container(docker=m.DockerContainer(image=docker["image"], parameters=[
            m.DockerParameter(name=n, value=v) for n, v in docker.get("parameters", [])]))
    mesos = description["mesos"]
    volumes = [m.Volume(containerPath=c, hostPath=h, mode=getattr(m.Mode, mode)) for c, h, mode in mesos["volumes"]]
    image = mesos.get("image")
    if image is None:
        return m.Container(mesos=m.MesosContainer(volumes=volumes))
    if "docker" in image:
        name, tag = image["docker"]
        made = m.Image(docker=m.DockerImage(name=name, tag=tag))
    else:
        name, image_id = image["appc"]
        made = m.Image(appc=m.AppcImage(name=name, imageId=image_id))
    return m.Container(mesos=m.MesosContainer(image=made, volumes=volumes))


def assigned_task(data: str, *, role: str, environment: str = "test", name: str = "job",
                  task_id: str = TASK_ID, host: str = "agent1.example.com", instance: int = 0,
                  ports: dict[str, int] | None = None, container_kind: str = "mesos",
                  container: dict[str, Any] | None = None, executor_name: str = "AuroraExecutor",
                  order: Order = Order.ASCENDING) -> bytes:
    """TaskInfo.data as Aurora's scheduler sends it: an AssignedTask (every TaskConfig field
    the scheduler writes) whose executorConfig carries DATA, in TBinaryProtocol. CONTAINER
    (see `described_container`) wins over CONTAINER_KIND."""
    m = module(order)
    extra = {} if container is None else {"container": described_container(m, container)}
    raw = m.AssignedTask(
        taskId=task_id, slaveId="a1b2c3d4-0000-4000-8000-000000000001-S0", slaveHost=host,
        task=task_config(m, container_kind, data, job=m.JobKey(role=role, environment=environment, name=name),
                         owner=m.Identity(user=role), **extra,
                         executorConfig=m.ExecutorConfig(name=executor_name, data=data),
                         resources=[m.Resource(numCpus=0.5), m.Resource(ramMb=64), m.Resource(diskMb=64)]
                         + [m.Resource(namedPort=p) for p in sorted(ports or {})]),
        assignedPorts=dict(ports or {}), instanceId=instance)
    return encode(raw)
