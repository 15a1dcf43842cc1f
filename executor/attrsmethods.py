"""attrs' `__repr__`, `__eq__` and `__hash__`, one function each for every class, not code of each class's own.

attrs writes, for each class, a `__repr__`, an `__eq__` and a `__hash__` with the class's
fields written out in its source (`attr._make._make_repr_script`, `_make_eq_script`,
`_make_hash_script`): a code object each, 1.9 KiB a `__repr__`, 0.7 KiB an `__eq__` and 0.6
KiB a `__hash__` once compiled, for a supervisor's 92 classes 0.29 MiB held for its whole
life (`sys.getsizeof` of their code, its tables and constants). With the code cache
installed (`executor/codecache.py`), each class's script makes them instead with one line
(`__repr__ = _attrs_repr(_attrs_shown)`, run once, not kept): a closure over the class's
fields (made as attrs makes the class: by column, their names, and a column of their other
settings only where one is not attrs' default; a tuple of names equal to the one made last
is that one, so a class's shown, compared, hashed and pickled fields mostly share one: a
tuple a field for each held 80 KB of a supervisor, docs/benchmarks.md, memcut) whose code, one for all the classes, calls
`attrs_repr` / `attrs_eq` / `attrs_hash` here; about 0.25 KiB a method (the function and
its cell). Where the code cache also names attrs' methods (`attrssteps._named`), even that
closure is not kept: the class gets the one function of every class (`shared_repr`,
`shared_eq`, `shared_hash`) and the closure's fields as a class attribute of its own
(`__stoker_shown__`, `__stoker_compared__`, `__stoker_hashed__`), which the function reads
from the instance's class, as it reads the method: both are set together, in the same
class, so a subclass that inherits one inherits the other. (A base's method called on an
instance of a subclass that has its own, `super().__repr__()` or `Base.__eq__(self, other)`,
reads the subclass's fields where attrs' closure read the base's: no code of Stoker's calls
them so, tests/unit/test_served_assumptions.py.) A slotted class's
`__getstate__` and `__setstate__` (attrs' two closures over its field names, for `pickle`
and `copy`) are served so too (`state_methods`: `__stoker_state__`), but with
`cache_hash=True` (attrs' own). A supervisor's 96 classes had 464 such closures, each a
function, its cells and, but the pickling ones, a name of its own: 108 KiB of `stoker run`'s
USS at N=100 (docs/benchmarks.md, mem10). The shared functions name no class (their
`__qualname__` and `__module__` are their own): a traceback shows this file's line either way. They answer
exactly what attrs' own would:

- `__repr__`: `Name(a=1, b='x')` with the class's `__qualname__` after its last `>.` (its
  name where a function made it), each field attrs shows (`repr=False` ones left out) by
  `repr()` or its own `repr=` callable, one not set by `__init__` (`init=False`) shown as
  NOTHING while unset; a value that holds itself shows `...` there (attrs' own per-thread
  guard, `attr._compat.repr_context`, so that the two kinds of `__repr__` guard each other).
- `__eq__`: NotImplemented for another class (a subclass too), else each compared field
  (`eq=False` ones left out) by `==`, or by `==` of its `eq_key`'s values, in order, the
  first false answer returned as it is (`and`, as attrs' expression chains them), else the
  last one; True for a class with no compared field.
- `__hash__`: `hash()` of the tuple of the class's own number (attrs' `hash()` of its
  generated file name) and each hashed field's value (`hash=True`, or `eq` ones when
  `hash` is unset), or its `eq_key`'s value. Not with `cache_hash=True`: attrs' own.

Only `repr_ns=None` (attrs' default; the namespace form is deprecated): a `__repr__` with
a namespace is attrs' own. A traceback through one names this file's line, not the
generated file's: both have no source of the class to show. Only where attrs' two steps
are the ones this module knows (their parameters and the lines they write); otherwise,
and with STOKER_CODE_CACHE=off, attrs writes its own.
"""
from __future__ import annotations

from itertools import repeat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    # the fields by column: their names, then each one's repr= callable (None: repr()) and
    # whether `__init__` sets it, or each one's eq_key (None: the value itself); a column of
    # nothing but None, or True, is None
    Shown = tuple[tuple[str, ...], tuple[Callable[[Any], Any] | None, ...] | None, tuple[bool, ...] | None]
    Compared = tuple[tuple[str, ...], tuple[Callable[[Any], Any] | None, ...] | None]

# what each class's script runs: a closure of the shared code over the class's fields
REPR_SCRIPT = "__repr__ = _attrs_repr(_attrs_shown)"
EQ_SCRIPT = "__eq__ = _attrs_eq(_attrs_compared)"
HASH_SCRIPT = "__hash__ = _attrs_hash(_attrs_hashed)"
# lines attrs' own steps write (attrs 24.3 to 26.1): the steps served only where they are these
REPR_LINE = "    already_repring = _compat.repr_context.already_repring"
EQ_LINE = "    if other.__class__ is not self.__class__:"
HASH_LINE = "def __hash__(self"
_attrs: list[Any] = []  # [attr._compat, attr.NOTHING] once installed
_last: list[Any] = [(), ((), None)]  # the names and the Compared made last (`_names`, `_compared`)


