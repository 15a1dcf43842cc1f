"""Templates: the `<<ref>>` spelling, expansion, reference cycles and port discovery.

Owns rewriting `<<ref>>` into `{{ref}}`, expanding a pystachio job into plain values while
listing every reference left unbound (`expand`, `flatten`), finding template reference cycles
before anything interpolates (`cycle_problems`), the one port-reference pattern (`PORT_REF`),
and the port names a task needs (`port_names`). Binding one run's values and building the
JobSpec is `config.bind`.

Port names (docs/contract.md §3, §5) are the NAMEs of `{{thermos.ports[NAME]}}` referenced in a
process cmdline or name, or in the shell health check's command, plus the lifecycle port
when it is not `health`. Decision: `health` is *never* added just because an HTTP (or TCP)
checker or the HTTP lifecycle is configured, because both are configured by default and
every job would then get a `health` port and a health check. A job is health-checked over
HTTP/TCP only when something references `{{thermos.ports[health]}}`, exactly as in Aurora,
where the `health` port exists only when a process asks for it. An explicitly chosen
lifecycle port other than `health` is a deliberate choice, so it is allocated.

Pure apart from pystachio: no I/O, no logging, never mutates its inputs.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pystachio import Empty, Ref
from pystachio.base import Object
from pystachio.basic import SimpleObject
from pystachio.choice import ChoiceContainer
from pystachio.composite import Structural
from pystachio.container import ListContainer, MapContainer
from pystachio.naming import Namable
from pystachio.parsing import MustacheParser

from config.errors import ConfigError, join_problems
from config.schema import Job
from config.typed_tree import from_tree

# `<<a.b[c].d>>`: dotted names with optional [index] parts and no whitespace. A heredoc
# (`cat <<EOF`, `<<-EOF`) has no closing `>>`, and `a << b >> c` has spaces, so both stay.
_ANGLE_REF = re.compile(r"<<([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[\w\-./]+\])*)>>")
# `thermos.ports[NAME]`, the one port reference. NAME is what pystachio accepts as an index
# (its Ref.Index pattern), so a reference that parses at all is matched exactly here.
PORT_REF = re.compile(r"^thermos\.ports\[([\w\-./]+)\]$")


def normalize_angle_refs(text: str) -> str:
    """`<<thermos.ports[http]>>` -> `{{thermos.ports[http]}}`; everything else untouched."""
    return _ANGLE_REF.sub(r"{{\1}}", text)


def normalize_tree(tree: Any) -> Any:
    """`normalize_angle_refs` applied to every string in a plain tree (a new tree)."""
    if isinstance(tree, str):
        return normalize_angle_refs(tree)
    if isinstance(tree, dict):
        return {k: normalize_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [normalize_tree(v) for v in tree]
    return tree


class Expansion:
    """The result of expanding a pystachio object into plain values."""

    def __init__(self) -> None:
        self.unbound: list[tuple[str, str]] = []  # (field path, "{{ref}}")
        self.problems: list[str] = []


def expand(obj: Any, path: str = "job") -> tuple[Any, Expansion]:
    """Interpolates `obj` in its own scopes into plain values (dicts, lists, scalars).

    Unbound references stay in the strings as `{{ref}}` and are listed with their field
    path; scalars that are not strings are returned as given, for `from_tree` to type-check.
    """
    out = Expansion()
    return _expand(obj, path, out), out


def _expand(obj: Any, path: str, out: Expansion) -> Any:
    if isinstance(obj, Structural):
        scopes = obj.scopes()
        return {name: _expand(value.in_scope(*scopes), f"{path}.{name}", out)
                for name, value in obj._schema_data.items() if value is not Empty}
    if isinstance(obj, ListContainer):
        scopes = obj.scopes()
        return [_expand(v.in_scope(*scopes), f"{path}[{i}]", out) for i, v in enumerate(obj._values)]
    if isinstance(obj, MapContainer):
        scopes = obj.scopes()
        return {_expand(k.in_scope(*scopes), f"{path} key", out):
                _expand(v.in_scope(*scopes), f"{path}[{k.get()}]", out) for k, v in obj._map}
    if isinstance(obj, ChoiceContainer):
        inner = obj._value
        return _expand(inner.in_scope(*obj.scopes()), path, out) if isinstance(inner, Object) else inner
    if isinstance(obj, SimpleObject):
        return _expand_scalar(obj, path, out)
    out.problems.append(f"{path}: unexpected value {obj!r}")
    return None


def _expand_scalar(obj: SimpleObject, path: str, out: Expansion) -> Any:
    value = obj._value
    if not isinstance(value, str):
        return value
    try:
        text, refs = MustacheParser.resolve(value, *obj.scopes())
    except (RecursionError, MustacheParser.Uninterpolatable):
        out.problems.append(f"{path} = {value!r} refers to itself (a template reference cycle)")
        return value
    except Ref.InvalidRefError as exc:
        out.problems.append(f"{path} = {value!r} has an invalid template reference: {exc}")
        return value
    except (MustacheParser.Error, Namable.Error, ValueError, TypeError) as exc:
        out.problems.append(f"{path} = {value!r} cannot be expanded: {exc}")
        return value
    out.unbound.extend((path, str(ref)) for ref in refs)
    return text


def flatten(job: Any) -> Any:
    """A new Job with everything resolvable at load time expanded and `<<ref>>` rewritten.

    The result carries no pystachio scopes: the job's own names and any `.bind()` bindings
    are expanded into the strings; `thermos.*` and `mesos.*` references stay as `{{ref}}`.
    Raises ConfigError naming each field that cannot be expanded or has the wrong type.
    """
    tree = _expanded(job)
    normalized = normalize_tree(tree)
    flat = from_tree(Job, normalized)
    if normalized != tree:  # a `<<role>>` may now bind to the job's own fields
        flat = from_tree(Job, _expanded(flat))
    return flat


# A place in a plain tree (keys and list indexes from the root), and the dicts enclosing a
# string, each with its own place: what pystachio's self-binding looks names up in.
TreePath = tuple[str | int, ...]
Ancestors = tuple[tuple[TreePath, dict[str, Any]], ...]

_MUSTACHE = re.compile(r"{{\s*([^{}]+?)\s*}}")
_REF_PART = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def _ref_parts(ref: str) -> list[str]:
    return [index if name is None else name for index, name in _REF_PART.findall(ref)]


def _strings(tree: Any, path: TreePath, ancestors: Ancestors) -> Iterable[tuple[TreePath, Ancestors, str]]:
    """Every string of a plain JSON tree: its path, the chain of enclosing dicts (each with
    its own path), and the text."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _strings(value, path + (key,), ancestors + ((path, tree),))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _strings(value, path + (i,), ancestors)
    elif isinstance(tree, str):
        yield path, ancestors, tree


