"""`executor/nodoccode.py`'s `dumps`, stated where `test_nodocs_compile.py` leaves it: what is
shared (a long, in either sign; never a code object), how a reference to a value written as
a reference is written, a stream with nothing to share left as `marshal` wrote it, the
fallback, and `_parse`'s refusals (each file `dumps` writes is loaded back, so a stream it
would get wrong must be one it refuses)."""
from __future__ import annotations

import marshal
import types

import pytest

from executor import nodoccode
from executor.nodoccode import _parse, compile_without_docstrings, dumps

BIG = 2 ** 70
LONGS = f"""
def a():
    return ({BIG}, -{BIG}, 1)

def b():
    return ({BIG}, -{BIG}, 2)
"""


def _functions(code: types.CodeType) -> dict[str, types.CodeType]:
    return {c.co_name: c for c in code.co_consts if isinstance(c, types.CodeType)}


def test_equal_longs_of_either_sign_are_one_object():
    code = compile_without_docstrings(LONGS.encode(), "/nowhere/longs.py")
    plain, shared = marshal.dumps(code), dumps(code)
    assert len(shared) < len(plain) and marshal.loads(shared) == code
    loaded = _functions(marshal.loads(shared))
    a, b = loaded["a"].co_consts[1], loaded["b"].co_consts[1]
    assert a[:2] == (BIG, -BIG) and a[0] is b[0] and a[1] is b[1] and a is not b


def test_equal_code_objects_stay_two():
    """A code object is specialized as it runs: two equal lambdas keep a code object each."""
    code = compile_without_docstrings(b"f, g = lambda: 0, lambda: 0\n", "/nowhere/lambdas.py")
    shared = dumps(code)
    assert len(shared) < len(marshal.dumps(code))  # (the lambdas' tables are one)
    f, g = marshal.loads(shared).co_consts[:2]
    assert f == g and f is not g


def test_one_code_object_met_twice_stays_one_and_the_rest_is_shared():
    """`marshal` refers to one object met twice: the reference to a code object (never shared
    by value) is written to the object itself."""
    code = compile_without_docstrings(LONGS.encode(), "/nowhere/longs.py")
    a = _functions(code)["a"]
    twice = code.replace(co_consts=(*code.co_consts, a, a))
    shared = dumps(twice)
    assert len(shared) < len(marshal.dumps(twice))
    consts = marshal.loads(shared).co_consts
    assert consts[-1] is consts[-2] == a


def test_a_reference_to_a_value_written_as_a_reference_is_to_its_first():
    """The second of two equal tuples is written as a reference to the first; `marshal`'s own
    reference to the second is then to the first too."""
    code = compile_without_docstrings(LONGS.encode(), "/nowhere/longs.py")
    first, second = tuple([BIG, "x"]), tuple([BIG, "x"])
    assert first is not second
    twice = code.replace(co_consts=(*code.co_consts, first, second, second))
    shared = dumps(twice)
    assert len(shared) < len(marshal.dumps(twice))
    consts = marshal.loads(shared).co_consts
    assert consts[-3] is consts[-2] is consts[-1] == first


@pytest.mark.parametrize("source", [b"x = 1\n", b"def f(a):\n    return a\n", b""])
def test_with_nothing_equal_twice_the_stream_is_marshal_s_own(source):
    """No value flagged that nothing refers to: the same bytes as `marshal`."""
    code = compile(source, "/nowhere/small.py", "exec", dont_inherit=True)
    assert dumps(code) == marshal.dumps(code)


def test_a_stream_that_would_not_load_as_the_same_code_is_marshal_s_own(monkeypatch):
    code = compile_without_docstrings(LONGS.encode(), "/nowhere/longs.py")
    other = compile("x = 2", "/nowhere/longs.py", "exec", dont_inherit=True)
    monkeypatch.setattr(nodoccode, "_write", lambda root: marshal.dumps(other))
    assert dumps(code) == marshal.dumps(code)


def test_a_stream_cut_short_or_with_more_or_of_a_type_code_holds_not_is_refused():
    data = marshal.dumps(compile_without_docstrings(LONGS.encode(), "/nowhere/longs.py"))
    assert _parse(data).kind == ord("c")
    for stream, words in ((data[:-1], "marshal data cut short"), (data + b"N", "marshal data after the code"),
                          (marshal.dumps({1: 2}), "marshal type '{' is not one of code's")):
        with pytest.raises(ValueError) as refused:
            _parse(stream)
        assert str(refused.value) == words
