"""`config.compiletext.compile_text` gives what the builtin `compile()` gives a config's text
(the same code, marshalled; the same errors), and loading a config no longer makes the
compiler's AST classes (`compile()`'s first call in a process does: 0.7-0.9 ms of a new
config's planning child, on the path to its first process)."""
from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import compiletext
from config.compiletext import compile_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.aurora"))

TEXTS = {
    "plain": "x = 1\njobs = []\n",
    "annotations": "def f(a: nowhere) -> elsewhere:\n  return a\ny: undefined = 3\n",
    "own future": "from __future__ import annotations\ndef f(a: nowhere):\n  return a\n",
    "assert": "assert 1 + 1 == 2, 'kept under -O'\nif __debug__:\n  z = 1\n",
    "invalid escape": "pattern = '\\d+'\n",
    "coding line": "# -*- coding: latin-1 -*-\nname = 'h\u00e9llo \u2192'\n",
    "nested": "def outer():\n  def inner():\n    return [i for i in range(3)]\n  return inner\n",
}


def compiled_here(text: str, name: str) -> bytes:
    """`compile()` as the loader called it (from a module with `from __future__ import
    annotations`), marshalled as `code` does."""
    return code(compile(text, name, "exec", optimize=0))


def code(compiled: object) -> bytes:
    """Code marshalled in version 2, which marks no object as seen before: the same for
    equal code, whatever holds a reference to its parts."""
    return marshal.dumps(compiled, 2)


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_a_text_compiles_to_the_code_compile_makes(key):
    assert code(compile_text(TEXTS[key], f"/c/{key}.aurora")) == compiled_here(TEXTS[key], f"/c/{key}.aurora")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_example_compiles_to_the_code_compile_makes(path):
    text = path.read_text(encoding="utf-8")
    assert code(compile_text(text, str(path))) == compiled_here(text, str(path))


@pytest.mark.parametrize("c_call", [True, False], ids=["c call", "no c call"])
@pytest.mark.parametrize("key", sorted(TEXTS) + [path.name for path in EXAMPLES])
def test_the_code_is_compile_s_with_the_same_future_features_whoever_calls(key, c_call, monkeypatch):
    """What the two tests above state (and the one below without the C function), whatever
    `__future__` features the caller's frame has (under mutmut the caller is its trampoline, a
    module without `annotations`): the code is `compile()`'s given the features it came out with.
    The C call is made again for the test (it is kept once made), and used."""
    _make_the_c_call_again(monkeypatch, c_call)
    text = TEXTS[key] if key in TEXTS else (ROOT / "examples" / key).read_text(encoding="utf-8")
    compiled = compile_text(text, f"/c/{key}")
    features = compiled.co_flags & compiletext.FUTURE_FLAGS
    assert code(compiled) == code(compile(text, f"/c/{key}", "exec", flags=features, dont_inherit=True, optimize=0))
    assert (compiletext._compiler[0] is not None) is c_call


def _make_the_c_call_again(monkeypatch, c_call: bool) -> None:
    monkeypatch.setattr(compiletext, "_compiler", [])
    if not c_call:
        monkeypatch.setattr(compiletext, "_make_compiler", lambda: compiletext._compiler.append(None) or compiletext._compiler)


@pytest.mark.parametrize("c_call", [True, False], ids=["c call", "no c call"])
def test_a_caller_with_no_future_features_gets_none_not_this_module_s(c_call, monkeypatch):
    """`compiletext` itself has `annotations`: a caller without it gets code without it (an
    annotation evaluated), as its own `compile()` would give it."""
    _make_the_c_call_again(monkeypatch, c_call)
    caller = compile("compiled = compile_text(text, 'a.aurora')", "caller.py", "exec", dont_inherit=True)
    namespace = {"compile_text": compile_text, "text": TEXTS["annotations"]}
    exec(caller, namespace)
    assert not namespace["compiled"].co_flags & compiletext.FUTURE_FLAGS
    assert code(namespace["compiled"]) == code(compile(TEXTS["annotations"], "a.aurora", "exec", dont_inherit=True))


