"""Templates: the `<<ref>>` spelling and bounded expansion.

Owns rewriting `<<ref>>` into `{{ref}}`, expanding a pystachio job into plain values while
listing every reference left unbound (`expand`, `flatten`, `expand_field`), and the one
port-reference pattern (`PORT_REF`); the port names a task needs are `config.portmap`'s
(`port_names`). Binding one run's values and building the JobSpec is `config.bind`.

Every expansion is bounded, whoever asks (load, `job_key`, bind, the task document,
`stoker inspect`): `config.refs` first rejects template cycles and strings that would grow
past 1 MiB, reading the job as written; then `_resolve`, pystachio's own resolution step for
step, pays for each reference parsed and each scope searched, and stops at `Limits` with one
problem naming the field. No Stoker code lets pystachio interpolate a job that has not passed
both (`flatten` also checks its result's next expansion).

Pure apart from pystachio: no I/O, no logging, never mutates its inputs.
"""
from __future__ import annotations

import re
from typing import Any

import attrs
from pystachio import Empty, Ref
from pystachio.base import Object
from pystachio.basic import SimpleObject
from pystachio.choice import ChoiceContainer
from pystachio.composite import Structural
from pystachio.container import ListContainer, MapContainer
from pystachio.naming import Namable
from pystachio.parsing import MustacheParser

from config.errors import ConfigError, join_problems, show
from config.refs import MAX_EXPANDED_CHARS, reference_problems
from config.schema import Job
from config.typed_tree import from_tree
from config.words import strings

# `<<a.b[c].d>>`: dotted names with optional [index] parts and no whitespace. A heredoc
# (`cat <<EOF`, `<<-EOF`) has no closing `>>`, and `a << b >> c` has spaces, so both stay.
# `cat <<EOF>>file` does close with `>>`: a bare name (no `.` or `[...]`) is therefore taken
# as a reference only when it starts with a lower-case letter or `_`, as the job's fields
# and bound names do (`<<role>>`), while heredoc delimiters are upper case by convention.
# Compiled at its first use (`re`'s own cache keeps it), by a text that holds `<<`: most
# jobs have none, and its compiling (0.3-0.4 ms) was on a new config's planning child's path.
_INDEX = r"[\w\-./]+"  # what pystachio accepts inside [...] (its Ref.Index pattern)
_ANGLE_REF = (rf"<<((?:[a-z_]\w*|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[{_INDEX}\])+)"
              rf"(?:\.[A-Za-z_]\w*|\[{_INDEX}\])*)>>")
# `thermos.ports[NAME]`, the one port reference. NAME is what pystachio accepts as an index,
# so a reference that parses at all is matched exactly here.
PORT_REF = re.compile(rf"^thermos\.ports\[({_INDEX})\]$")


def is_port_name(name: str) -> bool:
    """Whether `{{thermos.ports[name]}}` can name it (by PORT_REF: no pattern more to compile
    on a planning child's path, 80 µs)."""
    return PORT_REF.fullmatch(f"thermos.ports[{name}]") is not None


def normalize_angle_refs(text: str) -> str:
    """`<<thermos.ports[http]>>` -> `{{thermos.ports[http]}}`; everything else untouched."""
    return re.sub(_ANGLE_REF, r"{{\1}}", text) if "<<" in text else text


