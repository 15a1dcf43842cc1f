"""`executor.nodoccode.compile_without_docstrings`: what goes (docstrings, column positions)
and what stays (asserts, every other string, each instruction's line, `from __future__`)."""
from __future__ import annotations

import dis
import inspect
import sysconfig
import textwrap
import traceback
import types
from pathlib import Path

import pytest

from executor.nodoccode import compile_without_docstrings, lines_only

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


def test_a_module_without_the_future_import_keeps_its_annotations_evaluated():
    # compiled as its own source says, not with this module's `from __future__ import annotations`
    ns = load('"""Doc."""\nLIMIT: int = 3\n\n\ndef f(x: int) -> str:\n    """Doc."""\n    return str(x)\n')
    assert ns["__annotations__"] == {"LIMIT": int}
    assert ns["f"].__annotations__ == {"x": int, "return": str}


ANNOTATED = textwrap.dedent("""\
    from __future__ import annotations

    LIMIT: int = 3


    class Kept:
        field: int = 1

        def method(self, a: int, /, b: str, *rest: bytes, c: float = 1.0, **more: dict) -> Kept:
            return self


    async def waits(x: int) -> None:
        return None
    """)


def test_without_annotations_no_function_keeps_any_and_a_class_or_module_keeps_its_own():
    """Stoker's own modules (`annotations=False`): a class's fields keep theirs (attrs reads
    them), and so does the module; no parameter of any kind nor a return keeps one."""
    namespace: dict = {"__name__": "probe"}
    exec(compile_without_docstrings(ANNOTATED.encode(), "/nowhere/probe.py", annotations=False), namespace)
    assert namespace["__annotations__"] == {"LIMIT": "int"} and namespace["Kept"].__annotations__ == {"field": "int"}
    assert namespace["Kept"].method.__annotations__ == {} and namespace["waits"].__annotations__ == {}
    assert load(ANNOTATED)["Kept"].method.__annotations__ == {
        "a": "int", "b": "str", "rest": "bytes", "c": "float", "more": "dict", "return": "Kept"}


def test_a_function_runs_the_instructions_on_the_lines_its_source_gives():
    # its docstring taken out, not put in a `pass` (which leaves an instruction on its line)
    plain = compile(SOURCE, "/nowhere/probe.py", "exec", dont_inherit=True)
    compact = compile_without_docstrings(SOURCE.encode(), "/nowhere/probe.py")
    functions = [pair for pair in zip(codes(plain), codes(compact), strict=True)
                 if pair[0].co_flags & inspect.CO_OPTIMIZED]  # not the module's and classes' (their `__doc__ =`)
    assert [old.co_name for old, _ in functions] == ["only_doc", "doc_and_code", "code_first", "fails", "method",
                                                    "later"]
    for old, new in functions[1:]:
        assert instructions(new) == instructions(old), old.co_name
    # a docstring alone: its function returns on the docstring's line (the `pass` there), not the `def`'s
    doc_line = SOURCE.splitlines().index('    """Nothing but a docstring."""') + 1
    assert [line for _, line in instructions(functions[0][1])][1:] == [doc_line] * (len(instructions(functions[0][0])) - 1)


def instructions(code: types.CodeType) -> list[tuple[str, int | None]]:
    return [(i.opname, i.positions.lineno if i.positions else None) for i in dis.get_instructions(code)]


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


def codes(code: types.CodeType) -> list[types.CodeType]:
    """`code` and every code object it holds, in order."""
    return [code] + [c for k in code.co_consts if isinstance(k, types.CodeType) for c in codes(k)]


def joined_lines(code: types.CodeType) -> list[tuple[int, int, int | None]]:
    """`co_lines()` with adjacent runs of one line joined: each instruction's line."""
    runs: list[tuple[int, int, int | None]] = []
    for start, end, line in code.co_lines():
        if runs and runs[-1][2] == line and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end, line)
        else:
            runs.append((start, end, line))
    return runs


