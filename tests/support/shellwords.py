"""Paths in a shell command line, quoted: this Python's, the checkout's, a sandbox's. A test's
command line (a job's cmdline, a health command, `sh -c`) names them through these, so a
checkout at a path with a space or another character the shell reads ("/var/tmp/sp ace ü/c")
runs it as any other does (docs/testing.md §15); written bare, the shell split the path and
the test failed with `exec: /var/tmp/sp: not found`.

A `.aurora` config holds its command lines inside Python string literals: `in_aurora` escapes
a quoted line for that second layer, so the string the config yields is the line again.

`c_locale_starts`: what no quoting mends, a Python that cannot start under `LC_ALL=C
PYTHONUTF8=0` from a checkout whose path is not ASCII."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

FAKE_TASK = Path(__file__).resolve().parent / "fake_task.py"
CHECKOUT = FAKE_TASK.parents[2]
# CPython before 3.13 reads a venv's .pth files in the locale's encoding: under `LC_ALL=C
# PYTHONUTF8=0` the editable install's, which holds the checkout's path, stops this Python at
# its start (`init_import_site`: UnicodeDecodeError) when that path is not ASCII.
c_locale_starts = pytest.mark.skipif(
    not str(CHECKOUT).isascii() and sys.version_info < (3, 13),
    reason=f"this Python cannot start under LC_ALL=C PYTHONUTF8=0: its editable install's .pth names {CHECKOUT}")


def sh(*words: object) -> str:
    """`words` (text or paths) as one shell command line, each one word however it is spelled."""
    return shlex.join(map(str, words))


def python_sh(*args: object) -> str:
    """The command line running this Python with `args`."""
    return sh(sys.executable, *args)


def fake_sh(*args: object) -> str:
    """The command line running tests/support/fake_task.py on this Python with `args`."""
    return python_sh(FAKE_TASK, *args)


def in_aurora(line: str) -> str:
    """`line` as it goes between the quotes of a Python string in a `.aurora` config ('...' or
    "..."): backslashes and both quotes escaped, the shell's quoting in it kept."""
    return line.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
