"""`executor.attrsmethods`: one `__repr__`, `__eq__` and `__hash__` for every attrs class, in real
interpreters.

The same classes are made in a fresh process with attrs' own methods and in one with the
code cache installed (which serves them), and what they answer is compared (the same
PYTHONHASHSEED in each, so that a class's own number in its hash is the same too).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from attr import _make

from tests.support.attrsprobe import run_probe

pytestmark = pytest.mark.timeout(120)

SHARED = hasattr(_make, "_make_repr_script")  # attrs 23.1 writes each method apart: left as it is

PROBE = textwrap.dedent("""
    import json, sys
    from executor import codecache
    installed = sys.argv[1] == "cache" and codecache.install("run")
    import attrs

    class Odd:  # == answers a value that is not a bool; bool() of it is refused
        def __init__(self, value):
            self.value = value
        def __eq__(self, other):
            return Odd(self.value + other.value)
        def __bool__(self):
            raise ValueError("no truth value")
        def __repr__(self):
            return f"Odd({self.value})"

    @attrs.frozen
    class Plain:
        a: int
        b: str = "x"

    @attrs.define
    class Mixed:
        shown: int
        hidden: int = attrs.field(repr=False)
        custom: int = attrs.field(default=7, repr=lambda v: f"<{v}>")
        late: int = attrs.field(init=False)
        keyed: str = attrs.field(default="A", eq=attrs.cmp_using(eq=lambda x, y: x.lower() == y.lower()))
        ignored: int = attrs.field(default=0, eq=False)

    @attrs.define
    class Empty:
        "No field."

    @attrs.frozen
    class Keyed:
        name: str = attrs.field(eq=str.lower)
        skipped: int = attrs.field(default=0, hash=False)

    @attrs.frozen(cache_hash=True)
    class Cached:
        x: int

    @attrs.frozen
    class Nothing:
        "No field, frozen."

    @attrs.define
    class Holder:
        inner: object = None

    @attrs.define
    class Last:
        first: int
        odd: object

    class Sub(Plain):
        "Plain's fields, another class."

    @attrs.frozen(repr=False, eq=False)
    class Wider(Plain):  # Plain's __repr__ and __eq__ (its fields only), a __getstate__ of its own
        c: int = 0

    def made():
        @attrs.frozen
        class Local:
            x: int
        return Local

    def deeper():  # deeper.<locals>.inner.<locals>.Deep: named by its last part
        def inner():
            @attrs.frozen
            class Deep:
                y: int
            return Deep
        return inner()

    def mixed(*args, **kwargs):
        made = Mixed(*args, **kwargs)
        made.late = 3
        return made

    m = Mixed(1, 2)
    unset = repr(m)
    m.late = 3
    loop = Holder()
    loop.inner = [loop]
    gone = Holder()
    del gone.inner  # a field __init__ sets, deleted: its repr raises, as attrs' own does
    try:
        deleted = repr(gone)
    except AttributeError:
        deleted = "AttributeError"
    try:
        Last(1, Odd(1)) == Last(1, Odd(2))
        last = "untested"
    except ValueError as exc:
        last = str(exc)
    try:
        Last(1, Odd(1)) == Last(2, Odd(2))
        first = "untested"
    except ValueError as exc:
        first = str(exc)
    answers = {
        "repr": [repr(Plain(1)), unset, repr(m), repr(Empty()), repr(loop), repr(Sub(2, "y")),
                 repr(made()(5)), repr([Plain(1), Holder(Plain(2))]), deleted, repr(deeper()(6))],
        "eq": [Plain(1) == Plain(1), Plain(1) == Plain(2), Plain(1) != Plain(1, "y"), Plain(1) == Sub(1),
               Plain(1) == 1, mixed(1, 2) == mixed(1, 9), mixed(1, 2, keyed="a") == mixed(1, 2, keyed="A"),
               mixed(1, 2, ignored=4) == mixed(1, 2), mixed(1, 2) == mixed(2, 2), Empty() == Empty(), Last(1, 2) == Last(1, 3)],
        "last": [last, first, repr(Last(1, Odd(1)).__eq__(Last(1, Odd(2))))[:4]],
        "hash": [hash(Plain(1)), hash(Plain(1)) == hash(Plain(1)), hash(Plain(1)) == hash(Sub(1)),
                 hash(Keyed("A")) == hash(Keyed("a")), hash(Keyed("A", 1)) == hash(Keyed("A", 2)),
                 hash(Keyed("A")), hash(Cached(3)), hash(Nothing()), Mixed.__hash__ is None],
    }
    import copy, pickle
    again = lambda value: pickle.loads(pickle.dumps(value))
    old = object.__new__(Plain)
    old.__setstate__((4, "t"))  # as attrs before 22.2 pickled a slotted class: a tuple in order
    answers["state"] = [repr(again(Plain(1))), repr(again(mixed(1, 2))), repr(copy.copy(Keyed("A", 3))),
                        repr(again(Sub(2, "y"))), repr(again(Wider(1, c=5))), again(Wider(1, c=5)).c,
                        hash(again(Cached(3))), repr(again(Cached(3))), repr(old), Plain(1).__getstate__()]
    answers["wider"] = [repr(Wider(1, c=5)), Wider(1, c=5) == Wider(1, c=6), Wider(1) == Plain(1)]
    methods = ("__repr__", "__eq__", "__hash__", "__getstate__", "__setstate__")
    shared = [getattr(Plain, m).__code__ is getattr(Keyed, m).__code__ for m in methods]
    shared += [getattr(Plain, m) is getattr(Keyed, m) for m in methods]  # one function: no closure a class
    print(json.dumps({"installed": installed, "answers": answers,
                      "shared": shared}))