def normalize_tree(tree: Any) -> Any:
    """`normalize_angle_refs` applied to every string in a plain tree (a new tree)."""
    if isinstance(tree, str):
        return normalize_angle_refs(tree)
    if isinstance(tree, dict):
        return {k: normalize_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [normalize_tree(v) for v in tree]
    return tree


# Bounds on one expansion of one job, whatever reaches it (load, bind, the task document,
# `stoker inspect`): `config.refs` rejects what it can see first; these stop the rest. A step
# is one reference parsed or one scope searched for it (pystachio takes 10-40 µs a step); an
# ordinary job takes 30-100 steps per reference it has, so the work allowed grows with the
# job, up to MAX_TEMPLATE_STEPS (about half a minute).
BASE_STEPS = 5_000
STEPS_PER_REF = 200
MAX_TEMPLATE_STEPS = 1_000_000
MAX_JOB_CHARS = 1 << 25  # characters produced by substitution, all strings together (32 MiB)


@attrs.frozen(slots=True)
class Limits:
    base_steps: int = BASE_STEPS
    steps_per_ref: int = STEPS_PER_REF
    max_steps: int = MAX_TEMPLATE_STEPS
    field_chars: int = MAX_EXPANDED_CHARS  # one string, expanded
    job_chars: int = MAX_JOB_CHARS

    def steps(self, refs: int) -> int:
        """The steps allowed to expand something with `refs` references written in it."""
        return min(self.max_steps, self.base_steps + self.steps_per_ref * refs)


# The job key's four names are short identifiers: a little work is plenty for them.
KEY_LIMITS = Limits(base_steps=2_000, steps_per_ref=0, field_chars=4096, job_chars=65536)


class _OverBudget(Exception):
    """An expansion went past its Limits; the message says which and is a problem's tail."""


class _ChainTooLong(Exception):
    """A reference still led to new ones after pystachio's last pass (`_resolve`): a chain
    of bound names longer than it follows, not a cycle."""


class _Stopped(Exception):
    """The whole expansion stops; the message is the problem, naming the field."""


class Expansion:
    """The result of expanding a pystachio object into plain values, and what it cost."""

    def __init__(self, limits: Limits, max_steps: int) -> None:
        self.unbound: list[tuple[str, str]] = []  # (field path, "{{ref}}")
        self.problems: list[str] = []
        self.limits = limits
        self.max_steps = max_steps
        self.steps = 0
        self.chars = 0

    def spend(self, steps: int, chars: int = 0) -> None:
        self.steps += steps
        self.chars += chars
        if self.steps > self.max_steps:
            raise _OverBudget(f"needs more than {self.max_steps} template steps to expand "
                              "(its references repeat or lead to each other too often: a long chain "
                              "of bound names, `--bind` flags among them)")
        if self.chars > self.limits.job_chars:
            raise _OverBudget(f"takes the job's expanded strings past {self.limits.job_chars} characters")


def expand(obj: Any, path: str = "job", limits: Limits = Limits(),
           refs: int | None = None) -> tuple[Any, Expansion]:
    """Interpolates `obj` in its own scopes into plain values (dicts, lists, scalars).

    Unbound references stay in the strings as `{{ref}}` and are listed with their field
    path; scalars that are not strings are returned as given, for `from_tree` to type-check.
    Bounded by `limits`: past them, the one problem names the field and the tree is None.
    `refs`: `count_refs(raw(obj))`, when the caller has it already.
    """
    out = Expansion(limits, limits.steps(count_refs(raw(obj)) if refs is None else refs))
    try:
        return _expand(obj, path, out), out
    except _Stopped as stop:
        out.problems.append(str(stop))
        return None, out


def _expand(obj: Any, path: str, out: Expansion) -> Any:
    literal = _literal(obj, out.limits.field_chars)
    if literal is not _HAS_REFS:
        return literal
    if isinstance(obj, Structural):
        scopes = obj.scopes()
        return {name: _expand_in(value, scopes, f"{path}.{name}", out)
                for name, value in obj._schema_data.items() if value is not Empty}
    if isinstance(obj, ListContainer):
        scopes = obj.scopes()
        return [_expand_in(v, scopes, f"{path}[{i}]", out) for i, v in enumerate(obj._values)]
    if isinstance(obj, MapContainer):
        scopes = obj.scopes()
        return {_expand_in(k, scopes, f"{path} key", out):
                _expand_in(v, scopes, f"{path}[{k.get()}]", out) for k, v in obj._map}
    if isinstance(obj, ChoiceContainer):  # holding an Object: `_literal` gave a plain value back
        return _expand_in(obj._value, obj.scopes(), path, out)
    return _expand_scalar(obj, path, out)  # every other pystachio type is a SimpleObject


def _expand_in(obj: Any, scopes: tuple[Any, ...], path: str, out: Expansion) -> Any:
    """`_expand(obj.in_scope(*scopes))`, without the scoped copy when `obj` has nothing to
    expand."""
    literal = _literal(obj, out.limits.field_chars)
    if literal is not _HAS_REFS:
        return literal
    return _expand(obj.in_scope(*scopes), path, out)


_HAS_REFS = object()


def _literal(obj: Any, field_chars: int) -> Any:
    """What `_expand` gives for `obj` when no string in it holds `{{` (nor is longer than
    `field_chars`, which `_expand` reports): its plain values, read without building
    pystachio's scopes, the costly part of an expansion (a job of 100 processes without
    templates expands ten times faster). `_HAS_REFS` otherwise."""
    if isinstance(obj, Structural):
        tree = {}
        for name, value in obj._schema_data.items():
            if value is not Empty:
                tree[name] = item = _literal(value, field_chars)
                if item is _HAS_REFS:
                    return _HAS_REFS
        return tree
    if isinstance(obj, ListContainer):
        items = [_literal(v, field_chars) for v in obj._values]
        return _HAS_REFS if any(item is _HAS_REFS for item in items) else items
    if isinstance(obj, MapContainer):
        pairs = [(_literal(k, field_chars), _literal(v, field_chars)) for k, v in obj._map]
        return _HAS_REFS if any(k is _HAS_REFS or v is _HAS_REFS for k, v in pairs) else dict(pairs)
    if isinstance(obj, ChoiceContainer):
        inner = obj._value
        return _literal(inner, field_chars) if isinstance(inner, Object) else inner
    value = obj._value
    if isinstance(value, str) and ("{{" in value or len(value) > field_chars):
        return _HAS_REFS
    return value


def _expand_scalar(obj: SimpleObject, path: str, out: Expansion) -> Any:
    value = obj._value
    if not isinstance(value, str):
        return value
    try:
        text, refs = _resolve(value, obj.scopes(), out)
    except _OverBudget as exc:
        raise _Stopped(f"{path} = {show(value)} {exc}") from None
    except _Stopped as stop:  # inside a struct it names, expanded in `_render`
        raise _Stopped(f"{path} = {show(value)} cannot be expanded: {stop}") from None
    except _ChainTooLong:
        out.problems.append(f"{path} = {show(value)} cannot be expanded: its references lead through more "
                            f"than {MustacheParser.MAX_ITERATIONS} levels of others (pystachio's limit: "
                            "the Aurora client cannot expand it either)")
        return value
    except (RecursionError, MustacheParser.Uninterpolatable):
        out.problems.append(f"{path} = {show(value)} refers to itself (a template reference cycle)")
        return value
    except Ref.InvalidRefError as exc:
        out.problems.append(f"{path} = {show(value)} has an invalid template reference: {exc}")
        return value
    except (MustacheParser.Error, Namable.Error, ValueError, TypeError) as exc:
        out.problems.append(f"{path} = {show(value)} cannot be expanded: {exc}")
        return value
    out.unbound.extend((path, str(ref)) for ref in refs)
    return text


def _resolve(text: str, scopes: tuple[Any, ...], out: Expansion) -> tuple[str, list[Ref]]:
    """pystachio's `MustacheParser.resolve`, step for step, with every step paid for.

    A pass replaces each `{{ref}}` found in `scopes` by its value, expanded; what a value
    leaves unbound is tried again in `scopes` on the next pass, until a pass finds nothing
    new (at most MAX_ITERATIONS passes). A last pass turns `{{&ref}}` into `{{ref}}`.
    """
    found: dict[Ref, str] = {}
    for _ in range(MustacheParser.MAX_ITERATIONS):
        known = len(found)
        text, unbound, refs = _pass(MustacheParser.split(text, keep_aliases=True), scopes, found, out)
        if unbound == refs:
            break
    else:  # a loop finds no new name after its first round; a chain finds one at every pass
        raise _ChainTooLong() if len(found) > known else MustacheParser.Uninterpolatable()
    text, _, refs = _pass(MustacheParser.split(text), scopes, found, out)  # {{&ref}} -> {{ref}}
    return text, refs


def _pass(splits: list[Any], scopes: tuple[Any, ...], found: dict[Ref, str],
          out: Expansion) -> tuple[str, list[Ref], list[Ref]]:
    """One pass of `_resolve` over a split text: (the text, the refs left unbound, every
    ref it had)."""
    refs = [piece for piece in splits if isinstance(piece, Ref)]
    out.spend(len(refs))
    unbound = []
    pieces = []
    for piece in splits:
        if isinstance(piece, Ref):
            if piece not in found:
                _find(piece, scopes, found, out)
            if piece not in found:
                unbound.append(piece)
            pieces.append(found.get(piece, str(piece)))
        else:
            pieces.append(piece)
    length = sum(map(len, pieces))
    if length > out.limits.field_chars:
        raise _OverBudget(f"expands to more than {out.limits.field_chars} characters")
    if unbound != refs:
        out.spend(0, length)
    return "".join(pieces), unbound, refs


def _find(ref: Ref, scopes: tuple[Any, ...], found: dict[Ref, str], out: Expansion) -> None:
    """The first scope that names `ref` gives its value, expanded (as pystachio's join)."""
    for scope in scopes:
        out.spend(1)
        try:
            value = scope.find(ref)
        except Namable.Error:
            continue
        found[ref] = _render(ref, value, out)
        return


def _render(ref: Ref, value: Any, out: Expansion) -> str:
    """What `str(value)` gives in pystachio, with the expansion inside it bounded too."""
    if isinstance(value, SimpleObject) and isinstance(value._value, str):
        text, unbound = _resolve(value._value, value.scopes(), out)
        return text if unbound else str(value.coerce(text))
    if isinstance(value, Object) and not isinstance(value, SimpleObject):
        # A whole struct or list: expand it within the same limits first, so that
        # pystachio's own (unbounded) rendering below is known to be as small.
        kept_problems, kept_unbound = len(out.problems), len(out.unbound)
        _expand(value, str(ref), out)
        found = out.problems[kept_problems:]
        del out.problems[kept_problems:], out.unbound[kept_unbound:]
        if found:  # pystachio would meet the same problem, perhaps never ending
            raise ValueError(f"it names {ref}, which cannot be expanded: {found[0]}")
    return str(value)


def flatten(job: Any, *, angle_refs: bool = True, cycles_checked: bool = False) -> Any:
    """A new Job with everything resolvable at load time expanded and `<<ref>>` rewritten.

    The result carries no pystachio scopes: the job's own names and any `.bind()` bindings
    are expanded into the strings; `thermos.*` and `mesos.*` references stay as `{{ref}}`.
    Its own next expansion (bind's, or pystachio's in `json_dumps`) is checked too, since an
    escaped `{{&ref}}` comes out as a `{{ref}}` that it would follow. `angle_refs=False`
    leaves `<<ref>>` as written (Aurora's own payload, where it never was a template).
    Raises ConfigError naming each field that cannot be expanded or has the wrong type.
    `cycles_checked`: the caller found no `cycle_problems(job)` already (not looked for twice).
    """
    tree = _expanded(job, cycles_checked)
    normalized = normalize_tree(tree) if angle_refs else tree
    flat = from_tree(Job, normalized)
    if normalized != tree:  # a `<<role>>` may now bind to the job's own fields
        flat = from_tree(Job, _expanded(flat))
    _expanded(flat)
    return flat


def raw(obj: Any) -> Any:
    """The job as plain values with every template left as written (json_dumps would
    interpolate, which is exactly what must not happen before `config.refs` has looked)."""
    if isinstance(obj, Structural):
        return {name: raw(value) for name, value in obj._schema_data.items() if value is not Empty}
    if isinstance(obj, ListContainer):
        return [raw(v) for v in obj._values]
    if isinstance(obj, MapContainer):
        return {str(raw(k)): raw(v) for k, v in obj._map}
    if isinstance(obj, ChoiceContainer):
        return raw(obj._value)  # a plain value (a Choice given as a map) comes back as it is
    if isinstance(obj, SimpleObject):
        return obj._value
    return obj


def holds_templates(tree: Any) -> bool:
    """Some string of a plain tree holds `{{` or `<<`: without one, a job is its own
    flattening (nothing to expand, nothing to rewrite)."""
    return any("{{" in text or "<<" in text for text in strings(tree))


def count_refs(tree: Any) -> int:
    """How many `{{` a plain tree's strings hold."""
    return sum(text.count("{{") for text in strings(tree))


def cycle_problems(job: Any) -> list[str]:
    """One problem per template reference cycle in `job`, or else per string that would
    expand past MAX_EXPANDED_CHARS: found without interpolating (`config.refs`)."""
    return reference_problems(raw(job))


def _expanded(job: Any, cycles_checked: bool = False) -> Any:
    plain = raw(job)  # read once, for both the cycles and the expansion's budget
    refs = count_refs(plain)
    problems = reference_problems(plain) if refs and not cycles_checked else []
    if problems:
        raise ConfigError(join_problems("invalid job", problems), problems)
    tree, out = expand(job, refs=refs)
    if out.problems:
        raise ConfigError(join_problems("invalid job", out.problems), out.problems)
    return tree


def expand_field(struct: Any, name: str, limits: Limits = KEY_LIMITS) -> Any:
    """One field of `struct` expanded in its scopes as `struct.NAME()` would, but within
    `limits`; None when the field is unset or cannot be expanded."""
    value = struct._schema_data[name]
    if value is Empty:
        return None
    tree, out = expand(value.in_scope(*struct.scopes()), limits=limits)
    return None if out.problems else tree


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


# References bound when a task starts: everything else must be bound when a job is loaded
# (the Aurora client's rule: "Config contains unbound variables").
RUNTIME_REFS = ("mesos.instance", "mesos.hostname")
RUNTIME_SCOPE = "thermos."


def is_runtime_ref(ref: str) -> bool:
    """`thermos.*`, `mesos.instance` and `mesos.hostname`: bound when the task starts."""
    return ref.startswith(RUNTIME_SCOPE) or ref in RUNTIME_REFS


def load_time_unbound(job: Any) -> list[str]:
    """Every `{{ref}}` left unbound anywhere in `job` (container, metadata and all) that is
    not bound when the task starts, each once, in the order found."""
    _, out = expand(job)
    found = dict.fromkeys(ref for _, ref in out.unbound if not is_runtime_ref(ref[2:-2].strip()))
    return list(found)
