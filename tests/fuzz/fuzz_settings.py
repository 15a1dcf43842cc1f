"""The settings' parsers (config/settings.py, config/executorsettings.py): the environment
the agent or an operator sets (`MESOS_RECOVERY_TIMEOUT=15mins`, `STOKER_LAUNCH_TIMEOUT=500ms`,
sizes, switches, ports), and `--bind KEY=VALUE`.

Contract: `from_env` returns the settings or raises SettingsError naming the variable and
its value; every number it returns is finite and not negative (a duration that overflows to
infinity is no time a timer can wait); `parse_bindings` returns the pairs or raises
ValueError with a message.
"""
from __future__ import annotations

import math

import attrs

from tests.fuzz.harness import Finding, expect, main

INSTRUMENT = ("config",)
CLASSES: list = []


def load() -> None:
    global SettingsError, parse_bindings
    from config.errors import SettingsError
    from config.executorsettings import ExecutorSettings
    from config.logsettings import LogSettings
    from config.settings import RunSettings, parse_bindings

    for cls in (ExecutorSettings, RunSettings, LogSettings):
        names = sorted({name for f in attrs.fields(cls) for name in f.metadata.get("env", ())})
        CLASSES.append((cls, names))


def seeds() -> list[bytes]:
    return [b"\x00\x0015mins\x00\x01500ms\x00\x02yes", b"\x01\x0310.5\x00\x041e3\x00\x05-1",
            b"\x02\x00docker.image[library/python][3.11]=x\x00\x00stop_file=/tmp/x"]


def _environ(fdp, names: list[str]) -> dict[str, str]:
    env = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e",
           "MESOS_SANDBOX": "/tmp"}
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        env[names[fdp.ConsumeIntInRange(0, len(names) - 1)]] = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 400))
    return env


def target(data: bytes) -> None:
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, len(CLASSES))
    if which == len(CLASSES):
        items = [fdp.ConsumeUnicodeNoSurrogates(60) for _ in range(fdp.ConsumeIntInRange(0, 4))]
        expect(ValueError, parse_bindings, items)
        return
    cls, names = CLASSES[which]
    settings = expect(SettingsError, cls.from_env, _environ(fdp, names))
    if settings is None:
        return
    for f in attrs.fields(cls):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
            raise Finding(f"{cls.__name__}.{f.name} = {value!r}")


main(__name__)
