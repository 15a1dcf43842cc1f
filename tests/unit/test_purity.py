"""`config.purity`: which config files the plan cache may keep (their result depends on their
text alone) and which it must load afresh each run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from config.purity import closed_problem
from config.schema import SCHEMA_NAMESPACE

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aurora"))
JOB = ("jobs = [Job(cluster='c', role='r', environment='e', name='n', task=Task(processes=procs, "
       "resources=Resources(cpu=1, ram=1*MB, disk=1*MB)))]\n")


def problem(*sources: str) -> str | None:
    return closed_problem([(f"f{i}.aurora", text) for i, text in enumerate(sources)], SCHEMA_NAMESPACE)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_are_closed(path):
    assert closed_problem([(str(path), path.read_text())], SCHEMA_NAMESPACE) is None


@pytest.mark.parametrize("text", [
    "procs = [Process(name='p%d' % i, cmdline='sleep 1') for i in range(3)]\n",
    "def make(name, *args, size=1, **rest):\n    return Process(name=name, cmdline=' '.join(args))\n"
    "procs = [make('a', 'echo', 'hi')]\n",
    "procs = []\nfor i, word in enumerate(sorted({'b', 'a'})):\n    procs.append(Process(name=word, cmdline=str(i)))\n",
    "base = Process(cmdline='run {{thermos.ports[http]}}')\nprocs = [base(name='web')]\n",
    "try:\n    x = int('3')\nexcept ValueError as err:\n    x = 0\nprocs = [Process(name='a', cmdline=str(x))]\n",
    "procs = [p for p in [Process(name='a', cmdline='x')] if (n := len(p.cmdline().get())) > 0]\n",
    "include('lib.aurora')\nprocs = [Process(name='a', cmdline='x')]\n",
    # names bound by an except clause and by match patterns, read afterwards, are the file's own
    "try:\n    x = int('x')\nexcept ValueError as err:\n    x = len(str(err))\nprocs = [Process(name='a', cmdline=str(x))]\n",
    "match {'a': 1, 'b': 2}:\n    case {'a': n, **rest}:\n        x = n + len(rest)\n"
    "procs = [Process(name='a', cmdline=str(x))]\n",
    "match [1, 2, 3]:\n    case [first, *others]:\n        x = first + len(others)\n"
    "procs = [Process(name='a', cmdline=str(x))]\n",
])
def test_a_file_built_from_its_own_names_the_schema_and_pure_builtins_is_closed(text):
    assert problem(text + JOB) is None


@pytest.mark.parametrize("text, reason", [
    ("import os\n", "f0.aurora:1: imports a module"),
    ("from os import environ\n", "f0.aurora:1: imports a module"),
    ("x = 1\nname = open('/etc/hostname').read()\n", "f0.aurora:2: reads open"),
    ("print('hello')\n", "f0.aurora:1: reads print"),
    ("x = sys.argv\n", "f0.aurora:1: reads sys"),  # a module leaked into the schema's names
    ("x = typing.Any\n", "f0.aurora:1: reads typing"),
    ("x = getattr(Process, 'x')\n", "f0.aurora:1: reads getattr"),
    ("x = eval('1')\n", "f0.aurora:1: reads eval"),
    ("x = hash('a')\n", "f0.aurora:1: reads hash"),
    ("x = environ\n", "f0.aurora:1: reads environ"),
    ("x = __import__('os')\n", "f0.aurora:1: uses the name __import__"),
    ("x = Process.__init__\n", "f0.aurora:1: uses the attribute __init__"),
    ("x = Process._private\n", "f0.aurora:1: uses the attribute _private"),
    ("def f(:\n", "f0.aurora: does not parse"),
    # the test follows no scopes: a builtin's name read under any binding may be the builtin
    ("def f(open):\n    return open\nx = open('/etc/hostname').read()\n", "f0.aurora:2: reads open"),
    ("y = [open for open in ()]\nx = open('/etc/hostname').read()\n", "f0.aurora:1: reads open"),
    ("if 0:\n    open = str\nx = open('/etc/hostname').read()\n", "f0.aurora:3: reads open"),
    ("print = str\ndel print\nprint('hello')\n", "f0.aurora:3: reads print"),
    ("id = 'web'\nname = id\n", "f0.aurora:2: reads id"),
])
def test_a_file_that_reaches_outside_its_text_is_not(text, reason):
    message = problem(text)
    assert message is not None and message.startswith(reason), message


def test_the_files_of_one_load_share_their_names():
    assert problem("include('lib.aurora')\nprocs = [make()]\n" + JOB,
                   "def make():\n    return Process(name='a', cmdline='x')\n") is None
    assert problem("procs = [make()]\n" + JOB) is not None  # defined nowhere


def test_every_file_of_the_load_is_judged():
    assert problem("include('lib.aurora')\n", "import os\n") == "f1.aurora:1: imports a module"


@pytest.mark.parametrize("path", EXAMPLES[:6], ids=lambda p: p.name)
def test_its_walk_is_asts_own_node_for_node(path):
    # `config.purity` walks the tree without loading `ast` (a first run's planning child
    # would load it for nothing else); the problem it names first depends on the order
    import ast

    from config import purity

    text = path.read_text() + ("import os\nmatch x:\n    case {'a': y, **rest}: pass\n    case [z, *more]: pass\n"
                               "try:\n    _v = os.environ\nexcept KeyError as e:\n    pass\n")
    ours = [(type(n).__name__, getattr(n, "lineno", 0)) for n in purity._walk(purity._parse(text, str(path)))]
    theirs = [(type(n).__name__, getattr(n, "lineno", 0)) for n in ast.walk(ast.parse(text, filename=str(path)))]
    assert ours == theirs and len(ours) > 50


# One program per construct class; together they hold every node class the parser makes
# for a file ("exec" mode) on this interpreter: 3.12's type parameters (PEP 695) and 3.13's
# defaults for them included where the interpreter has them.
CONSTRUCTS = [
    "import os\nfrom . import x as y\nfrom a.b import *\n",
    "@dec(1)\nasync def f(a, /, b: int = 1, *c, d, e=2, **g) -> 'r':\n    global q\n    nonlocal w\n"
    "    await x\n    async for i in y:\n        pass\n    async with a as b, c:\n        yield\n"
    "    yield from z\n    return [i async for i in y]\n",
    "@d\nclass C(B, metaclass=M):\n    x: int = 1\n    del x\n    def m(self):\n        lambda a, *b, **c: a\n",
    "x += 1\nx @= 2\nwhile x:\n    break\nelse:\n    continue\nif a:\n    pass\nelif b:\n"
    "    raise E from c\nelse:\n    assert x, 'm'\n",
    "with open(f) as (a, b):\n    pass\nfor [a, *b] in c:\n    pass\nelse:\n    pass\n",
    "try:\n    pass\nexcept E as e:\n    pass\nelse:\n    pass\nfinally:\n    pass\n",
    "try:\n    pass\nexcept* E as e:\n    pass\n",
    "match s:\n    case 1 | 2: pass\n    case None: pass\n    case [a, *rest]: pass\n"
    "    case {'k': v, **kw}: pass\n    case P(a, b=c): pass\n    case _ if g: pass\n    case (x as y): pass\n",
    "x = a and b or not c\ny = -a + b - c * d / e // f % g ** h << i >> j | k ^ l & m @ n\nz = ~a\nw = +a\n",
    "c = a == b != c < d <= e > f >= g is h is not i in j not in k\n",
    "v = (n := 1) if a else b\nd = {a: b, **c}\ns = {a, b}\nl = [a, *b]\nt = (a, b)\n",
    "l = [x for x in y if z]\ns = {x for x in y}\nd = {k: v for k, v in y}\ng = (x for x in y)\n",
    "a = b.c[d:e:f]\na = b[1, 2:3]\nf = f'{a!r:>{w}} {b=}'\nb = b'x'\nc = ...\n",
    *(["type A[T: int, *Ts, **P] = list[T]\ndef f[T](x: T) -> T: return x\nclass K[T]: pass\n"]
      if sys.version_info >= (3, 12) else []),
    *(["type B[T = int, *Ts = (), **P = []] = T\n"] if sys.version_info >= (3, 13) else []),
]
NOT_IN_A_FILE = {"Expression", "Interactive", "FunctionType", "TypeIgnore"}  # other modes, type comments


def _node_classes() -> set[str]:
    """The names of `_ast`'s concrete node classes (those with no subclass of their own)."""
    import _ast

    found, todo = set(), [_ast.AST]
    while todo:
        kind = todo.pop()
        todo += kind.__subclasses__()
        if not kind.__subclasses__() and getattr(_ast, kind.__name__, None) is kind:
            found.add(kind.__name__)
    return found


