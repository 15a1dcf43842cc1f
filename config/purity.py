"""Whether a config file's result depends on its text alone: the test `stoker run`'s plan
cache (`executor/local/plancache.py`) applies before it keeps a job for the next run.

A `.aurora` file is Python. Most are closed: they build Jobs from the schema's names,
literals, their own variables and functions, and `include()`d files. Some read the world:
`import os` and `os.environ`, `open()`, the clock, `print()`; their result (or output) can
differ from one run to the next, so they are never cached. The test is on the syntax, over
every file one load executed (the file and its includes, which share one namespace):

- no `import` statement;
- every name read is assigned somewhere in those files (a variable, a function, an
  argument, a loop or comprehension variable, ...), is a schema name (the modules that leak
  into the namespace, `sys` and `typing` among them, excepted), `include`, or one of the
  pure builtins in `PURE_BUILTINS` (no `open`, `print`, `eval`, `getattr`, `hash`, ...);
- no name of another builtin is read at all, even one the files assign: the test does not
  follow scopes, so `def f(open): ...` or a branch never taken (`if 0: open = str`) would
  otherwise let a module-level `open(...)` through (a config naming its own variable `id`
  or `type` is only never kept);
- no name and no attribute starting with `_` (`__import__`, `__builtins__`,
  `x.__class__`, `os._exit`): the ways out of a namespace pass through one of those.

This is not a sandbox against a hostile file (`stoker run` executes the user's own
config); it tells files that only describe a job from files that look around. Pure: no I/O.
"""
from __future__ import annotations

import _ast  # the compiler's node classes: `ast` itself (1.5-2 ms to load) is on a first run's path
import builtins
import types
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from config.warnfilters import filtered, ignored

__all__ = ["PURE_BUILTINS", "closed_problem"]

PURE_BUILTINS = frozenset({
    "abs", "all", "any", "bin", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float",
    "format", "frozenset", "hex", "int", "isinstance", "issubclass", "iter", "len", "list",
    "map", "max", "min", "next", "oct", "ord", "pow", "range", "repr", "reversed", "round",
    "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError",
    "KeyError", "LookupError", "NotImplementedError", "RuntimeError", "StopIteration",
    "TypeError", "ValueError", "ZeroDivisionError",
})
# Every other public builtin: read under any binding, it may be the builtin (see above).
OTHER_BUILTINS = frozenset(name for name in vars(builtins) if not name.startswith("_")) - PURE_BUILTINS


def closed_problem(sources: Iterable[tuple[str, str]], namespace: Mapping[str, Any]) -> str | None:
    """None when the files (name, text) read nothing but their own text; else the first
    reason, `FILE:LINE: ...`. `namespace` is what the files start with (the schema)."""
    parsed = []
    for name, text in sources:
        try:
            parsed.append((name, _parse(text.removeprefix("\ufeff"), name)))  # a BOM: loader.py
        except (SyntaxError, ValueError):
            return f"{name}: does not parse"
    assigned = {"include"} | {key for key, value in namespace.items()
                              if not key.startswith("_") and not isinstance(value, types.ModuleType)}
    for _, tree in parsed:
        assigned |= _assigned_names(tree)
    for name, tree in parsed:
        problem = _first_problem(tree, assigned | PURE_BUILTINS)
        if problem is not None:
            line, what = problem
            return f"{name}:{line}: {what}"
    return None


def _assigned_names(tree: _ast.AST) -> set[str]:
    names: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, _ast.Name) and isinstance(node.ctx, (_ast.Store, _ast.Del)):
            names.add(node.id)
        elif isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, _ast.arg):
            names.add(node.arg)
        elif isinstance(node, _ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (_ast.MatchAs, _ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, _ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names


def _first_problem(tree: _ast.AST, known: set[str]) -> tuple[int, str] | None:
    for node in _walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (_ast.Import, _ast.ImportFrom)):
            return line, "imports a module"
        if isinstance(node, _ast.Name):
            if node.id.startswith("_"):
                return line, f"uses the name {node.id}"
            if isinstance(node.ctx, _ast.Load) and (node.id not in known or node.id in OTHER_BUILTINS):
                return line, f"reads {node.id}, which is not the schema's, the file's or a pure builtin"
        elif isinstance(node, _ast.Attribute) and node.attr.startswith("_"):
            return line, f"uses the attribute {node.attr}"
    return None


def _parse(text: str, name: str) -> _ast.Module:
    """`ast.parse(text, filename=name)`, without loading `ast`; with every warning ignored,
    as the config's code is compiled (`config/loader.py`, `config/warnfilters.py`)."""
    with filtered(ignored):
        tree = compile(text, name, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
    if not isinstance(tree, _ast.Module):  # what "exec" always gives
        raise TypeError(f"{name}: not a module's syntax tree")
    return tree


def _walk(tree: _ast.AST) -> Iterator[_ast.AST]:
    """Every node of `tree` in `ast.walk`'s order (breadth first, each node's children in
    the order of its fields), which decides the problem `closed_problem` names first."""
    todo = deque([tree])
    while todo:
        node = todo.popleft()
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, _ast.AST):
                todo.append(value)
            elif isinstance(value, list):
                todo.extend(item for item in value if isinstance(item, _ast.AST))
        yield node
