"""Which of attrs' class-making steps `attrssteps.serve` replaces: each only where it has the
shape this module knows (its parameters, or the names its code reads), none where attrs'
compile step is not the known one; and the served steps themselves, called here. The
`_make` modules served are made in the test from attrs' own code objects (this process's
attrs is left alone)."""
from __future__ import annotations

import types

from attr import _make

from executor import attrssteps

STEPS = ("_compile_and_eval", "_linecache_and_compile", "_make_attr_tuple_class")
BUILDER_STEPS = ("_add_method_dunders_unsafe", "_make_getstate_setstate", "build_class")


def _copy(function: object) -> types.FunctionType:
    return types.FunctionType(function.__code__, {})  # type: ignore[attr-defined]


def _other(function: object) -> types.FunctionType:
    """A function of another shape: other parameter names and other names read."""
    def other(a, b, c, d, e=None):
        return a.x, b.y
    return other


def _make_module(shape=_copy, builder: bool = True, compile_step=_copy) -> types.ModuleType:
    make = types.ModuleType("fake_make")
    make._compile_and_eval = compile_step(_make._compile_and_eval)
    for name in STEPS[1:]:
        setattr(make, name, shape(getattr(_make, name)))
    if builder:
        make._ClassBuilder = type("_ClassBuilder", (), {
            name: shape(getattr(_make._ClassBuilder, name)) for name in BUILDER_STEPS})
    return make


def _kept(make: types.ModuleType) -> dict[str, object]:
    found = {name: getattr(make, name) for name in STEPS}
    if hasattr(make, "_ClassBuilder"):
        found |= {name: make._ClassBuilder.__dict__[name] for name in BUILDER_STEPS}
    return found


def test_every_step_of_the_known_shape_is_served():
    make = _make_module()
    before = _kept(make)
    assert attrssteps.serve(make, lambda script, filename: None) is True
    after = _kept(make)
    assert [name for name in before if after[name] is before[name]] == []
    assert after["_linecache_and_compile"] is attrssteps._without_linecache
    assert after["_make_attr_tuple_class"] is attrssteps._fields_class
    assert after["_add_method_dunders_unsafe"] is attrssteps._named
    assert after["_make_getstate_setstate"].__qualname__.startswith("state_methods.")


def test_a_step_of_another_shape_is_attrs_own_and_a_missing_one_no_error():
    make = _make_module(shape=_other)
    before = _kept(make)
    assert attrssteps.serve(make, lambda script, filename: None) is True
    after = _kept(make)
    assert [name for name in before if after[name] is not before[name]] == ["_compile_and_eval"]
    bare = _make_module(builder=False)
    del bare._linecache_and_compile, bare._make_attr_tuple_class  # attrs before 24.3: no such step
    assert attrssteps.serve(bare, lambda script, filename: None) is True


def test_without_the_known_compile_step_nothing_is_served():
    for make in (_make_module(compile_step=_other), types.ModuleType("nothing")):
        before = _kept(make) if hasattr(make, "_compile_and_eval") else {}
        assert attrssteps.serve(make, lambda script, filename: None) is False
        assert (_kept(make) if before else {}) == before


def _served(asked: list) -> object:
    def code_for(script: str, filename: str) -> object:
        asked.append(filename)
        return compile(script, filename or "<none>", "exec")
    return attrssteps._served_by(code_for)


def test_the_served_compile_step_without_globals_defines_in_the_locals_given():
    asked: list[str] = []
    locs: dict[str, object] = {}
    _served(asked)("x = len", None, locs)
    assert locs == {"x": len} and asked == [""]  # no file name given: ""


def test_the_served_compile_step_gives_the_code_only_the_globals_it_reads():
    asked: list[str] = []
    globs = {"len": len, "unread": 1}
    locs: dict[str, object] = {}
    _served(asked)("def f():\n    return len\n", globs, locs, "<attrs generated f>")
    assert locs["f"].__globals__ == {"len": len, "__builtins__": locs["f"].__globals__["__builtins__"]}
    assert asked == ["<attrs generated f>"] and "f" not in globs


def test_the_served_linecache_step_defines_in_the_locals_given_or_a_new_mapping():
    given: dict[str, object] = {}
    assert attrssteps._without_linecache("y = 2", "<attrs y>", {}, given) is given and given == {"y": 2}
    assert attrssteps._without_linecache("y = 3", "<attrs y>", {}) == {"y": 3}


def test_a_built_class_keeps_no_annotations_on_either_init():
    def __init__(self, x: int) -> None:
        self.x = x

    def __attrs_init__(self, x: int) -> None:
        self.x = x

    built = type("Built", (), {"__init__": __init__, "__attrs_init__": __attrs_init__,
                               "__annotations__": {"x": int}, "__attrs_props__": object()})
    cls = attrssteps._unannotated(lambda self: built)(None)
    assert cls is built and "__annotations__" not in cls.__dict__ and "__attrs_props__" not in cls.__dict__
    assert cls.__init__.__annotations__ == {} and cls.__attrs_init__.__annotations__ == {}