def assert_same_lines(plain: types.CodeType, compact: types.CodeType) -> None:
    pairs = list(zip(codes(plain), codes(compact), strict=True))
    for old, new in pairs:
        assert joined_lines(new) == joined_lines(old), old.co_qualname
        assert [p[0] for p in new.co_positions()] == [p[0] for p in old.co_positions()], old.co_qualname
        assert {p[2:] for p in new.co_positions()} <= {(None, None)}  # no columns
    assert sum(len(n.co_linetable) for _, n in pairs) < sum(len(o.co_linetable) for o, _ in pairs)


WITHOUT_DOCS = textwrap.dedent("""\
    import functools


    @functools.lru_cache(
        maxsize=None)
    def spread(values,
               scale=2):
        try:
            total = sum(v * scale
                        for v in values
                        if v)
        except TypeError:
            total = None
        finally:
            values = ()
        return {"total": total,
                "lambda": (lambda x: x + 1)(total or 0)}
    """) + "\n".join(f"VALUE_{i} = [n * {i} for n in range({i}) if n % 2]" for i in range(300))


def test_each_instruction_keeps_its_line_and_loses_its_columns():
    source = WITHOUT_DOCS  # nothing to take out but the columns: the same code otherwise
    assert_same_lines(compile(source, "/nowhere/probe.py", "exec", dont_inherit=True),
                      compile_without_docstrings(source.encode(), "/nowhere/probe.py"))


@pytest.mark.parametrize("name", ["typing", "logging/__init__", "subprocess", "json/decoder", "pathlib",
                                  "threading", "enum", "inspect", "tokenize", "ast"])
def test_the_standard_librarys_code_keeps_every_line(name):
    """Long functions, far line jumps (the varint's several bytes), lines before the first
    (decorators), instructions with no line: as the interpreter running the tests compiles them."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path = next(p for p in (stdlib / f"{name}.py", stdlib / name / "__init__.py") if p.exists())
    plain = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    assert_same_lines(plain, lines_only(plain))


def test_a_traceback_names_the_line_without_marks_under_it(tmp_path):
    path = tmp_path / "marks.py"  # a file, so that the traceback shows the line (and would mark it)
    path.write_text("def fails(values):\n    return values[0] + values[1]['missing']\n")
    namespace: dict = {"__name__": "probe"}
    exec(compile_without_docstrings(path.read_bytes(), str(path)), namespace)
    try:
        namespace["fails"]([1, {}])
    except KeyError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
    assert (frame.lineno, frame.end_lineno, frame.colno, frame.end_colno) == (2, 2, None, None)
    shown = "".join(traceback.format_list([frame]))
    assert "return values[0] + values[1]['missing']" in shown and "^" not in shown


def _codes(code: types.CodeType) -> list[types.CodeType]:
    """`code` and every code object under it."""
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_codes(const))
    return found


SHAPES = textwrap.dedent("""
    class Shapes:
        def width(self):
            return self._width

        def height(self):
            return self._height

        def area(self):
            return self.width() * self.height() if self._width else None

        def empty(self):
            return self.width() * self.height() if self._width else None
    """)


def test_a_line_s_adjacent_instructions_are_one_entry_of_the_table():
    """`co_lines()` gives a range per entry of the compiler's table (one per span of columns):
    the rebuilt table joins a line's adjacent ones, one entry for up to 8 code units."""
    from executor.nodoccode import line_table

    namespace: dict = {}
    exec(compile("def g(x):\n    y = x\n\n\n    return y\n", "/nowhere/g.py", "exec", dont_inherit=True), namespace)
    code = namespace["g"].__code__
    units = {line: 0 for *_, line in code.co_lines()}
    for start, end, line in code.co_lines():
        units[line] += (end - start) // 2
    assert list(units) == [1, 2, 5] and len(list(code.co_lines())) > 3 and max(units.values()) <= 8
    # "no column" entries, each its length and its line's difference from the one before, doubled
    assert line_table(code) == bytes([0xE8 | units[1] - 1, 0, 0xE8 | units[2] - 1, 2, 0xE8 | units[5] - 1, 6])


