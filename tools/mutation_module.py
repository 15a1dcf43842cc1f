"""The shape of a row of `make mutation`'s table (tools/mutation_rows.py's MODULES): a module,
its sources, the tests that state its rules and how they run (in child processes, as a
subreaper, each mutant's run in a process group of its own).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Module:
    slug: str  # the directory under .mutation/ and the name on the command line
    title: str  # the row's name in the table
    sources: tuple[str, ...]  # the files mutated
    tests: tuple[str, ...]  # the tests that state their rules (unit; integration for one that writes files);
    # a file, or one test of it (FILE::NAME) where the file's others run the module in a child process
    functions: tuple[str, ...] = ()  # only these mutants (mutmut's names, globs): a module's new functions
    children: bool = False  # its tests run it in child processes (tools/mutation.py's CHILDREN_CONFTEST)
    subreaper: bool = False  # its tests make this process a child subreaper (tools/mutation.py's SUBREAPER_CONFTEST)
    own_group: bool = False  # a mutant may signal process group 0 (tools/mutation.py's OWN_GROUP_CONFTEST)


def all_but(test_file: str, *left_out: str) -> tuple[str, ...]:
    """Each test of `test_file` (FILE::NAME) but those `left_out` (ones whose child runs the
    module under mutmut's trampoline, where it cannot work)."""
    names = re.findall(r"^def (test_\w+)", (ROOT / test_file).read_text(), re.MULTILINE)
    return tuple(f"{test_file}::{name}" for name in names if name not in left_out)
