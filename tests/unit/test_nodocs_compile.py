"""`executor.nodocs.compile_without_docstrings`: what goes (docstrings) and what stays
(asserts, every other string, line numbers, `from __future__`)."""
from __future__ import annotations

import textwrap
import traceback

import pytest

from executor.nodocs import compile_without_docstrings

SOURCE = textwrap.dedent('''\
    """The module's docstring."""
    from __future__ import annotations


    def only_doc():
        """Nothing but a docstring."""


    def doc_and_code(x):
        """Docstring."""
        assert x > 0, "x must be positive"
        return "not a docstring"


    def code_first():
        value = 1
        "a string statement after code"
        return value


    def fails():
        """Docstring."""
        raise ValueError("the line a traceback names")


    class Documented:
        """Class docstring."""

        def method(self):
            """Method docstring."""
            return f"{1}"

        async def later(self):
            """Coroutine docstring."""
            return 2


    class OnlyDoc:
        """Only a docstring."""


    ANNOTATED: int = 3
''')


def load(source: str = SOURCE) -> dict:
    namespace: dict = {"__name__": "probe"}
    exec(compile_without_docstrings(source.encode(), "/nowhere/probe.py"), namespace)
    return namespace


def test_every_docstring_goes():
    ns = load()
    assert ns.get("__doc__") is None
    assert ns["only_doc"].__doc__ is None and ns["only_doc"]() is None
    assert ns["doc_and_code"].__doc__ is None
    assert ns["Documented"].__doc__ is None
    assert ns["Documented"].method.__doc__ is None
    assert ns["Documented"].later.__doc__ is None
    assert ns["OnlyDoc"].__doc__ is None


def test_code_and_other_strings_stay():
    ns = load()
    assert ns["doc_and_code"](1) == "not a docstring"
    assert ns["code_first"]() == 1
    assert ns["Documented"]().method() == "1"
    assert ns["ANNOTATED"] == 3
    assert ns["__annotations__"] == {"ANNOTATED": "int"}  # the __future__ import still counts


def test_asserts_stay_whatever_the_interpreter_flags():
    with pytest.raises(AssertionError, match="x must be positive"):
        load()["doc_and_code"](0)


def test_line_numbers_are_the_sources():
    try:
        load()["fails"]()
    except ValueError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
    line = SOURCE.splitlines().index('    raise ValueError("the line a traceback names")') + 1
    assert (frame.filename, frame.lineno, frame.name) == ("/nowhere/probe.py", line, "fails")


def test_an_empty_module_and_one_of_only_a_docstring():
    assert load("") == {"__name__": "probe", "__builtins__": load("")["__builtins__"]}
    assert load('"""Only this."""\n').get("__doc__") is None


def test_a_syntax_error_is_the_compilers():
    with pytest.raises(SyntaxError) as caught:
        compile_without_docstrings(b'"""Doc."""\ndef broken(:\n', "/nowhere/broken.py")
    assert (caught.value.filename, caught.value.lineno) == ("/nowhere/broken.py", 2)


def test_a_string_statement_after_the_docstring_does_not_become_one():
    ns = load(textwrap.dedent('''\
        """Doc."""
        "a string statement"


        def f():
            """Doc."""
            "another"
            return 1


        class C:
            """Doc."""
            "a third"
    '''))
    assert (ns.get("__doc__"), ns["f"].__doc__, ns["f"](), ns["C"].__doc__) == (None, None, 1, None)