def install(make: Any) -> bool:
    """attrs' `_make_repr_script`, `_make_eq_script` and `_make_hash_script` (module
    `attr._make`) served by the shared functions where they are the ones this module knows;
    True when all three are."""
    repr_step, eq_step = getattr(make, "_make_repr_script", None), getattr(make, "_make_eq_script", None)
    hash_step, named = getattr(make, "_make_hash_script", None), getattr(make, "_generate_unique_filename", None)
    if not (_known(repr_step, ("attrs", "ns"), REPR_LINE) and _known(eq_step, ("attrs",), EQ_LINE)
            and _known(hash_step, ("cls", "attrs", "frozen", "cache_hash"), HASH_LINE) and callable(named)):
        return False
    _attrs[:] = [make._compat, make.NOTHING]

    def repr_script(attrs: list[Any], ns: str | None) -> tuple[str, dict[str, Any]]:
        if ns is not None:
            return repr_step(attrs, ns)  # type: ignore[misc]  # _known() checked it
        fields = [a for a in attrs if a.repr is not False]
        owns, inits = tuple(None if a.repr is True else a.repr for a in fields), tuple(a.init for a in fields)
        shown = (_names(tuple(a.name for a in fields)), None if owns.count(None) == len(owns) else owns,
                 None if all(inits) else inits)
        return REPR_SCRIPT, {"_attrs_repr": repr_of, "_attrs_shown": shown}

    def eq_script(attrs: list[Any]) -> tuple[str, dict[str, Any]]:
        compared = _compared([a for a in attrs if a.eq])
        return EQ_SCRIPT, {"_attrs_eq": eq_of, "_attrs_compared": compared}

    def hash_script(cls: type, attrs: list[Any], frozen: bool, cache_hash: bool) -> tuple[str, dict[str, Any]]:
        if cache_hash:
            return hash_step(cls, attrs, frozen, cache_hash)  # type: ignore[misc]  # _known() checked it
        hashed = _compared([a for a in attrs if a.hash is True or (a.hash is None and a.eq is True)])
        return HASH_SCRIPT, {"_attrs_hash": hash_of, "_attrs_hashed": (hash(named(cls, "hash")), hashed)}

    make._make_repr_script, make._make_eq_script, make._make_hash_script = repr_script, eq_script, hash_script
    return True


