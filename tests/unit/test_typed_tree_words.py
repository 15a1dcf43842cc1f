"""`from_tree` (config/typed_tree.py), the door every task document, JSON config and
flattened job goes through: maps (which no test built), a struct given no map, an unknown
field with and without a near name, a type the schema does not hold, and each scalar's
words. Each refusal whole, as `stoker inspect` and a TASK_FAILED show it."""
from __future__ import annotations

import pytest
from pystachio import Boolean, Float, Integer, String, Struct

from config.errors import ConfigError
from config.schema import Process
from config.schema.shared import Map
from config.typed_tree import from_tree

PROCESS_FIELDS = "cmdline, daemon, ephemeral, final, logger, max_failures, min_duration, name, resources"


def refusal(cls, tree, path="x") -> str:
    with pytest.raises(ConfigError) as caught:
        from_tree(cls, tree, path)
    return str(caught.value)


def test_a_map_is_built_with_its_keys_and_values_typed():
    assert dict(from_tree(Map(String, Integer), {"http": 80, "health": "81"}, "ports").get()) == {
        "http": 80, "health": 81}
    assert dict(from_tree(Map(String, Integer), {}, "ports").get()) == {}


@pytest.mark.parametrize("tree, said", [
    ([1], "invalid ports: ports must be a map, not [1]"),
    ({"http": "x"}, "invalid ports: ports[http] = 'x' is not an integer"),
    ({True: 1}, "invalid ports: ports key = True is not a string"),
    ({"http": "x", "admin": [2]}, "invalid ports: 2 problems: ports[http] = 'x' is not an integer; "
                                  "ports[admin] = [2] is not an integer"),
])
def test_a_map_s_refusals_name_the_key_or_the_value(tree, said):
    assert refusal(Map(String, Integer), tree, "ports") == said


def test_a_struct_given_what_is_no_map_names_what_it_got():
    assert refusal(Process, 3, "p") == "invalid p: p must be a Process (a map of fields), not 3"


def test_an_unknown_field_lists_the_known_ones_and_a_near_name_only_when_there_is_one():
    assert refusal(Process, {"name": "a", "cmdline": "c", "zzzz": 1}, "p") == (
        f"invalid p: p: unknown field 'zzzz' (Process has {PROCESS_FIELDS})")
    assert refusal(Process, {"name": "a", "cmdlin": "c"}, "p") == (
        f"invalid p: 2 problems: p: unknown field 'cmdlin' (Process has {PROCESS_FIELDS}); did you mean "
        "'cmdline'?; p.cmdline is required but missing")


class Fieldless(Struct):
    """A struct of no fields."""


def test_a_struct_of_no_fields_says_so():
    assert refusal(Fieldless, {"x": 1}, "e") == "invalid e: e: unknown field 'x' (Fieldless has no fields)"


def test_a_type_the_schema_does_not_hold_is_named():
    assert refusal(int, 3) == "invalid x: x: unsupported schema type int"


@pytest.mark.parametrize("text, value", [("true", True), ("false", False), ("True", True), ("False", False)])
def test_a_boolean_s_four_spellings_are_read(text, value):
    assert from_tree(Boolean, text, "b").get() is value


@pytest.mark.parametrize("cls, tree, said", [
    (Boolean, "yes", "x = 'yes' is not a boolean (true or false)"),
    (String, [1], "x = [1] is not a string"),
    (String, True, "x = True is not a string"),
    (Float, [1], "x = [1] is not a number"),
    (Integer, [1], "x = [1] is not an integer"),
    (Float, "{{x}}", "x = '{{x}}' is not a number (templates are not allowed in numeric fields)"),
    (Integer, "{{x}}", "x = '{{x}}' is not an integer (templates are not allowed in numeric fields)"),
    (Float, "ten", "x = 'ten' is not a number"),
])
def test_each_scalar_s_refusal_in_words(cls, tree, said):
    assert refusal(cls, tree) == f"invalid x: {said}"
