"""`executor.local.planform`: a plan in plain values `marshal` writes, built again from them.
Every example's plan comes back equal, each plain value a plan may hold comes back as itself
(a list as a list, a tuple as a tuple), and anything else is refused in words: a value of
another class (the plan cache's entry is then not kept), an entry naming a class its kind
does not build (a damaged or planted entry is then a miss)."""
from __future__ import annotations

import marshal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config.spec import CheckKind, LogMode
from executor.local.planform import decode, encode
from tests.unit.test_plan import EXAMPLES, plan

REPO = Path(__file__).resolve().parents[2]


def through_marshal(value: Any) -> Any:
    return decode(marshal.loads(marshal.dumps(encode(value))))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_s_plan_comes_back_equal(path):
    planned = plan(path)
    assert through_marshal(planned) == planned


def shape(value: Any) -> Any:
    """`value` with the type of each part beside it: (1,) and [1] differ here, as 1 and True do."""
    if isinstance(value, (tuple, list)):
        return type(value), [shape(v) for v in value]
    if isinstance(value, dict):
        return dict, [(shape(k), shape(v)) for k, v in value.items()]
    return type(value), value


@pytest.mark.parametrize("value", [
    None, "", "text", True, False, 0, -7, 2**40, 1.5, (), [], {},
    (1, "a", None), [1, [2, (3,)]], {"a": (1,), 2: [None, True]}, CheckKind.HTTP, [LogMode.ROTATE],
])
def test_each_plain_value_comes_back_as_itself(value):
    assert shape(through_marshal(value)) == shape(value)


class JobSpec:
    """Not the plan's JobSpec: a class of the same name."""


@pytest.mark.parametrize("value, name", [({1, 2}, "set"), (b"bytes", "bytes"), (JobSpec(), "JobSpec")])
def test_a_value_of_another_class_is_refused_by_its_name(value, name):
    with pytest.raises(ValueError) as info:
        encode(("ok", [value]))
    assert str(info.value) == f"a plan cannot hold a {name}"


@pytest.mark.parametrize("entry, tag", [
    (("a", "CheckKind", {}), "a"),  # an enum is not built from fields
    (("e", "JobSpec", "x"), "e"),  # nor a plan's class from one value
    (("z", "JobSpec", {}), "z"),
])
def test_an_entry_naming_a_class_its_kind_does_not_build_is_refused(entry, tag):
    with pytest.raises(ValueError) as info:
        decode(("t", [1, entry]))
    assert str(info.value) == f"unknown entry '{tag}'"


ANNOUNCING = """
jobs = [Service(cluster='c', role='r', environment='e', name='web', announce=Announcer(primary_port='http'),
                task=Task(processes=[Process(name='p', cmdline='serve {{thermos.ports[http]}}')],
                          resources=Resources(cpu=1, ram=1*MB, disk=1*MB)))]
"""
DECODE_FRESH = """
import marshal, sys
from executor.local.planform import decode
assert "config.announcer" not in sys.modules, "loaded with the plan form"
spec = decode(marshal.loads(sys.stdin.buffer.read())).spec
print(type(spec.announce).__module__, spec.announce.primary_port)
"""


def test_an_announcing_plan_comes_back_equal_its_announcer_s_class_loaded_as_it_is_decoded(tmp_path):
    config = tmp_path / "web.aurora"
    config.write_text(ANNOUNCING)
    planned = plan(config)
    assert planned.spec.announce is not None
    assert through_marshal(planned) == planned
    fresh = subprocess.run([sys.executable, "-c", DECODE_FRESH], input=marshal.dumps(encode(planned)),
                           capture_output=True, cwd=REPO, timeout=60)
    assert fresh.returncode == 0, fresh.stderr.decode()[-2000:]
    assert fresh.stdout.decode().split() == ["config.announcer", "http"]
