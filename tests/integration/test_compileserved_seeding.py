"""`executor.compileserved.served()` seen from its caller: which of attrs' and `typing`'s
compiles reach the `code_for` it is given, with which `__future__` flags, and what is left in
`sys.meta_path` and in the two modules' namespaces afterwards. Each case is a fresh
interpreter (attrs must not be loaded yet) whose `code_for` records what it is asked; the
served start as a whole, with the code cache, is `test_compileserved.py`'s."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from executor import compileserved
from executor.compileserved import SEEDED, ServedCompile, _SeededLoader, _Seeder
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(60)

# `asked` records every served compile: its file name, mode and flags.
RECORDER = textwrap.dedent("""
    import json, sys, typing
    from executor.compileserved import served
    asked = []
    def code_for(source, filename, mode, flags):
        asked.append([filename, mode, flags])
        return compile(source, filename, mode, flags, True)
""")

# The same import with the builtin `compile` wrapped: what attrs and typing ask of it, each
# with the `__future__` flags of its caller's code (what `ServedCompile` hands on).
BUILTIN = """
    import builtins
    plain = builtins.compile
    def wrapped(source, filename, mode, flags=0, dont_inherit=False, optimize=-1):
        if type(source) is str and mode in ("exec", "eval") and not flags:
            asked.append([filename, mode, sys._getframe(1).f_code.co_flags & 0x1FE0000])
        return plain(source, filename, mode, flags, dont_inherit, optimize)
    builtins.compile = wrapped
    import attr
    builtins.compile = plain
    print(json.dumps({"asked": asked}))
"""
SERVED = """
    with served(code_for):
        import attr
    print(json.dumps({"asked": asked}))
"""


def fresh(script: str) -> dict:
    """Run RECORDER + `script` in a fresh interpreter; the JSON object it prints last."""
    done = subprocess.run([sys.executable, "-c", RECORDER + textwrap.dedent(script)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_every_compile_attrs_import_makes_is_served():
    builtin, served = fresh(BUILTIN)["asked"], fresh(SERVED)["asked"]
    assert [call[:2] for call in served] == [call[:2] for call in builtin]
    made = [name for name, mode, _ in served if mode == "exec"]
    assert "<attrs generated __repr__ attr._make.Attribute>" in made  # attrs' own classes, as its module runs
    assert ["<string>", "eval"] in [call[:2] for call in served]  # an annotation typing reads (`ForwardRef`)


def test_each_served_compile_has_the_future_flags_of_its_caller_s_code():
    """Left out of `make mutation`'s row: there mutmut's trampoline is the caller of each
    `ServedCompile.__call__`, and its code's flags are what the call reads."""
    builtin, served = fresh(BUILTIN)["asked"], fresh(SERVED)["asked"]
    assert served == builtin
    assert {flags for name, _, flags in served if name.startswith("<attrs generated")} == {0x1000000}  # annotations
    assert {flags for name, _, flags in served if name == "<string>"} == {0}  # typing's


def test_a_call_the_builtin_answers_has_no_future_flag_its_caller_s_code_lacks():
    """The caller here has no `annotations`; `executor/compileserved.py` has, and the builtin
    called there would have given them to the caller's code."""
    seen = fresh("""
        import ast
        from executor.compileserved import ServedCompile
        serve = ServedCompile(code_for)
        calls = [(b"x: int = 1", 0, False), ("x: int = 1", ast.PyCF_ONLY_AST, False), ("x: int = 1", 0, True)]
        for source, flags, alone in calls:
            asked.append([serve(source, "<probe>", "exec", flags, alone).co_flags if not flags else
                          ast.dump(serve(source, "<probe>", "exec", flags, alone)),
                          compile(source, "<probe>", "exec", flags, alone).co_flags if not flags else
                          ast.dump(compile(source, "<probe>", "exec", flags, alone))])
        print(json.dumps({"asked": asked}))
    """)["asked"]
    assert [served == own for served, own in seen] == [True, True, True]
    assert seen[0][0] & 0x1000000 == 0  # the caller's code has no `annotations`


