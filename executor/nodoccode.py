"""A module's code compiled without its docstrings, from its syntax tree, for
`executor/nodocs.py`'s files (see its docstring: what goes, what stays, and why). Loaded only
to compile one: a start whose modules all have their files never loads it (the nodoc loader
compiles this one, as it loads, as Python would).
"""
from __future__ import annotations

TYPE_CHECKING = False  # not `typing`'s (see executor/nodocs.py)
if TYPE_CHECKING:
    import _ast
    from collections.abc import Iterator
    from types import CodeType


def compile_without_docstrings(source: bytes, path: str, *, annotations: bool = True) -> CodeType:
    """`source`'s module code without docstrings, line numbers and asserts kept; without its
    functions' annotations too when not `annotations` (Stoker's own modules: a class's
    fields keep theirs, which attrs reads). With the compiler's own `_ast` (the `ast` module
    may be the one being loaded), imported here: making its 120-odd node classes takes 1.4
    ms, which a start that compiles nothing saves."""
    import _ast

    tree = compile(source, path, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
    if not isinstance(tree, _ast.Module):  # what "exec" always gives
        raise TypeError(f"{path}: not a module's syntax tree")
    for node in _nodes(tree):
        if not annotations and isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef)):
            _unannotated(node)
        if not isinstance(node, (_ast.Module, _ast.ClassDef, _ast.FunctionDef, _ast.AsyncFunctionDef)):
            continue
        # the docstring and any string statement after it (which would become the docstring;
        # a statement of nothing but a constant compiles to nothing anyway)
        while node.body and _is_string(node.body[0]):
            first = node.body[0]
            if len(node.body) > 1 or isinstance(node, _ast.Module):  # a module may be empty
                del node.body[0]
            else:  # the body's only statement: a `pass` on its line
                # (its columns and end go: `lines_only` keeps lines alone)
                node.body[0] = _ast.Pass(lineno=first.lineno, col_offset=first.col_offset)
    return lines_only(compile(tree, path, "exec", dont_inherit=True))


def _unannotated(function: _ast.FunctionDef | _ast.AsyncFunctionDef) -> None:
    """`function` without the annotations of its parameters and its return: each a string
    (`from __future__ import annotations`) that its function object held in a tuple for its
    whole life, to be read by nothing but `typing.get_type_hints()` and `inspect`."""
    function.returns = None
    arguments = function.args
    for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg):
        if argument is not None:
            argument.annotation = None


def _is_string(statement: _ast.stmt) -> bool:
    import _ast

    return (isinstance(statement, _ast.Expr) and isinstance(statement.value, _ast.Constant)
            and isinstance(statement.value.value, str))


def _nodes(tree: _ast.AST) -> Iterator[_ast.AST]:
    """Every node of `tree` (`ast.walk`'s order does not matter here)."""
    import _ast

    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for field in node._fields:
            value = getattr(node, field)  # (the parser sets every field, None where it has none)
            if isinstance(value, list):
                stack.extend(item for item in value if isinstance(item, _ast.AST))
            elif isinstance(value, _ast.AST):
                stack.append(value)


def lines_only(code: CodeType, _tables: dict[bytes, bytes] | None = None) -> CodeType:
    """`code`, and every code object it holds, with a location table of line numbers only
    (`executor/nodocs.py`'s docstring): each instruction keeps its line, its columns go.
    Equal tables are one object (`_tables`: the first of each), and a constants tuple with
    no code in it is the compiler's, which made one tuple of a module's equal ones (`(None,)`
    of many functions): `marshal` then writes each once, and a module loads one of each (a
    tuple made anew for every code object was 66 KB more of a supervisor's, its tables 17)."""
    tables: dict[bytes, bytes] = {} if _tables is None else _tables
    consts = code.co_consts
    if any(type(c) is type(code) for c in consts):
        consts = tuple(lines_only(c, tables) if type(c) is type(code) else c for c in consts)
    table = line_table(code)
    return code.replace(co_linetable=tables.setdefault(table, table), co_consts=consts)


def line_table(code: CodeType) -> bytes:
    """`code`'s line numbers as a location table (CPython's Objects/locations.md, 3.11 to
    3.13): for each run of instructions on one line (`co_lines()`, adjacent runs of the same
    line joined), entries of up to 8 code units, "no column" (13: the line's difference from
    the previous entry's, a signed varint) or "no location" (15: no line)."""
    runs: list[list] = []
    for start, end, line in code.co_lines():
        if runs and runs[-1][2] == line and runs[-1][1] == start:
            runs[-1][1] = end
        else:
            runs.append([start, end, line])
    table = bytearray()
    previous = code.co_firstlineno
    for start, end, line in runs:
        units = (end - start) // 2
        while units > 0:
            length = min(units, 8)
            units -= length
            if line is None:
                table.append(0x80 | 15 << 3 | (length - 1))
                continue
            table.append(0x80 | 13 << 3 | (length - 1))
            delta = line - previous
            value = -delta << 1 | 1 if delta < 0 else delta << 1  # signed: its sign in bit 0
            while value >= 64:  # 6 bits a byte, least significant first, bit 6: more follow
                table.append(0x40 | value & 63)
                value >>= 6
            table.append(value)
            previous = line
    return bytes(table)
