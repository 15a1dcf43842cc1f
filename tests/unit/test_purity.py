"""`config.purity`: which config files the plan cache may keep (their result depends on their
text alone) and which it must load afresh each run."""
from __future__ import annotations

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
