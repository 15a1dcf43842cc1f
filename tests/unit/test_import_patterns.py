"""The patterns a `stoker run` never uses on its way to its first report (a duration or a
port of the settings, `quoted`'s surrogate escape, the sandbox's archived attempts, a mount
table's escapes) are compiled at their first use, not as their modules load: each compile
was 0.06-0.17 ms of every start's imports."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

from config import settings, words
from executor.local import attempts
from executor.procs import cgroup_paths
from tests.support.stoker_proc import REPO

# A fresh interpreter: the patterns `re.compile` is given (as a module's top level compiles
# them) while it runs IMPORTS, after BEFORE.
COMPILED_BY = """
import re
{before}
compiled = []
compile = re.compile
re.compile = lambda pattern, flags=0: compiled.append(pattern) or compile(pattern, flags)
{imports}
print(repr(compiled))
"""


def compiled_by(imports: str, before: str = "") -> list:
    script = COMPILED_BY.format(imports=imports, before=before)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_the_patterns_a_start_never_uses_are_not_compiled_as_their_modules_load():
    compiled = compiled_by("import config.settings, config.words, executor.local.attempts, "
                           "executor.procs.cgroup_paths")
    for pattern in (settings._DURATION, settings._PORT, words._REPR_SURROGATE, attempts._ARCHIVE,
                    cgroup_paths._ESCAPE):
        assert getattr(pattern, "pattern", pattern) not in compiled  # (a compiled one: its source)


def test_config_words_compiles_no_pattern_as_it_loads():
    """Both processes of a new config's start load it before the planning fork: its lone
    surrogates' class (U+D800-U+DFFF less the escapes' bytes) was 0.45 ms of `re` there, 2 M
    instructions of the plan's chain; `lone_surrogate` asks the UTF-8 encoder instead."""
    assert compiled_by("import config.words", before="import config") == []  # (its package's before)


def test_the_patterns_compiled_at_first_use_read_as_before():
    assert settings.parse_duration("1.5secs") == 1.5 and settings.parse_duration("500ms") == 0.5
    assert settings.parse_port("http=8080") == ("http", 8080)
    assert words.quoted("a\udcff\\udcff") == "'a\\xff\\\\udcff'"  # a byte, and a backslash's own text
    assert cgroup_paths._unescape(r"/kube\040pods\134x") == "/kube pods\\x"
    assert cgroup_paths._unescape("/plain") == "/plain"


# A fresh interpreter: the patterns `re` compiles while `quoted` quotes what holds no surrogate's escape
COMPILED_BY_QUOTED = """
import re._compiler
from config import words
compiled = []
compile = re._compiler.compile
re._compiler.compile = lambda pattern, flags=0: compiled.append(pattern) or compile(pattern, flags)
shown = [words.quoted("/work/job.aurora"), words.quoted(3)]
plain = list(compiled)
shown.append(words.quoted("a\\\\udcff"))
print(repr((shown, plain, compiled)))
"""


def test_quoting_what_holds_no_surrogate_escape_compiles_no_pattern():
    """A new config's planning child quotes its path (`load_job`) before its plan is sent; the
    pattern (60 µs to compile) waits for a text holding `\\udc`, as the last one does."""
    out = subprocess.run([sys.executable, "-c", COMPILED_BY_QUOTED], cwd=REPO, check=True, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    shown, plain, compiled = ast.literal_eval(out.strip().splitlines()[-1])
    assert shown == ["'/work/job.aurora'", "3", "'a\\\\udcff'"]
    assert plain == [] and compiled == [words._REPR_SURROGATE]  # by the last one only
