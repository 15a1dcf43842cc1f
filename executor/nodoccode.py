"""A module's code compiled without its docstrings, from its syntax tree, for
`executor/nodocs.py`'s files (see its docstring: what goes, what stays, and why). Loaded only
to compile one: a start whose modules all have their files never loads it (the nodoc loader
compiles this one, as it loads, as Python would).
"""
from __future__ import annotations

TYPE_CHECKING = False  # not `typing`'s (see executor/nodocs.py)
if TYPE_CHECKING:
    import _ast
    from collections.abc import Callable, Iterator
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


# ---- the code's file: `marshal`'s stream, each equal value one object ----

_FLAG_REF = 0x80  # marshal's: the object is the reference target of a later 'r'
_SINGLETONS = frozenset(b"NFTS.0")  # None, False, True, StopIteration, Ellipsis, null: never a target
_FIXED = {ord("i"): 4, ord("g"): 8, ord("y"): 16}  # int32, binary float, binary complex
_SIZED = frozenset(b"stuaA")  # 4-byte length, then the bytes (bytes, interned, unicode, ascii)
_SHORT = frozenset(b"zZ")  # 1-byte length (short ascii, interned)
_CONTAINERS = frozenset(b"([<>")  # 4-byte count, then the items (tuple, list, set, frozenset)
_MUTABLE = frozenset(b"c[{<")  # code (specialized as it runs), list, dict, set: never shared


class _Node:
    """One object of a marshal stream: its type, its bytes (a scalar's; a code object's
    fixed fields), its items (a container's, a code object's objects) or what it refers to."""

    __slots__ = ("kind", "flagged", "raw", "items", "tail", "target")

    def __init__(self, kind: int, flagged: bool) -> None:
        self.kind, self.flagged = kind, flagged
        self.raw, self.tail = b"", b""
        self.items: list[_Node] | None = None
        self.target: _Node | None = None


def _parse(data: bytes) -> _Node:
    """The object tree of `data`, a marshal stream of code (version 4: 3.11 to 3.13); a
    ValueError for anything else."""
    targets: list[_Node] = []
    cursor = _Cursor(data)
    take = cursor.take

    def node() -> _Node:
        first = take(1)[0]
        one = _Node(first & ~_FLAG_REF, bool(first & _FLAG_REF))
        kind = one.kind
        if kind == ord("r"):
            one.target = targets[int.from_bytes(take(4), "little")]
            return one
        if one.flagged:  # numbered as the reader numbers them: in order, a container before its items
            targets.append(one)
        if kind in _SINGLETONS:
            return one
        raw = _leaf(kind, take)
        if raw is not None:
            one.raw = raw
        elif kind in _CONTAINERS or kind == ord(")"):
            one.raw = take(1 if kind == ord(")") else 4)
            one.items = [node() for _ in range(int.from_bytes(one.raw, "little"))]
        elif kind == ord("c"):  # 5 ints, 8 objects, the first line, 2 objects (marshal.c's order)
            one.raw = take(20)
            one.items = [node() for _ in range(8)]
            one.tail = take(4)
            one.items += [node(), node()]
        else:
            raise ValueError(f"marshal type {chr(kind)!r} is not one of code's")
        return one

    root = node()
    if cursor.at != len(data):
        raise ValueError("marshal data after the code")
    return root


