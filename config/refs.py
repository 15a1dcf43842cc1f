"""The template references of a plain job tree, read without expanding anything.

Owns `reference_problems(tree)`: every string whose `{{ref}}`s lead back to itself (a
template cycle), and every string that would expand past `MAX_EXPANDED_CHARS`, found on the
plain tree (the job as written, see `config.templates`) in time linear in its size. pystachio
notices a cycle only through RecursionError, and a string that names another twice doubles
the work at every level, so `'a{{role}}{{role}}'` as the role would expand for ever; checked
here first, such a job fails at once with the field named. Expansion itself is bounded too
(`config.templates`), for what this reading cannot see (`.bind()` scopes, `{{&ref}}`
escapes).

A reference is looked up as pystachio's self-binding does: in the innermost enclosing struct
that has its first name, then down the rest (`processes[0].name` is `processes`, `0`,
`name`). A reference to a struct or list stands for everything in it. Pure: no I/O, no
logging.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from config.words import integer_chars, quoted, strings

# One string of a job, expanded, may be at most this long (1 MiB).
MAX_EXPANDED_CHARS = 1 << 20

# A place in a plain tree (keys and list indexes from the root), and the dicts enclosing a
# value, each with its own place: what pystachio's self-binding looks names up in.
TreePath = tuple[str | int, ...]
Ancestors = tuple[tuple[TreePath, dict[str, Any]], ...]

_MUSTACHE = re.compile(r"{{\s*([^{}]+?)\s*}}")
# `name` or `[index]`: findall gives ("", name) or (index, "").
_REF_PART = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def ref_parts(ref: str) -> list[str]:
    """`processes[0].name` -> ['processes', '0', 'name']."""
    return [name or index for index, name in _REF_PART.findall(ref)]


def _nodes(tree: Any, path: TreePath, ancestors: Ancestors) -> Iterable[tuple[TreePath, Ancestors, Any]]:
    """Every value of a plain tree, containers included: its path, the dicts enclosing it
    (each with its own path), and the value."""
    yield path, ancestors, tree
    if isinstance(tree, dict):
        inner = ancestors + ((path, tree),)
        for key, value in tree.items():
            yield from _nodes(value, path + (key,), inner)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _nodes(value, path + (i,), ancestors)


def _lookup(ancestors: Ancestors, parts: list[str]) -> TreePath | None:
    """The place a reference names: the innermost enclosing dict with the first name, then
    down the rest. None when it names nothing in the tree (bound later, or never)."""
    for scope_path, scope in reversed(ancestors):
        if parts[0] in scope:
            path: TreePath = scope_path + (parts[0],)
            value = scope[parts[0]]
            for part in parts[1:]:
                if isinstance(value, dict) and part in value:
                    path, value = path + (part,), value[part]
                elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    path, value = path + (int(part),), value[int(part)]
                else:
                    return None
            return path
    return None


class _Graph:
    """Each value's place, its own characters, and the places it stands for.

    A struct or a list has no characters of its own: a reference to it counts what is in it
    (pystachio's rendering adds field names; `config.templates` bounds that)."""

    def __init__(self, tree: Any) -> None:
        self.texts: dict[TreePath, str] = {}
        self.own: dict[TreePath, int] = {}  # characters that are not a followed reference
        self.edges: dict[TreePath, list[TreePath]] = {}
        for path, ancestors, value in _nodes(tree, (), ()):
            if isinstance(value, str):
                self._string(path, ancestors, value)
            elif isinstance(value, dict):
                self.own[path] = 0
                self.edges[path] = [path + (k,) for k in value]
            elif isinstance(value, list):
                self.own[path] = 0
                self.edges[path] = [path + (i,) for i in range(len(value))]
            else:
                self.own[path] = integer_chars(value) if isinstance(value, int) else len(str(value))
                self.edges[path] = []

    def _string(self, path: TreePath, ancestors: Ancestors, text: str) -> None:
        self.own[path] = len(text)
        self.edges[path] = []
        if "{{" not in text:
            return
        self.texts[path] = text
        for match in _MUSTACHE.finditer(text):
            parts = ref_parts(match.group(1))
            target = _lookup(ancestors, parts) if parts else None
            if target is not None:
                self.own[path] -= len(match.group(0))
                self.edges[path].append(target)

    def walk(self, limit: int) -> tuple[dict[TreePath, list[TreePath]], list[TreePath]]:
        """(each string where a reference walk first comes back -> the other strings on
        that loop; when there is none, the strings that would expand past `limit`
        characters), in tree order. One depth-first walk without recursion (chains may be
        long); a place's size is counted as the walk leaves it, infinite past the limit."""
        cycles: dict[TreePath, list[TreePath]] = {}
        size: dict[TreePath, float] = {}
        done: set[TreePath] = set()
        for start in self.texts:
            if start in done:
                continue
            walk, on_walk = [start], {start}  # the list for its order, the set to look up
            stack = [iter(self.edges[start])]
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    node = walk.pop()
                    stack.pop()
                    on_walk.remove(node)
                    done.add(node)
                    if not cycles:
                        total = self.own[node] + sum(size[c] for c in self.edges[node])
                        size[node] = total if total <= limit else math.inf
                elif child in on_walk:
                    loop = [p for p in walk[walk.index(child):] if p in self.texts]
                    cycles.setdefault(loop[0], loop[1:])
                elif child not in done:
                    walk.append(child)
                    on_walk.add(child)
                    stack.append(iter(self.edges[child]))
        if cycles:
            return cycles, []
        return cycles, [path for path in self.texts if size[path] > limit]


def dotted(path: TreePath) -> str:
    """('task', 'processes', 0, 'name') -> 'job.task.processes[0].name'."""
    return "job" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def show_text(text: str, limit: int = 80) -> str:
    return quoted(text if len(text) <= limit else text[:limit] + "...")


def _named(graph: _Graph, path: TreePath) -> str:
    return f"{dotted(path)} = {show_text(graph.texts[path])}"


def reference_problems(tree: Any, limit: int = MAX_EXPANDED_CHARS) -> list[str]:
    """One sentence per string of `tree` that refers to itself, or else per string that
    would expand past `limit` characters."""
    # Only a string holding `{{` can be part of a cycle or grow: without one (a bound job),
    # the graph would find nothing.
    if not any("{{" in text for text in strings(tree)):
        return []
    graph = _Graph(tree)
    cycles, oversized = graph.walk(limit)
    if cycles:
        return [f"{_named(graph, first)} refers to itself (a template reference cycle"
                + "".join(f" through {_named(graph, p)}" for p in others[:3]) + ")"
                for first, others in cycles.items()]
    return [f"{_named(graph, p)} would expand to more than {limit} characters"
            for p in oversized]