def test_a_call_the_builtin_answers_has_the_future_flags_of_its_caller_s_code():
    """Left out of `make mutation`'s row, as the served ones' flags above."""
    own = fresh("""
        import __future__
        from executor.compileserved import ServedCompile
        caller = ("serve = ServedCompile(code_for)\\n"
                  "flags = [serve(b'x: int = 1', '<probe>', 'exec', 0, alone).co_flags for alone in (False, True)]")
        exec(compile(caller, "<caller>", "exec", __future__.annotations.compiler_flag, True), globals())
        print(json.dumps({"flags": [one & 0x1000000 for one in flags]}))
    """)
    assert own == {"flags": [0x1000000, 0]}  # a caller whose code has them; none with dont_inherit


def test_the_seeder_is_first_while_attrs_loads_and_nothing_is_left_after():
    seen = fresh("""
        before = list(sys.meta_path)
        with served(code_for):
            during = [type(finder).__name__ for finder in sys.meta_path]
            import attr._make as make
            inside = ["compile" in vars(typing), "compile" in vars(make)]
        loader = make.__spec__.loader
        print(json.dumps({
            "first": during[0], "others": during[1:] == [type(f).__name__ for f in before],
            "inside": inside, "left": ["compile" in vars(typing), "compile" in vars(make)],
            "after": sys.meta_path == before, "loader": type(loader).__name__,
            "file": loader.get_filename("attr._make") == make.__file__,
            "source": "class Attribute" in loader.get_source("attr._make"),
        }))
    """)
    assert seen == {"first": "_Seeder", "others": True, "inside": [True, True], "left": [False, False],
                    "after": True, "loader": "_SeededLoader", "file": True, "source": True}


def test_with_attrs_loaded_already_only_typing_is_served_and_no_finder_is_added():
    seen = fresh("""
        import attr
        before = list(sys.meta_path)
        with served(code_for):
            same = sys.meta_path == before
            inside = "compile" in vars(typing)
            typing.get_type_hints(type("Probe", (), {"__annotations__": {"x": "list[int]"}}))
        print(json.dumps({"same": same, "inside": inside, "left": "compile" in vars(typing),
                          "asked": asked, "make": "compile" in vars(sys.modules["attr._make"])}))
    """)
    assert seen == {"same": True, "inside": True, "left": False, "make": False,
                    "asked": [["<string>", "eval", 0]]}  # the one annotation read


def test_a_compile_typing_had_already_or_was_given_meanwhile_is_left_as_it_is():
    seen = fresh("""
        own = typing.compile = lambda *args: None
        with served(code_for):
            kept = typing.compile is own
        after_own = typing.compile is own
        del typing.compile
        other = lambda *args: None
        with served(code_for):
            import attr._make as make
            typing.compile = other
            make.compile = other
        print(json.dumps({"kept": kept, "after_own": after_own, "typing": typing.compile is other,
                          "make": make.compile is other}))
    """)
    assert seen == {"kept": True, "after_own": True, "typing": True, "make": True}


def test_the_seeder_finds_attrs_make_alone_and_only_where_it_is_asked_to_look(tmp_path: Path):
    import attr

    seeder = _Seeder(ServedCompile(lambda *args: None))
    spec = seeder.find_spec(SEEDED, attr.__path__)
    assert spec is not None and isinstance(spec.loader, _SeededLoader)
    assert spec.loader.seeder is seeder and spec.origin == str(Path(attr.__file__).with_name("_make.py"))
    assert seeder.find_spec("attr._config", attr.__path__) is None  # another module of attrs
    assert seeder.find_spec(SEEDED, [str(tmp_path)]) is None  # not in the package's path: nothing to seed
    assert seeder.seeded == []  # found, not loaded


def test_a_loader_without_exec_module_is_left_unwrapped(tmp_path: Path, monkeypatch):
    class Legacy:  # a loader of the old protocol: load_module only
        def load_module(self, name: str) -> None: ...

    class Finder:
        @staticmethod
        def find_spec(name, path):
            return ModuleSpec(name, Legacy())

    monkeypatch.setattr(compileserved, "PathFinder", Finder)
    spec = _Seeder(ServedCompile(lambda *args: None)).find_spec(SEEDED, [str(tmp_path)])
    assert spec is not None and type(spec.loader) is Legacy
