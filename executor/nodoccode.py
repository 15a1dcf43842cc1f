"""A module's code compiled without its docstrings, from its syntax tree, for
`executor/nodocs.py`'s files (see its docstring: what goes, what stays, and why). Loaded only
to compile one: a start whose modules all have their files never loads it (the nodoc loader
compiles this one, as it loads, as Python would).
"""
from __future__ import annotations

from executor.nodocs import lines_only

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
