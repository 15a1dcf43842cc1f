"""The schema's `Struct`: pystachio's, with every type its structs name made once.

A pystachio struct is a class its metaclass builds from its fields' serialized types
(`StructMetaclass`: `TypeFactory.new` with a new, empty table of types): each field's type
is made again from its serialized form, and each type that one names, down to the leaves.
`class MesosJob(Struct)` with `task = Task` made a `Task` class of its own, with its own
`Process`, `Resources`, `Logger`, ... and their default values: the 39 structs of Stoker's
schema made some 200 classes, 9-12 ms of a first run's planning child, on its path to its
first process. Here the table is one for the whole schema (`TYPES`): each struct, list,
map, choice and enum is made once, the first time a struct names it, and a struct that names
`Task` gets the `Task` made before, by the same `TypeFactory.new` from the same serialized form.

A pystachio type is what its serialized form says (`serialize_type()`: its factory, name
and parameters; `create` reads nothing else, and drops all but the fields of a struct's
body), and pystachio compares types by it, never by identity (`TypeMetaclass.__instancecheck__`,
`TypeSignature.__eq__`): each struct here has the serialized form, fields, defaults and
behaviour of the one `pystachio.Struct` makes (tests/unit/test_schema_shared.py compares
them). A config's own structs use `pystachio.Struct` (`SCHEMA_NAMESPACE`), as in Aurora.
"""
from __future__ import annotations

from typing import Any

from pystachio.composite import StructMetaclass
from pystachio.typing import TypeFactory

__all__ = ["TYPES", "Choice", "Enum", "List", "Map", "Struct"]

TYPES: dict[tuple[Any, ...], type] = {}  # every type the schema's structs made, by serialized form


class _SharedTable(type):
    """A struct's class, made as `StructMetaclass` makes it, in TYPES."""

    def __new__(mcs, name: str, parents: tuple[type, ...], attributes: dict[str, Any]) -> Any:
        if not parents:  # `Struct` itself
            return type.__new__(mcs, name, parents, attributes)
        parameters = StructMetaclass.attributes_to_parameters(attributes)
        return TypeFactory.new(TYPES, "Struct", name, parameters, class_cell=attributes.pop("__classcell__", None))


class _Struct(metaclass=_SharedTable):
    """The base of the schema's structs (`class Task(Struct)`), in place of pystachio's."""


Struct: Any = _Struct  # typed as pystachio's is (untyped): a struct's fields are its keywords


# pystachio's own helpers of the same names, making their types in TYPES (pystachio's make each
# in a new table: `List(Process)` made a Process, a Resources and a Logger of its own)


def List(item: Any) -> Any:
    """pystachio's `List(item)` (`TypeFactory.wrapper(ListFactory)`)."""
    return TypeFactory.new(TYPES, "List", item.serialize_type())


def Map(key: Any, value: Any) -> Any:
    """pystachio's `Map(key, value)` (`TypeFactory.wrapper(MapFactory)`)."""
    return TypeFactory.new(TYPES, "Map", key.serialize_type(), value.serialize_type())


def Choice(alternatives: list[Any]) -> Any:
    """pystachio's `Choice([Type1, Type2, ...])`, named `Choice_Type1_Type2...` as it names it."""
    name = "Choice_" + "_".join(a.__name__ for a in alternatives)
    return TypeFactory.new(TYPES, "Choice", name, tuple(t.serialize_type() for t in alternatives))


def Enum(name: str, values: tuple[str, ...]) -> Any:
    """pystachio's `Enum(name, values)`."""
    return TypeFactory.new(TYPES, "Enum", name, values)
