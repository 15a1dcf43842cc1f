"""Aurora's payload inside an AssignedTask: the client's job JSON in executorConfig.data
(config/aurora/launch.py `aurora_launch`, `bind_aurora`): the modern Job or the legacy
MesosTaskInstance, validated, its Announcer portmap resolved against the assigned ports,
and bound as Thermos binds it.

The AssignedTask around it is fixed (the Thrift test task, with ports http and admin);
only executorConfig.data varies. Contract: a bound job, or ConfigError (TaskDataError among
them) with a message; time bounded.
"""
from __future__ import annotations

from tests.fuzz.harness import expect, main

INSTRUMENT = ("config",)


def load() -> None:
    global attrs, ConfigError, aurora_launch, bind_aurora, BASE
    import attrs

    from config.aurora.launch import aurora_launch, bind_aurora
    from config.aurora.wire import decode_assigned_task
    from config.errors import ConfigError
    from tests.support import aurora_tasks as at

    BASE = decode_assigned_task(at.assigned_task(at.JOB_JSON, role="www-data", ports={"http": 31000, "admin": 31001}))


def seeds() -> list[bytes]:
    from pathlib import Path

    from tests.support.aurora_tasks import JOB_JSON, client_json

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aurora"))
    legacy = b'{"instance": 0, "task": {"name": "t", "processes": [{"name": "p", "cmdline": "echo {{mesos.instance}}"}]}}'
    return [JOB_JSON.encode(), legacy, *(client_json(path).encode() for path in examples)]


def target(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # the Thrift decoder refuses a payload that is not UTF-8 (fuzz_aurora_thrift)
    launch = expect(ConfigError, aurora_launch, attrs.evolve(BASE, executor_data=text))
    if launch is not None:
        expect(ConfigError, bind_aurora, launch)


main(__name__)