def test_its_walk_is_asts_own_for_every_node_class_a_file_can_hold():
    # every node class the parser makes, in every field it can be in: the same nodes, in the
    # same order, as `ast.walk` (a node the walk missed would be a construct the check skips)
    import ast

    from config import purity

    tree = purity._parse("".join(CONSTRUCTS), "all.aurora")
    ours = list(purity._walk(tree))
    assert len(ours) == len(list(ast.walk(tree))) and all(a is b for a, b in zip(ours, ast.walk(tree)))
    assert sorted(_node_classes() - NOT_IN_A_FILE - {type(node).__name__ for node in ours}) == []


@pytest.mark.parametrize("text", [
    "@open\ndef f():\n    return 1\n",
    "f = lambda x=open: x\n", "f = lambda: open\n",
    "def f():\n    def g():\n        return open\n    return g\n",
    "x = [y for y in range(2) if open]\n", "x = {k: open for k in range(2)}\n",
    "x = [*open]\n", "x = dict(**open)\n", "x = (y := open)\n",
    "try:\n    x = 1\nexcept* ValueError:\n    x = open\n",
    "async def f():\n    async with open as x:\n        return [y async for y in open]\n",
    "match 1:\n    case 1 if open:\n        x = 1\n", "match 1:\n    case {'a': 1, **r}:\n        x = open\n",
    "x = f'{1:{open}}'\n", "x = f'{open!r}'\n",
    "class C(metaclass=open):\n    x: open = 1\n", "def f(x: open = 1) -> open:\n    return x\n",
    "def f():\n    global x\n    x = open\n",
])
def test_a_read_hidden_in_any_construct_is_found(text):
    message = problem(text)
    assert message is not None and "reads open" in message, message


@pytest.mark.skipif(sys.version_info < (3, 12), reason="type parameters: Python 3.12 (PEP 695)")
@pytest.mark.parametrize("text", ["type A[T: open] = list[T]\n", "type A = open\n",
                                  "def f[T: open](x):\n    return x\n", "class C[T: open]:\n    x = 1\n"])
def test_a_read_in_a_type_parameter_is_found(text):
    message = problem(text)
    assert message is not None and "reads open" in message, message