def _lookup(ancestors: Ancestors, parts: list[str]) -> tuple[TreePath, Any] | None:
    """(path, value) a reference names under pystachio's self-binding: the innermost
    enclosing struct with the first name, then down the rest. None when unbound."""
    for scope_path, scope in reversed(ancestors):
        if parts[0] in scope:
            path, value = scope_path + (parts[0],), scope[parts[0]]
            for part in parts[1:]:
                if isinstance(value, dict) and part in value:
                    path, value = path + (part,), value[part]
                elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    path, value = path + (int(part),), value[int(part)]
                else:
                    return None
            return path, value
    return None


def reference_cycles(tree: Any) -> list[str]:
    """Strings whose templates lead back to themselves ('a{{role}}{{role}}' as the role).

    pystachio only notices such a cycle through RecursionError, and a string that refers
    to itself twice doubles the work at every level: a 40-byte document would expand for
    ever. So cycles are found first, on the plain tree, in time linear in its references.
    """
    edges: dict[TreePath, list[TreePath]] = {}
    texts: dict[TreePath, str] = {}
    for path, ancestors, text in _strings(tree, (), ()):
        if "{{" not in text:
            continue
        targets: list[TreePath] = []
        for ref in _MUSTACHE.findall(text):
            parts = _ref_parts(ref)
            found = _lookup(ancestors, parts) if parts else None
            if found is not None:
                base, value = found
                targets.extend(base + sub for sub, _, t in _strings(value, (), ()) if "{{" in t)
        edges[path] = targets
        texts[path] = text
    cycles: dict[TreePath, None] = {}
    state: dict[TreePath, int] = {}  # 1: on the current path, 2: done
    for start in edges:
        if state.get(start):
            continue
        stack = [(start, iter(edges[start]))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                cycles[child] = None
            elif not state.get(child) and child in edges:
                state[child] = 1
                stack.append((child, iter(edges[child])))
    return [f"{_dotted(path)} = {_show(texts[path])}" for path in cycles]


def _dotted(path: TreePath) -> str:
    return "job" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _show(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _raw(obj: Any) -> Any:
    """The job as plain values with every template left as written (json_dumps would
    interpolate, which is exactly what must not happen before the cycle check)."""
    if isinstance(obj, Structural):
        return {name: _raw(value) for name, value in obj._schema_data.items() if value is not Empty}
    if isinstance(obj, ListContainer):
        return [_raw(v) for v in obj._values]
    if isinstance(obj, MapContainer):
        return {str(_raw(k)): _raw(v) for k, v in obj._map}
    if isinstance(obj, ChoiceContainer):
        return _raw(obj._value) if isinstance(obj._value, Object) else obj._value
    if isinstance(obj, SimpleObject):
        return obj._value
    return obj


def cycle_problems(job: Any) -> list[str]:
    """One problem per template reference cycle in `job`, found without interpolating."""
    raw = _raw(job)
    return [f"{where} refers to itself (a template reference cycle)" for where in reference_cycles(raw)]


def _expanded(job: Any) -> Any:
    problems = cycle_problems(job)
    if problems:
        raise ConfigError(join_problems("invalid job", problems), problems)
    tree, out = expand(job)
    if out.problems:
        raise ConfigError(join_problems("invalid job", out.problems), out.problems)
    return tree


def refs_in(text: str) -> list[str]:
    """The addresses of the `{{...}}` references in `text`, in order (invalid ones skipped)."""
    found = []
    for match in MustacheParser._MUSTACHE_RE.finditer(text):
        if match.group(1):
            continue  # {{&x}} is an escape, not a reference
        try:
            found.append(Ref.from_address(match.group(2)).address())
        except Ref.InvalidRefError:
            continue
    return found


def port_refs(text: str) -> list[str]:
    """The NAMEs of `{{thermos.ports[NAME]}}` in `text`."""
    return [m.group(1) for m in map(PORT_REF.match, refs_in(text)) if m]


def port_names(job: Any) -> list[str]:
    """Sorted, unique port names the job's task needs (see the module docstring for why)."""
    tree, _ = expand(job)
    return port_names_of_tree(tree)


def port_names_of_tree(tree: dict[str, Any]) -> list[str]:
    names: set[str] = set()
    for text in _texts_naming_ports(tree):
        names.update(port_refs(normalize_angle_refs(text)))
    http = (tree.get("lifecycle") or {}).get("http")
    if isinstance(http, dict):
        port = http.get("port", "health")
        if isinstance(port, str) and port != "health":
            names.add(port)
    return sorted(names)


def _texts_naming_ports(tree: dict[str, Any]) -> Iterable[str]:
    task = tree.get("task") or {}
    for process in task.get("processes") or ():
        if isinstance(process, dict):
            yield from (v for v in (process.get("name"), process.get("cmdline")) if isinstance(v, str))
    checker = (tree.get("health_check_config") or {}).get("health_checker") or {}
    shell = checker.get("shell") if isinstance(checker, dict) else None
    if isinstance(shell, dict) and isinstance(shell.get("shell_command"), str):
        yield shell["shell_command"]