def _names(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names`, or the equal tuple made last: a class's shown, compared, hashed and pickled
    fields are mostly the same, and each a tuple of its own held 8 KiB (see the docstring)."""
    if names != _last[0]:
        _last[0] = names
    return _last[0]


def _compared(fields: list[Any]) -> Compared:
    """The `Compared` of attrs' `fields`, or the equal one made last (a class's hashed fields
    are mostly its compared ones)."""
    keys = tuple(a.eq_key for a in fields)
    compared = (_names(tuple(a.name for a in fields)), None if keys.count(None) == len(keys) else keys)
    if compared != _last[1]:
        _last[1] = compared
    return _last[1]


def _known(step: object, parameters: tuple[str, ...], line: str) -> bool:
    """Whether `step` is a function of `parameters` that writes `line` (a constant of its
    code, or of a tuple of them: a list of constants is one)."""
    code = getattr(step, "__code__", None)
    if code is None or code.co_varnames[:code.co_argcount] != parameters:
        return False
    return any(const == line or isinstance(const, tuple) and line in const for const in code.co_consts)


# the fields of a class whose method is a shared one, as a class attribute (see the docstring)
SHOWN, COMPARED, HASHED, STATE = "__stoker_shown__", "__stoker_compared__", "__stoker_hashed__", "__stoker_state__"


def shared(method: object) -> tuple[str, object, Callable[..., Any]] | None:
    """For a closure `repr_of`, `eq_of` or `hash_of` made: the class attribute that holds
    its fields, those fields, and the shared function that reads them; None for anything else."""
    code = getattr(method, "__code__", None)
    found = _SERVED.get(code) if code is not None else None
    if found is None:
        return None
    name, function = found
    return name, method.__closure__[0].cell_contents, function  # type: ignore[attr-defined]


def state_methods(original: Callable[[Any], tuple[Any, Any]]) -> Callable[[Any], tuple[Any, Any]]:
    """attrs' `_ClassBuilder._make_getstate_setstate` (`original`), whose two closures over
    the class's field names become the shared `shared_getstate` and `shared_setstate`, the
    names `__stoker_state__` in the class being built; attrs' own with `cache_hash=True`."""
    def make_getstate_setstate(self: Any) -> tuple[Any, Any]:
        if self._cache_hash:
            return original(self)
        self._cls_dict[STATE] = _names(tuple(name for name in self._attr_names if name != "__weakref__"))
        return shared_getstate, shared_setstate

    return make_getstate_setstate


def shared_repr(self: Any) -> str:
    """Every served class's `__repr__`: `attrs_repr` of the shown fields of its class."""
    return attrs_repr(self, type(self).__stoker_shown__)


def shared_eq(self: Any, other: Any) -> Any:
    """Every served class's `__eq__`: `attrs_eq` of the compared fields of its class."""
    return attrs_eq(self, other, type(self).__stoker_compared__)


def shared_hash(self: Any) -> int:
    """Every served class's `__hash__`: `attrs_hash` of the number and hashed fields of its class."""
    return attrs_hash(self, type(self).__stoker_hashed__)


def shared_getstate(self: Any) -> dict[str, Any]:
    """attrs' `__getstate__` of a slotted class: each field's value by its name."""
    return {name: getattr(self, name) for name in type(self).__stoker_state__}


def shared_setstate(self: Any, state: Any) -> None:
    """attrs' `__setstate__` of a slotted class (a frozen one too): the fields `state` holds,
    a dict by name or, as attrs before 22.2 pickled them, a tuple in order."""
    names = type(self).__stoker_state__
    if isinstance(state, tuple):
        for name, value in zip(names, state):
            object.__setattr__(self, name, value)
    else:
        for name in names:
            if name in state:
                object.__setattr__(self, name, state[name])


def repr_of(shown: Shown) -> Callable[[Any], str]:
    """A class's `__repr__`: `attrs_repr` of its shown fields."""
    def __repr__(self: Any) -> str:
        return attrs_repr(self, shown)

    return __repr__


def eq_of(compared: Compared) -> Callable[[Any, Any], Any]:
    """A class's `__eq__`: `attrs_eq` of its compared fields."""
    def __eq__(self: Any, other: Any) -> Any:
        return attrs_eq(self, other, compared)

    return __eq__


def hash_of(hashed: tuple[int, Compared]) -> Callable[[Any], int]:
    """A class's `__hash__`: `attrs_hash` of its number and hashed fields."""
    def __hash__(self: Any) -> int:
        return attrs_hash(self, hashed)

    return __hash__


def _closure_code(make: Callable[..., Any]) -> object:
    """The code of the closure `make` returns."""
    return next(const for const in make.__code__.co_consts if hasattr(const, "co_code"))


_SERVED: dict[object, tuple[str, Callable[..., Any]]] = {
    _closure_code(repr_of): (SHOWN, shared_repr), _closure_code(eq_of): (COMPARED, shared_eq),
    _closure_code(hash_of): (HASHED, shared_hash)}


def attrs_repr(self: Any, shown: Shown) -> str:
    """attrs' `__repr__` of a class whose shown fields are `shown` (see the docstring)."""
    compat, nothing = _attrs
    try:
        already_repring = compat.repr_context.already_repring
    except AttributeError:
        already_repring = {id(self)}
        compat.repr_context.already_repring = already_repring
    else:
        if id(self) in already_repring:
            return "..."
        already_repring.add(id(self))
    try:
        names, owns, inits = shown
        fields = ", ".join(_shown(self, name, own, init, nothing)
                           for name, own, init in zip(names, owns or repeat(None), inits or repeat(True)))
        return f'{self.__class__.__qualname__.rpartition(">.")[2]}({fields})'
    finally:
        already_repring.remove(id(self))


def _shown(self: Any, name: str, own: Callable[[Any], Any] | None, init: bool, nothing: object) -> str:
    """One field as attrs' `__repr__` shows it: `name=` and its value's repr."""
    value = getattr(self, name) if init else getattr(self, name, nothing)
    return f"{name}={value!r}" if own is None else f"{name}={own(value)}"


def attrs_eq(self: Any, other: Any, compared: Compared) -> Any:
    """attrs' `__eq__` of a class whose compared fields are `compared` (see the docstring)."""
    if other.__class__ is not self.__class__:
        return NotImplemented
    names, keys = compared
    last = len(names) - 1
    for index, (name, key) in enumerate(zip(names, keys or repeat(None))):
        if key is None:
            answer = getattr(self, name) == getattr(other, name)
        else:
            answer = key(getattr(self, name)) == key(getattr(other, name))
        if index == last or not answer:  # the last answer as it is, untested (`and`)
            return answer
    return True


def attrs_hash(self: Any, hashed: tuple[int, Compared]) -> int:
    """attrs' `__hash__` of a class of number and hashed fields `hashed` (see the docstring)."""
    number, (names, keys) = hashed
    if keys is None:
        return hash((number, *[getattr(self, name) for name in names]))
    return hash((number, *[getattr(self, name) if key is None else key(getattr(self, name))
                           for name, key in zip(names, keys)]))