def test_the_callers_future_features_are_inherited_as_compile_inherits_them():
    """This module has `annotations`: an annotation is kept as text, never evaluated."""
    namespace: dict = {}
    exec(compile_text("def f(a: nowhere): pass\n", "f.aurora"), namespace)
    assert namespace["f"].__annotations__ == {"a": "nowhere"}


def error(call, text: str) -> tuple:
    try:
        call(text)
    except (SyntaxError, ValueError, UnicodeError) as exc:
        where = (exc.filename, exc.lineno, exc.offset, exc.text) if isinstance(exc, SyntaxError) else ()
        return type(exc), str(exc), where
    raise AssertionError(f"{text!r} compiled")


@pytest.mark.parametrize("text", ["x = 1\njobs = [\n  Job(\n", "x = (\n", "def f(:\n  pass\n", "x = 1\n  y = 2\n",
                                  "x = 'a\0b'\n", "x = '\udc80'\n", "return 3\n", "f(**a, *b)\n"])
def test_a_text_that_does_not_compile_raises_what_compile_raises(text):
    assert error(lambda t: compile_text(t, "/c/bad.aurora"), text) == \
        error(lambda t: compile(t, "/c/bad.aurora", "exec", optimize=0), text)


def test_without_the_c_function_it_is_compile_itself(monkeypatch):
    monkeypatch.setattr(compiletext, "_compiler", [])
    monkeypatch.setattr(compiletext, "_make_compiler", lambda: [None])
    assert code(compile_text(TEXTS["annotations"], "a.aurora")) == compiled_here(TEXTS["annotations"], "a.aurora")


def test_loading_a_config_calls_no_builtin_compile(monkeypatch):
    """`compile()` is what makes the AST classes (at its first call in a process); the config's
    text is compiled without it."""
    import builtins

    from config.loader import load_jobs

    called: list[str] = []
    real = builtins.compile
    monkeypatch.setattr(builtins, "compile", lambda source, name, *args, **kwargs: called.append(name)
                        or real(source, name, *args, **kwargs))
    assert len(load_jobs(ROOT / "examples" / "hello_world.aurora")) == 1
    assert called == []


def test_a_filename_with_a_nul_raises_what_compile_raises():
    """`compile()` refuses such a name (ValueError) before it compiles; the C function took it
    and named the code (and a SyntaxError) with it."""
    def named(call) -> tuple:
        try:
            return ("compiled", call().co_filename)
        except ValueError as exc:
            return ("refused", str(exc))
    assert named(lambda: compile_text("x = 1\n", "/c/a\0b.aurora")) == \
        named(lambda: compile("x = 1\n", "/c/a\0b.aurora", "exec", optimize=0)) == ("refused", "embedded null character")


# A fresh interpreter (an audit hook cannot be removed) whose hook refuses `ctypes`, as a
# host's sitecustomize may: the config still loads, and the refused call is asked for once.
CTYPES_REFUSED = """
import sys
asked = []
def refuse_ctypes(event, args):
    if event.startswith("ctypes."):
        asked.append(event)
        raise RuntimeError(event + ": ctypes is not allowed on this host")
sys.addaudithook(refuse_ctypes)
from config.compiletext import compile_text
from config.loader import load_jobs
jobs = load_jobs(sys.argv[1])
namespace = {}
exec(compile_text("y = 2\\n", "second.aurora"), namespace)
print(len(jobs), namespace["y"], asked)
"""


def test_a_python_whose_audit_hook_refuses_ctypes_compiles_with_compile():
    out = subprocess.run([sys.executable, "-c", CTYPES_REFUSED, str(ROOT / "examples" / "hello_world.aurora")],
                         cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=2) == ["1", "2", "['ctypes.dlopen']\n"]


@pytest.mark.parametrize("version", [(3, 10), (3, 14)])
def test_a_python_whose_compiler_flags_were_not_checked_compiles_with_compile(monkeypatch, version):
    """`PyCompilerFlags`' layout and `Py_file_input` are read as 3.11-3.13 have them: another
    version's could have moved, and a wrong read would not fail, so it is not called there."""
    monkeypatch.setattr(compiletext, "_compiler", [])
    monkeypatch.setattr(compiletext.sys, "version_info", version + (0, "final", 0))
    assert compiletext._make_compiler() == [None]