""")


def probe(cache: Path, mode: str) -> dict:
    return run_probe(PROBE, cache, mode, seed=7)


def test_served_repr_and_eq_answer_what_attrs_own_do(tmp_path):
    plain, served = probe(tmp_path, "plain"), probe(tmp_path, "cache")
    again = probe(tmp_path, "cache")  # served from the file this time
    assert not plain["installed"] and served["installed"]
    assert plain["shared"] == [False] * 3 + [True] * 2 + [False] * 5  # attrs' pickling closures: one code
    assert served["shared"] == again["shared"] == [SHARED] * 10
    assert served["answers"] == again["answers"] == plain["answers"]
    assert plain["answers"]["wider"] == ["Wider(a=1, b='x')", True, False]  # the fields of the class that made them
    assert plain["answers"]["state"][4:6] == ["Wider(a=1, b='x')", 5] and plain["answers"]["state"][8] == "Plain(a=4, b='t')"
    reprs = plain["answers"]["repr"]
    assert reprs[1] == "Mixed(shown=1, custom=<7>, late=NOTHING, keyed='A', ignored=0)"
    assert reprs[4] == "Holder(inner=[...])" and reprs[6] == "Local(x=5)" and reprs[8:] == ["AttributeError", "Deep(y=6)"]
    # the last field's answer is returned as it is (`and`): bool() asked of the earlier ones only
    assert plain["answers"]["last"] == ["untested", "untested", "Odd("]
    assert plain["answers"]["hash"][1:5] == [True, True, True, True] and plain["answers"]["hash"][-1]


@pytest.mark.parametrize("missing", ["_make_repr_script", "_make_eq_script", "_make_hash_script",
                                     "_generate_unique_filename"])
def test_an_attrs_without_a_step_this_knows_is_left_as_it_is(missing):
    """attrs 23.1 (no `_make_repr_script`), or a later one that renamed a step: install()
    says so and changes nothing (not an AttributeError at every start)."""
    from types import SimpleNamespace

    from executor import attrsmethods

    steps = {name: getattr(_make, name, len) for name in ("_make_repr_script", "_make_eq_script",
                                                          "_make_hash_script", "_generate_unique_filename")}
    del steps[missing]
    make = SimpleNamespace(**steps)
    assert attrsmethods.install(make) is False
    assert vars(make) == steps
