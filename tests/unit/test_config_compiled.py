"""`config.warnfilters.compiled`: a config's text compiled by the C API gives what `compile()` gives, in
code, errors and futures, without making `ast`'s classes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import CodeType

import pytest

from config.warnfilters import compiled

REPO = Path(__file__).resolve().parents[2]

TEXTS = [
    *(path.read_text() for path in sorted((REPO / "examples").glob("*.aurora"))),
    "x: int = 1\ndef f(a: list[int]) -> 'x':\n    return a\n",  # annotations: this module's future inherited
    "# -*- coding: latin-1 -*-\nname = 'héllo wörld ✓'\n",  # the cookie ignored, as for a `str`
    "from __future__ import generator_stop\nπ = 3.14\nassert π > 3, 'kept under -O too'\n",
    "import re\npattern = '\\\\d+'\nbad_escape = '\\d'\n",
    "from __future__ import barry_as_FLUFL\nx = 1 != 2\n",
]
ERRORS = ["x = (", "def f(:\n", "  x = 1\n", "x = 1\n\ty = 2\n", "x = 'a\0b'\n", "return 5\n", "f(**x, *y)\n",
          "x = '\udc80'\n", "\ufeff" + "jobs = []\n"]


def as_compile(text: str, filename: str):
    return compile(text, filename, "exec", optimize=0)  # as config.loader calls it (its futures inherited)


def same(a: CodeType, b: CodeType) -> bool:
    """Equal code (its bytecode, constants, names, flags, line and column tables, nested code)
    of the same file: `marshal`'s bytes differ where a string is shared elsewhere, not in code."""
    return a == b and a.co_filename == b.co_filename and list(a.co_positions()) == list(b.co_positions())


@pytest.mark.parametrize("text", TEXTS)
def test_the_code_is_compile_s(text: str) -> None:
    assert same(compiled(text, "/srv/jobs/x.aurora"), as_compile(text, "/srv/jobs/x.aurora"))


def outcome(make, text: str) -> tuple:
    try:
        make(text, "/srv/jobs/bad.aurora")
    except BaseException as exc:  # what the loader turns into its message
        return type(exc), str(exc), getattr(exc, "lineno", None), getattr(exc, "offset", None), getattr(exc, "text", None)
    return ("compiled",)


@pytest.mark.parametrize("text", ERRORS)
def test_an_error_is_compile_s(text: str) -> None:
    assert outcome(compiled, text) == outcome(as_compile, text) != ("compiled",)


def test_a_future_one_text_imports_does_not_reach_the_next() -> None:
    # (the compiler adds a text's futures to the flags it was given: an `include()`d file after it)
    assert compiled("from __future__ import barry_as_FLUFL\n", "/srv/jobs/a.aurora").co_flags & 0x400000
    assert same(compiled("y = 1\n", "/srv/jobs/b.aurora"), as_compile("y = 1\n", "/srv/jobs/b.aurora"))


def test_the_syntax_tree_classes_are_not_made() -> None:
    script = textwrap.dedent("""
        import gc, sys
        def types():
            return sum(isinstance(o, type) for o in gc.get_objects())
        from config.warnfilters import compiled
        compiled("x = 1", "warm.aurora")  # its own few classes (the C call's), made once
        before = types()
        compiled("jobs = [1, 2]\\n", "one.aurora")
        after_ours = types()
        compile("jobs = [1, 2]\\n", "two.aurora", "exec")
        print(after_ours - before, types() - after_ours)
    """)
    result = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL, timeout=60)
    ours, compiles = map(int, result.stdout.split())
    assert ours == 0 and compiles > 100  # `compile()` made `ast`'s classes (119 in 3.11)
