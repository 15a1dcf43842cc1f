"""attrs' `__repr__` and `__eq__`, one function each for every class, not code of each class's own.

attrs writes, for each class, a `__repr__` and an `__eq__` with the class's fields written
out in its source (`attr._make._make_repr_script`, `_make_eq_script`): a code object each,
1.9 KiB a `__repr__` and 0.7 KiB an `__eq__` once compiled, for a supervisor's 92 classes
0.24 MiB held for its whole life (`sys.getsizeof` of their code, its tables and constants).
With the code cache installed (`executor/codecache.py`), each class's script defines them as
a one-line call of `attrs_repr` / `attrs_eq` here with the class's fields (a tuple, made
once as attrs makes the class), and they answer exactly what attrs' own would:

- `__repr__`: `Name(a=1, b='x')` with the class's `__qualname__` after its last `>.` (its
  name where a function made it), each field attrs shows (`repr=False` ones left out) by
  `repr()` or its own `repr=` callable, one not set by `__init__` (`init=False`) shown as
  NOTHING while unset; a value that holds itself shows `...` there (attrs' own per-thread
  guard, `attr._compat.repr_context`, so that the two kinds of `__repr__` guard each other).
- `__eq__`: NotImplemented for another class (a subclass too), else each compared field
  (`eq=False` ones left out) by `==`, or by `==` of its `eq_key`'s values, in order, the
  first false answer returned as it is (`and`, as attrs' expression chains them), else the
  last one; True for a class with no compared field.

Only `repr_ns=None` (attrs' default; the namespace form is deprecated): a `__repr__` with
a namespace is attrs' own. A traceback through one names this file's line, not the
generated file's: both have no source of the class to show. Only where attrs' two steps
are the ones this module knows (their parameters and the lines they write); otherwise,
and with STOKER_CODE_CACHE=off, attrs writes its own.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Shown = tuple[str, Callable[[Any], Any] | None, bool]  # name, its repr= callable (None: repr()), init
    Compared = tuple[str, Callable[[Any], Any] | None]  # name, its eq_key (None: the value itself)

REPR_SCRIPT = "def __repr__(self):\n    return _attrs_repr(self, _attrs_shown)"
EQ_SCRIPT = "def __eq__(self, other):\n    return _attrs_eq(self, other, _attrs_compared)"
# lines attrs' own steps write (attrs 24.3 to 26.1): the steps served only where they are these
REPR_LINE = "    already_repring = _compat.repr_context.already_repring"
EQ_LINE = "    if other.__class__ is not self.__class__:"


def install(make: Any) -> bool:
    """attrs' `_make_repr_script` and `_make_eq_script` (module `attr._make`) served by
    the shared functions where they are the ones this module knows; True when both are."""
    repr_step, eq_step = getattr(make, "_make_repr_script", None), getattr(make, "_make_eq_script", None)
    if not (_known(repr_step, ("attrs", "ns"), REPR_LINE) and _known(eq_step, ("attrs",), EQ_LINE)):
        return False
    compat, nothing = make._compat, make.NOTHING

    def attrs_repr(self: Any, shown: tuple[Shown, ...]) -> str:
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
            fields = ", ".join(_shown(self, name, own, init, nothing) for name, own, init in shown)
            return f'{self.__class__.__qualname__.rsplit(">.", 1)[-1]}({fields})'
        finally:
            already_repring.remove(id(self))

    def repr_script(attrs: list[Any], ns: str | None) -> tuple[str, dict[str, Any]]:
        if ns is not None:
            return repr_step(attrs, ns)  # type: ignore[misc]  # _known() checked it
        shown = tuple((a.name, None if a.repr is True else a.repr, a.init) for a in attrs if a.repr is not False)
        return REPR_SCRIPT, {"_attrs_repr": attrs_repr, "_attrs_shown": shown}

    def eq_script(attrs: list[Any]) -> tuple[str, dict[str, Any]]:
        compared = tuple((a.name, a.eq_key) for a in attrs if a.eq)
        return EQ_SCRIPT, {"_attrs_eq": attrs_eq, "_attrs_compared": compared}

    make._make_repr_script, make._make_eq_script = repr_script, eq_script
    return True


def _known(step: object, parameters: tuple[str, ...], line: str) -> bool:
    """Whether `step` is a function of `parameters` that writes `line` (a constant of its
    code, or of a tuple of them: a list of constants is one)."""
    code = getattr(step, "__code__", None)
    if code is None or code.co_varnames[:code.co_argcount] != parameters:
        return False
    return any(const == line or isinstance(const, tuple) and line in const for const in code.co_consts)


def _shown(self: Any, name: str, own: Callable[[Any], Any] | None, init: bool, nothing: object) -> str:
    """One field as attrs' `__repr__` shows it: `name=` and its value's repr."""
    value = getattr(self, name) if init else getattr(self, name, nothing)
    return f"{name}={value!r}" if own is None else f"{name}={own(value)}"


def attrs_eq(self: Any, other: Any, compared: tuple[Compared, ...]) -> Any:
    """attrs' `__eq__` of a class whose compared fields are `compared` (see the docstring)."""
    if other.__class__ is not self.__class__:
        return NotImplemented
    last = len(compared) - 1
    for index, (name, key) in enumerate(compared):
        if key is None:
            answer = getattr(self, name) == getattr(other, name)
        else:
            answer = key(getattr(self, name)) == key(getattr(other, name))
        if index == last or not answer:  # the last answer as it is, untested (`and`)
            return answer
    return True
