"""`executor.compileserved`: the compiles of attrs' own import served from the code cache, so
that a supervisor never calls the builtin `compile()`, whose first call makes the compiler's
syntax-tree classes (`executor/compileserved.py`). Fresh processes for a start; the served
compile itself in this one."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor import codecache
from executor.compileserved import ServedCompile
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)

# What `stoker run`'s entry point does before its work, then what it holds: the syntax-tree
# classes, what the cache compiled, whether `compile` is left in attrs' or typing's namespace,
# and what a few of attrs' own classes (made as it loads) do.
START = textwrap.dedent("""
    import json, sys, typing
    def trees(found):  # `ast.AST` and every subclass, without importing `ast`
        return found + [c for one in found for c in trees(one.__subclasses__())]
    from executor import codecache, deferred, nodocs
    nodocs.install()
    deferred.defer()
    codecache.install("run")
    import executor.cli.main, executor.local.run
    import attr, attrs
    from attr import _make
    from config.spec import ProcessSpec
    field = attrs.fields(ProcessSpec)[0]
    print(json.dumps({
        "trees": len(trees([c for c in object.__subclasses__() if c.__module__ == "ast"])),
        "compiled": codecache.counts()[1],
        "left": [m.__name__ for m in (typing, _make) if "compile" in vars(m)],
        "finders": [type(f).__name__ for f in sys.meta_path if type(f).__module__ == "executor.compileserved"],
        "attrs": [repr(attr.Factory(list)), repr(field), field == attrs.fields(ProcessSpec)[0],
                  hash(field) == hash(attrs.fields(ProcessSpec)[0]), str(attr.__version_info__ > (1, 0))],
        "hints": str(typing.get_type_hints(_make._Attributes)),
    }))
""")


def start(cache: Path | str) -> dict:
    env = {**os.environ, "STOKER_CODE_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-c", START], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_start_with_its_cache_written_makes_no_syntax_tree_classes_and_attrs_works_the_same(tmp_path):
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path)}
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert warm.returncode == 0, warm.stderr
    served, plain = start(tmp_path), start("off")
    assert plain["trees"] > 100  # attrs' own classes and typing's NamedTuple compiled as attrs loads
    assert served["trees"] == 0 and served["compiled"] == 0  # was: as plain (0.2 MiB of every supervisor)
    assert served["left"] == [] and served["finders"] == []  # attrs' and typing's namespaces as they have them
    assert served["attrs"] == plain["attrs"] and served["hints"] == plain["hints"]


def caller_flags_code(compile_: object, source: str, mode: str) -> object:
    """`compile_(source, ...)` called from this module (its `__future__` annotations)."""
    return compile_(source, "<probe>", mode)  # type: ignore[operator]


def test_the_served_code_is_the_builtin_s_for_the_caller_but_its_columns(tmp_path):
    cache = codecache._Cache(tmp_path / "attrs-run.bin", {})
    serve = ServedCompile(cache.code_for)
    for source, mode in (("def f(x: int) -> list[str]:\n    return [str(x)]\n", "exec"), ("dict[str, type]", "eval")):
        own, served = caller_flags_code(compile, source, mode), caller_flags_code(serve, source, mode)
        assert served.co_flags == own.co_flags and served.co_code == own.co_code  # type: ignore[attr-defined]
        assert served.co_filename == "<probe>" and [(p[0], None) for p in own.co_positions()] == [
            (p[0], p[2]) for p in served.co_positions()]  # type: ignore[attr-defined]
    assert len(cache.fresh) == 2  # compiled, kept for save()
    plain = textwrap.dedent("""
        from executor.compileserved import ServedCompile
        from executor import codecache
        serve = ServedCompile(codecache._Cache(None, {}).code_for)
        print(serve("x: int = 1", "<probe>", "exec").co_flags == compile("x: int = 1", "<probe>", "exec").co_flags)
    """)
    done = subprocess.run([sys.executable, "-c", plain], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr  # a caller without `annotations`: its own features


@pytest.mark.parametrize("call", [
    lambda c: c(b"x = 1", "<probe>", "exec"),
    lambda c: c("x = 1", "<probe>", "exec", ast.PyCF_ONLY_AST),
    lambda c: c("x = 1", "<probe>", "single"),
    lambda c: c(ast.parse("x = 1"), "<probe>", "exec"),
    lambda c: c("x = 1", "<probe>", "exec", dont_inherit=True),
    lambda c: c("assert x\n", "<probe>", "exec", optimize=2),  # the assert left out, as the builtin's
    lambda c: c("async = 1", "<probe>", "exec", ast.PyCF_ONLY_AST, _feature_version=6),  # Python 3.6's words
])
def test_any_other_call_is_the_builtin_s(tmp_path, call):
    cache = codecache._Cache(tmp_path / "attrs-run.bin", {})
    served, own = call(ServedCompile(cache.code_for)), call(compile)
    assert type(served) is type(own) and cache.fresh == []
    assert ast.dump(served) == ast.dump(own) if isinstance(own, ast.AST) else served.co_code == own.co_code


def test_an_annotation_served_is_the_code_of_its_own_source_only(tmp_path):
    """attrs' scripts are matched with the number of their `hash((N, ...))` left out (each
    process's own: executor/codecache.py); another source is matched whole: an annotation
    string that differs from one in the file by that number alone was given the other's code."""
    written = codecache._Cache(tmp_path / "attrs-run.bin", {})
    ServedCompile(written.code_for)("tuple[hash((1, 2)), int]", "<string>", "eval")
    loaded: dict = {}
    for key, source, code in written.fresh:
        loaded[key] = (*loaded.get(key, ()), (source, code))
    cache = codecache._Cache(tmp_path / "attrs-run.bin", loaded)
    serve = ServedCompile(cache.code_for)
    assert eval(serve("tuple[hash((5, 2)), int]", "<string>", "eval")) == tuple[hash((5, 2)), int]
    assert eval(serve("tuple[hash((1, 2)), int]", "<string>", "eval")) == tuple[hash((1, 2)), int]
    assert cache.hits == 1  # the one of the same source
