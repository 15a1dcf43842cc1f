"""What two memory savings assume of Stoker's own code, as a test over its source.

- Stoker's functions are compiled without their annotations (`executor/nodocs.py`, OWN): so
  no code of Stoker's may read a function's annotations (`typing.get_type_hints`, a
  signature's `annotation`, `__annotations__`, `functools.singledispatch`'s registering by
  them), or it would silently read none. `executor/deferred.py` reads a converter's, for
  attrs' `__init__` annotations only; `executor/nodoccode.py` is what strips them. Nor an
  attrs class's, nor the settings it was built with (`attrs.inspect()`, `__attrs_props__`):
  the code cache drops both once the class is made (`executor/codecache.py`).
- Every attrs class the code cache serves shares one `__repr__`, `__eq__`, `__hash__`,
  `__getstate__` and `__setstate__` (`executor/attrsmethods.py`), which reads the fields of
  the instance's class: a base class's method called on a subclass's instance whose class has
  its own (`super().__repr__()`, `Base.__eq__(self, other)`) would read the subclass's
  fields, where attrs' own reads the base's. So no code of Stoker's calls them so.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("executor", "config", "healthcheck")
ANNOTATION_READERS = {"get_type_hints", "get_annotations", "singledispatch", "singledispatchmethod"}
ANNOTATION_ATTRIBUTES = {"__annotations__", "annotation", "return_annotation", "__attrs_props__"}
ATTRS_MODULES = {"attr", "attrs"}  # their `inspect` reads a class's `__attrs_props__`
ALLOWED_ANNOTATION_READS = {"executor/deferred.py", "executor/nodoccode.py"}
SHARED_METHODS = {"__repr__", "__eq__", "__hash__", "__getstate__", "__setstate__"}


def reads(root: Path) -> list[str]:
    """Each read of a function's annotations, and each call of a class's shared method
    through a base class, in the packages' sources under `root`: "path:line: what"."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), name)):
                what = _annotation_read(node) if name not in ALLOWED_ANNOTATION_READS else None
                what = what or _base_method_call(node)
                if what:
                    found.append(f"{name}:{node.lineno}: {what}")
    return found


def _annotation_read(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name) and node.id in ANNOTATION_READERS:
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
        if node.attr in ANNOTATION_READERS or node.attr in ANNOTATION_ATTRIBUTES:
            return node.attr
        if node.attr == "inspect" and isinstance(node.value, ast.Name) and node.value.id in ATTRS_MODULES:
            return f"{node.value.id}.inspect"
    if isinstance(node, ast.ImportFrom) and node.module in ATTRS_MODULES and any(a.name == "inspect" for a in node.names):
        return f"from {node.module} import inspect"
    return None


def _base_method_call(node: ast.AST) -> str | None:
    """`super().__repr__` (any use), or a class's (a capitalized name's) `Base.__eq__`."""
    if not isinstance(node, ast.Attribute) or node.attr not in SHARED_METHODS:
        return None
    owner = node.value
    if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
        return f"super().{node.attr}"
    if isinstance(owner, ast.Name) and owner.id[:1].isupper():  # a class, by its name (not `object`)
        return f"{owner.id}.{node.attr}"
    return None


def test_stoker_reads_no_function_s_annotations_and_calls_no_base_s_shared_method():
    assert reads(ROOT) == []


def test_a_planted_read_or_base_call_is_caught(tmp_path):
    source = {
        "executor/a.py": "import typing\ndef f(x: int) -> int:\n    return typing.get_type_hints(f)\n",
        "config/b.py": "import inspect\ndef g(h):\n    return inspect.signature(h).return_annotation\n",
        "healthcheck/c.py": "class C(B):\n    def show(self):\n        return super().__repr__()\n",
        "executor/d.py": "def same(a, b):\n    return Base.__eq__(a, b) or object.__eq__(a, b) or a.__eq__(b)\n",
        "executor/deferred.py": "def first(f):\n    return f.__annotations__\n",  # the converter's, allowed
        "executor/e.py": "import attrs\nfrom attr import inspect\ndef props(c):\n    return attrs.inspect(c)\n",
    }
    for name, text in source.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert reads(tmp_path) == ["executor/a.py:3: get_type_hints", "executor/d.py:2: Base.__eq__",
                               "executor/e.py:2: from attr import inspect", "executor/e.py:4: attrs.inspect",
                               "config/b.py:3: return_annotation", "healthcheck/c.py:3: super().__repr__"]
