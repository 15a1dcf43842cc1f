"""`make mutation`'s rows (tools/mutation_rows.py) name code and tests there are: each file a
row mutates exists, each test file and `FILE::NAME` test it runs exists, and each of its
`functions=` globs names a function (or a class's method) of one of its files. A row whose
functions moved elsewhere mutated nothing of them, and said nothing (`closesteps` and
`closeraises` after the close's steps moved from supervisor.py to exitby.py).
"""
from __future__ import annotations

import ast
import fnmatch
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
try:
    from mutation_rows import MODULES
finally:
    sys.path.remove(str(REPO / "tools"))


def _functions(path: Path) -> set[str]:
    """mutmut's names for the functions of `path`: `x_NAME` and `xǁCLASSǁNAME`."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(f"x_{node.name}")
        elif isinstance(node, ast.ClassDef):
            names |= {f"xǁ{node.name}ǁ{f.name}" for f in node.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
    return names


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.slug)
def test_each_row_names_files_tests_and_functions_there_are(module):
    assert [s for s in module.sources if not (REPO / s).is_file()] == []
    for test in module.tests:
        file, _, name = test.partition("::")
        assert (REPO / file).is_file(), test
        assert not name or f"def {name}(" in (REPO / file).read_text(), test
    by_module = {s.removesuffix(".py").replace("/", "."): _functions(REPO / s) for s in module.sources}
    for pattern in module.functions:
        where, _, glob = pattern.removesuffix("__mutmut_*").rpartition(".x")
        assert where in by_module, f"{pattern}: not one of the row's files"
        assert fnmatch.filter(by_module[where], f"x{glob}"), f"{pattern}: no such function in {where}"
