"""The schema's structs, made in one table of types (config/schema/shared.py), are those
pystachio's own `Struct`, `List`, `Map`, `Choice` and `Enum` make from the same schema code:
the same serialized forms (every field's type, requirement and default), the same instances."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pystachio
import pytest
from pystachio.typing import Type, TypeMetaclass

import config.schema as schema
from config.schema import shared

SHARED_IMPORT = "from config.schema.shared import"
THERMOS_TASK = "from config.schema.thermos import Task\n"


def pystachio_made() -> dict[str, Any]:
    """thermos.py and aurora.py run with pystachio's helpers in place of shared.py's (and
    aurora's Task the one made so): the schema as pystachio alone makes it."""
    namespace: dict[str, Any] = {}
    for module in ("thermos", "aurora"):
        path = Path(schema.__file__).with_name(f"{module}.py")
        source = path.read_text(encoding="utf-8")
        assert SHARED_IMPORT in source
        source = source.replace(SHARED_IMPORT, "from pystachio import").replace(THERMOS_TASK, "")
        exec(compile(source, str(path), "exec"), namespace)
    return namespace


PYSTACHIO_MADE = pystachio_made()
TYPES = sorted(name for name, value in PYSTACHIO_MADE.items()
               if isinstance(value, type) and issubclass(value, Type) and value.__module__.startswith("pystachio")
               and name not in pystachio.__dict__)
VALUES = sorted(name for name, value in PYSTACHIO_MADE.items() if isinstance(value, pystachio.composite.Structural))


def test_the_comparison_covers_the_whole_schema():
    assert len(TYPES) >= 39 and "Job" in TYPES and "VolumeMode" in TYPES and "LoggerMode" in TYPES
    assert VALUES == ["DefaultHealthChecker", "DefaultLifecycleConfig", "DisableLifecycle", "Service"]


def shape(cls: Any) -> Any:
    """What pystachio makes of a type, to its leaves: its serialized form (factory, name and
    parameters: for a struct, every field's requirement, default and type) and, for a struct,
    the order of its fields (`TYPEMAP`: in the class body's order for a struct made by its
    `class` statement, sorted for one made again from its serialized form, as a field's type
    is), which is the order `check()` reports in and `get()` and `repr` give."""
    if "TYPEMAP" in vars(cls):
        inner = [(name, sig.required, sig.empty, shape(sig.klazz)) for name, sig in cls.TYPEMAP.items()]
    elif "TYPE" in vars(cls):
        inner = [shape(cls.TYPE)]
    elif "KEYTYPE" in vars(cls):
        inner = [shape(cls.KEYTYPE), shape(cls.VALUETYPE)]
    elif "CHOICES" in vars(cls):
        inner = [shape(choice) for choice in cls.CHOICES]
    else:
        inner = []
    return (cls.__name__, cls.__module__, cls.__bases__, type(cls), cls.serialize_type(), inner)


@pytest.mark.parametrize("name", TYPES)
def test_each_schema_type_is_the_one_pystachio_makes(name):
    assert shape(getattr(schema, name)) == shape(PYSTACHIO_MADE[name])
    assert type(getattr(schema, name)) is TypeMetaclass


@pytest.mark.parametrize("name", VALUES)
def test_each_schema_value_is_the_one_pystachio_makes(name):
    ours, theirs = getattr(schema, name), PYSTACHIO_MADE[name]
    assert type(ours).serialize_type() == type(theirs).serialize_type()
    assert ours.get() == theirs.get() and ours == theirs and theirs == ours
    assert isinstance(ours, type(theirs)) and isinstance(theirs, type(ours))


def test_each_type_a_struct_names_is_made_once():
    def task_of(made: Any) -> Any:
        return made["MesosTaskInstance"].TYPEMAP["task"].klazz, made["Job"].TYPEMAP["task"].klazz

    ours, theirs = task_of(vars(schema)), task_of(PYSTACHIO_MADE)
    assert ours[0] is ours[1]  # one Task for every struct that names it
    assert theirs[0] is not theirs[1]  # pystachio's own: a Task made again for each
    processes = schema.Task.TYPEMAP["processes"].klazz
    assert processes is shared.TYPES[("List", schema.Process.serialize_type())]
    assert processes.TYPE.TYPEMAP["logger"].klazz is shared.TYPES[schema.Logger.serialize_type()]


def made_here(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The schema made again now by shared.py's helpers, in a table of types of its own
    (config.schema made it as it was imported, before any test ran)."""
    monkeypatch.setattr(shared, "TYPES", {})
    namespace: dict[str, Any] = {}
    for module in ("thermos", "aurora"):
        path = Path(schema.__file__).with_name(f"{module}.py")
        exec(compile(path.read_text(encoding="utf-8").replace(THERMOS_TASK, ""), str(path), "exec"), namespace)
    return namespace


def test_the_schema_made_again_is_the_one_pystachio_makes_with_each_type_made_once(monkeypatch):
    made = made_here(monkeypatch)
    assert made["Task"] is not schema.Task  # made again, in the new table
    assert made["Job"].TYPEMAP["task"].klazz is shared.TYPES[made["Task"].serialize_type()]
    for name in TYPES:
        assert shape(made[name]) == shape(PYSTACHIO_MADE[name]), name
        assert type(made[name]) is TypeMetaclass, name
    for name in VALUES:
        assert made[name] == PYSTACHIO_MADE[name] and made[name].get() == PYSTACHIO_MADE[name].get(), name
    assert made["MesosTaskInstance"].TYPEMAP["task"].klazz is made["Job"].TYPEMAP["task"].klazz
    processes = made["Task"].TYPEMAP["processes"].klazz
    assert processes is shared.TYPES[("List", made["Process"].serialize_type())]


def test_a_struct_of_a_choice_a_map_and_an_enum_made_here_is_pystachio_s(monkeypatch):
    monkeypatch.setattr(shared, "TYPES", {})

    def probe(struct: Any, choice: Any, map_: Any, enum: Any) -> Any:
        class Probe(struct):
            either = choice([pystachio.Integer, pystachio.String])
            labels = pystachio.Default(map_(pystachio.String, pystachio.Integer), {"a": 1})
            mode = pystachio.Default(enum("Mode", ("ro", "rw")), "ro")
        return Probe

    ours = probe(shared.Struct, shared.Choice, shared.Map, shared.Enum)
    theirs = probe(pystachio.Struct, pystachio.Choice, pystachio.Map, pystachio.Enum)
    assert shape(ours) == shape(theirs) and ours.__name__ == "Probe"
    assert ours(either="x").get() == theirs(either="x").get()
    assert ours(either="x").json_dumps() == '{"either": "x", "labels": {"a": 1}, "mode": "ro"}'
    assert ours.TYPEMAP["either"].klazz.__name__ == "Choice_Integer_String"
    made = [ours, *(ours.TYPEMAP[name].klazz for name in ("either", "labels", "mode"))]
    assert all(any(t is kept for kept in shared.TYPES.values()) for t in made)  # each made in the table


def test_values_of_either_check_and_bind_alike():
    def job(made: dict[str, Any] | Any) -> Any:
        get = made.__getitem__ if isinstance(made, dict) else lambda n: getattr(made, n)
        process = get("Process")(name="p", cmdline="echo {{thermos.task_id}} {{greeting}}")
        task = get("Task")(processes=[process], resources=get("Resources")(cpu=1, ram=1, disk=1))
        return get("Job")(task=task, role="r", cluster="c", environment="e", name="j")

    ours, theirs = job(schema), job(PYSTACHIO_MADE)
    assert ours == theirs and ours.get() == theirs.get()
    assert ours.check().message() == theirs.check().message()
    wrong = [schema.Job(task={"processes": [{"name": 1}]}), PYSTACHIO_MADE["Job"](task={"processes": [{"name": 1}]})]
    assert wrong[0].check().message() == wrong[1].check().message() != ""  # the first field it finds wrong
    bound = [j.bind(greeting="hi") for j in (ours, theirs)]
    assert [b.check().ok() for b in bound] == [True, True]
    assert bound[0].interpolate()[1] == bound[1].interpolate()[1]  # the refs still unbound: thermos.task_id
    assert str(bound[0].task().processes()[0].cmdline()) == str(bound[1].task().processes()[0].cmdline())
    mixed = schema.Job(task=theirs.task(), role="r", cluster="c", environment="e", name="j")
    assert mixed == ours  # a struct of one takes the other's values as its own type
