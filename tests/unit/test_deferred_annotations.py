"""`executor.deferred.PlainAnnotations` tells what attrs' own `_AnnotationExtractor` tells
(through `inspect.signature`) of every kind of converter: read from a plain function's code,
through attrs' own for anything else. This file's annotations are strings (`from
__future__`), as in Stoker's modules; one function's are objects."""
from __future__ import annotations

import contextlib
import functools
import sys
import types

import pytest
from attr import _compat

from executor.deferred import ATTRS_COMPAT, AttrsCompatHook, PlainAnnotations, serve_attrs

ORIGINAL = _compat._AnnotationExtractor  # the tests' process never ran defer()
Served = type("Served", (PlainAnnotations,), {"__slots__": (), "inspected": ORIGINAL})


def annotated(value: int, other: str = "") -> float:
    return float(value)


def bare(value):
    return value


evaluated = {}  # a function whose annotations are objects, not strings (no `from __future__`)
exec("def evaluated_annotations(value: list[int]) -> tuple[int, ...]:\n    return tuple(value)\n", evaluated)
evaluated_annotations = evaluated["evaluated_annotations"]


def only_return(value) -> None:
    return None


def annotated_none(value: None) -> int:
    return 0


def keyword_only(*, value: int) -> int:
    return value


def star_args(*values: int) -> int:
    return sum(values)


def positional_only(value: bytes, /) -> bytes:
    return value


@functools.wraps(annotated)
def wrapper(*args, **kwargs):
    return annotated(*args, **kwargs)


def with_signature(value):
    return value


with_signature.__signature__ = __import__("inspect").signature(annotated)  # type: ignore[attr-defined]


class Method:
    def convert(self, value: bytes) -> str:
        return value.decode()


CONVERTERS = [annotated, bare, evaluated_annotations, only_return, annotated_none, keyword_only, star_args,
              positional_only, wrapper, with_signature, Method().convert, Method.convert,
              lambda value: value, functools.partial(annotated, other="x"), int, str.strip, Method,
              len, types.SimpleNamespace]


@pytest.mark.parametrize("converter", CONVERTERS, ids=lambda c: getattr(c, "__name__", type(c).__name__))
def test_a_converter_reads_as_attrs_own_extractor_reads_it(converter):
    ours, theirs = Served(converter), ORIGINAL(converter)
    assert ours.get_first_param_type() == theirs.get_first_param_type()
    assert ours.get_return_type() == theirs.get_return_type()


def test_a_plain_function_is_read_without_attrs_own_extractor():
    assert Served(annotated).other is None
    assert Served(int).other is not None  # a builtin: attrs' own, through inspect


def test_an_extractor_this_does_not_know_is_left_as_it_is():
    module = types.ModuleType("attr._compat")
    module._AnnotationExtractor = type("_AnnotationExtractor", (), {})  # type: ignore[attr-defined]
    before = module._AnnotationExtractor  # type: ignore[attr-defined]
    assert serve_attrs(module) is False
    assert module._AnnotationExtractor is before  # type: ignore[attr-defined]
    assert serve_attrs(types.ModuleType("attr._compat")) is False  # none at all


def test_the_hook_finds_attrs_compat_alone_and_its_module_serves_the_extractor():
    """`AttrsCompatHook` (on sys.meta_path once defer() deferred a module, until attrs loads):
    it finds no other module, and takes itself off the path when it finds `attr._compat` (or
    is off already); the module its loader runs has PlainAnnotations as its extractor."""
    import importlib.util

    import attr

    hook = AttrsCompatHook()
    sys.meta_path.insert(0, hook)
    try:
        assert hook.find_spec("json", None) is None and sys.meta_path[0] is hook
        spec = hook.find_spec(ATTRS_COMPAT, attr.__path__)
        assert hook not in sys.meta_path
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(hook)
    assert hook.find_spec(ATTRS_COMPAT, attr.__path__) is not None  # off the path already: no error
    assert spec is not None and spec.loader is not None
    assert spec.loader.get_filename(ATTRS_COMPAT) == spec.origin  # the file loader's other methods, as they are
    compat = importlib.util.module_from_spec(spec)  # a copy of its own, not sys.modules'
    spec.loader.exec_module(compat)
    assert issubclass(compat._AnnotationExtractor, PlainAnnotations)
    assert compat._AnnotationExtractor.inspected.__module__ == ATTRS_COMPAT
