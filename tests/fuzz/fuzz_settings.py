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
    # line 1: which settings (0 executor, 1 run, 2 observe, 3 --bind); then one variable a
    # line, its first byte choosing the name, the rest its value (or one --bind item a line)
    values = [b"15mins", b"500ms", b"1.5secs", b"2hrs", b"10", b"0.5", b"on", b"off", b"yes", b"json",
              b"DEBUG", b"both", b"rotate", b"100", b"http=31000", b"auto", b"1weeks"]
    out = [b"%d\n" % which + b"\n".join(bytes([i]) + v for i, v in enumerate(values)) for which in range(3)]
    return out + [b"3\ndocker.image[library/python][3.11]=x\nstop_file=/tmp/x\nnot a ref=1"]


def _environ(lines: list[bytes], names: list[str]) -> dict[str, str]:
    env = {"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "e",
           "MESOS_SANDBOX": "/tmp"}
    for line in lines:
        if line:
            env[names[line[0] % len(names)]] = line[1:].decode("utf-8", "replace")
    return env


def target(data: bytes) -> None:
    head, *lines = data.split(b"\n")
    which = (head[0] - 48) % (len(CLASSES) + 1) if head else 0
    if which == len(CLASSES):
        expect(ValueError, parse_bindings, [line.decode("utf-8", "replace") for line in lines])
        return
    cls, names = CLASSES[which]
    settings = expect(SettingsError, cls.from_env, _environ(lines, names))
    if settings is None:
        return
    for f in attrs.fields(cls):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
            raise Finding(f"{cls.__name__}.{f.name} = {value!r}")


main(__name__)