class _Cursor:
    """`data` read in order, a ValueError where it is cut short."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ValueError("marshal data cut short")
        self.at += size
        return self.data[self.at - size:self.at]


def _leaf(kind: int, take: Callable[[int], bytes]) -> bytes | None:
    """What follows the type of a value of `kind` that holds no object (its bytes, a length or
    count first where it has one); None for any other kind."""
    if kind in _FIXED:
        return take(_FIXED[kind])
    if kind == ord("l"):  # a long: its signed count of 15-bit digits, 2 bytes each
        count = take(4)
        return count + take(2 * abs(int.from_bytes(count, "little", signed=True)))
    if kind in _SIZED:
        size = take(4)
        return size + take(int.from_bytes(size, "little"))
    if kind in _SHORT:
        size = take(1)
        return size + take(size[0])
    return None


def _value(one: _Node, memo: dict[int, object]) -> object:
    """What `one` loads as, comparably (its type and contents, its references followed; marshal
    spells a value by what it is, a tuple `)` or `(` by its length alone: equal values are
    spelled alike); None for an object that is mutable or holds one, which is never shared."""
    while one.target is not None:
        one = one.target
    if id(one) in memo:
        return memo[id(one)]
    if one.kind in _MUTABLE:
        value: object = None
    elif one.items is None:
        value = (one.kind, one.raw)
    else:
        items = tuple(_value(item, memo) for item in one.items)
        value = None if None in items else (one.kind, items)
    memo[id(one)] = value
    return value


def _occurrences(root: _Node, memo: dict[int, object]) -> dict[object, int]:
    """How often each shareable value (`_value`) occurs in `root`'s tree, references not
    followed."""
    seen: dict[object, int] = {}
    stack = [root]
    while stack:
        one = stack.pop()
        if one.target is None:
            value = _value(one, memo)
            if value is not None:
                seen[value] = seen.get(value, 0) + 1
            stack.extend(one.items or ())
    return seen


def _write(root: _Node) -> bytes:
    """`root`'s stream again, each value that recurs (`_value`: its type and contents) written
    once and referred to after."""
    memo: dict[int, object] = {}
    seen = _occurrences(root, memo)
    out = bytearray()
    numbers: dict[int, int] = {}  # a written target's number, by its node
    by_value: dict[object, int] = {}

    def write(one: _Node) -> None:
        if one.target is not None or one.kind in _SINGLETONS:
            if one.target is None:
                out.append(one.kind)
                return
            number = numbers.get(id(one.target))
            out.append(ord("r"))
            out.extend((by_value[_value(one.target, memo)] if number is None else number).to_bytes(4, "little"))
            return
        value = _value(one, memo)
        if value is not None and value in by_value:
            out.append(ord("r"))
            out.extend(by_value[value].to_bytes(4, "little"))
            return
        flagged = one.flagged or (value is not None and seen[value] > 1)
        out.append(one.kind | (_FLAG_REF if flagged else 0))
        if flagged:  # numbered before its items, as the reader numbers it
            numbers[id(one)] = len(numbers)
            if value is not None:
                by_value[value] = numbers[id(one)]
        out.extend(one.raw)
        for index, item in enumerate(one.items or ()):
            if index == 8 and one.kind == ord("c"):
                out.extend(one.tail)
            write(item)

    write(root)
    return bytes(out)


def dumps(code: CodeType) -> bytes:
    """`marshal.dumps(code)` with each value that recurs in it one object (a reference to its
    first): the same code loads from it, but a module's equal names tuples, kinds of its
    locals, qualified names, line and exception tables are one object each, as the compiler
    makes its equal constants tuples one (`lines_only`), and `marshal` refers only to one
    object met twice. The stream as `marshal` writes it when it does not load as the same
    code (`_alike`; another version's format, a type code holds that this does not know)."""
    import marshal

    plain = marshal.dumps(code)
    try:
        shared = _write(_parse(plain))
        same = _alike(marshal.loads(shared), marshal.loads(plain))
    except (ValueError, IndexError, KeyError, EOFError, TypeError, RecursionError):
        return plain
    return shared if same else plain


def _alike(one: CodeType, other: CodeType) -> bool:
    """Whether two code objects are the same code: equal (their instructions, constants,
    names, local names, tables), and so are what equality leaves out (the kinds of their
    locals, which their cell and free names tell, their names, file, stack size), each of
    the code objects they hold too."""
    if one != other or (one.co_qualname, one.co_filename, one.co_stacksize, one.co_cellvars, one.co_freevars,
                        one.co_nlocals) != (other.co_qualname, other.co_filename, other.co_stacksize,
                                            other.co_cellvars, other.co_freevars, other.co_nlocals):
        return False
    inner = [(a, b) for a, b in zip(one.co_consts, other.co_consts) if type(a) is type(one)]
    return all(_alike(a, b) for a, b in inner)