def test_equal_line_tables_and_constants_are_one_object_each_through_marshal():
    """The compiler makes one tuple of a module's equal constants tuples (the tuple of its
    code objects' `co_consts`, `(None,)` of many functions); a code's line table rebuilt
    made each its own again, and a module's code held both copies for its whole life (some
    80 KB of a supervisor's): the rebuilt code keeps the compiler's tuple, and one line
    table of equal ones, as `marshal` writes and loads them."""
    import marshal

    plain = compile(SHAPES, "/nowhere/shapes.py", "exec", dont_inherit=True)
    methods = {c.co_name: c for c in _codes(plain)}
    assert methods["width"].co_consts is methods["height"].co_consts  # the compiler's one tuple
    for code in (lines_only(plain), compile_without_docstrings(SHAPES.encode(), "/nowhere/shapes.py"),
                 marshal.loads(marshal.dumps(lines_only(plain)))):
        methods = {c.co_name: c for c in _codes(code)}
        assert methods["width"].co_consts is methods["height"].co_consts
        assert methods["width"].co_linetable == methods["height"].co_linetable
        assert methods["width"].co_linetable is methods["height"].co_linetable
        assert methods["area"].co_linetable is methods["empty"].co_linetable
        assert methods["area"].co_consts is methods["empty"].co_consts


SIZED = textwrap.dedent("""
    class Sized:
        @property
        def size(self):
            return self._size

        @size.setter
        def size(self, value):
            self._size = value

        def area(self, value):
            return (self._size, value, 1.5, -0.0, 2 ** 70, b"x", frozenset({1}), "\\u00e9")

        def other(self, value):
            return (self._size, value, 1.5, 0.0, 2 ** 70, b"x", frozenset({1}), "\\u00e9")
    """)


def test_the_files_stream_loads_as_the_same_code_its_equal_values_one_object():
    """`dumps`: marshal refers to one object met twice, never to two equal ones; the
    file's stream refers each value that recurs to its first (the getter's and setter's
    qualified name, local names and their kinds), and loads as the same code."""
    import marshal

    from executor.nodoccode import dumps

    code = compile_without_docstrings(SIZED.encode(), "/nowhere/sized.py")
    plain, shared = marshal.dumps(code), dumps(code)
    assert len(shared) < len(plain) and marshal.loads(shared) == code
    methods = {}
    for one in _codes(marshal.loads(shared)):
        methods.setdefault(one.co_name, []).append(one)
    getter, setter = methods["size"]
    assert getter.co_qualname is setter.co_qualname and getter.co_names is setter.co_names
    area, other = methods["area"][0].co_consts, methods["other"][0].co_consts
    # equal but not alike: -0.0 and 0.0 stay apart, and so do the two tuples that hold them
    assert area is not other and area[-1] is other[-1] == "\u00e9"
    assert [str(c) for c in area if type(c) is float] == ["1.5", "-0.0"]
    assert [str(c) for c in other if type(c) is float] == ["1.5", "0.0"]


@pytest.mark.parametrize("name", ["typing", "logging/__init__", "enum", "pathlib", "ast"])
def test_the_standard_librarys_code_loads_the_same_from_the_files_stream(name):
    import marshal

    from executor.nodoccode import dumps

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    path = next(p for p in (stdlib / f"{name}.py", stdlib / name / "__init__.py") if p.exists())
    code = compile_without_docstrings(path.read_bytes(), str(path))
    shared = dumps(code)
    assert len(shared) < len(marshal.dumps(code)) and marshal.loads(shared) == code


def test_a_stream_it_cannot_read_is_marshals_own(monkeypatch):
    import marshal

    from executor import nodoccode

    code = compile_without_docstrings(SIZED.encode(), "/nowhere/sized.py")
    monkeypatch.setattr(nodoccode, "_FIXED", {})  # an int it does not know: its own stream
    assert nodoccode.dumps(code) == marshal.dumps(code)


def test_code_that_differs_only_where_equality_does_not_look_is_not_alike():
    from executor.nodoccode import _alike

    code = compile_without_docstrings(SIZED.encode(), "/nowhere/sized.py")
    [sized] = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    assert _alike(code, code)
    for changed in (sized.replace(co_qualname="Other"), sized.replace(co_stacksize=sized.co_stacksize + 1),
                    sized.replace(co_filename="/elsewhere.py")):
        other = code.replace(co_consts=tuple(changed if c is sized else c for c in code.co_consts))
        assert other == code and not _alike(code, other)
