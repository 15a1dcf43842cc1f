"""`executor.codecache`: attrs' generated methods served from a file, in real interpreters.

Each case runs fresh Python processes (a class is created once per process) with
STOKER_CODE_CACHE pointing at a temporary directory and a fixed, different PYTHONHASHSEED
per process, so that the one number attrs writes differently each time (a class's term in
`__hash__`) does differ. What the classes do is printed as JSON and compared with a process
that has no cache at all.
"""
from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from attr import _make

from executor import codecache
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)

# attrs 24.3 and later compile a class's methods in one script ("methods") through
# `_linecache_and_compile`, the step the cache serves without a linecache entry; attrs 23.1
# (setup.py's lower bound) compiles one script a method through `_make_method`, which keeps
# its entry (and makes a name unique with a "-1" suffix itself).
ONE_SCRIPT = hasattr(_make, "_linecache_and_compile")
# `_ClassBuilder._add_method_dunders_unsafe`, the naming step served without the docstring:
# attrs 23.1 has only `_add_method_dunders`, so its methods keep their docstrings.
NAMING_STEP = hasattr(_make._ClassBuilder, "_add_method_dunders_unsafe")


def generated(qualified: str, method: str = "init") -> str:
    """The generated file name of a class's methods (attrs 23.1: of its `method`)."""
    return f"<attrs generated {'methods' if ONE_SCRIPT else method} {qualified}>"

# Installs the cache for `run` (unless told "plain"), with the modules the entry point defers
# deferred first, as it has them, imports what `stoker run` imports, then prints the counts
# and what a few of the product's classes do.
PROBE = textwrap.dedent("""
    import json, sys
    from executor import codecache, deferred
    if sys.argv[1] != "plain":
        deferred.defer()
    installed = sys.argv[1] != "plain" and codecache.install("run")
    import executor.cli.main, executor.local.run
    from config.spec import ProcessSpec
    from executor.events import ProcessState, ProcessTransition
    a = ProcessSpec(name="web", cmdline="serve", max_failures=2)
    b = ProcessSpec(name="web", cmdline="serve", max_failures=2)
    c = ProcessSpec(name="web", cmdline="serve", max_failures=3)
    t = ProcessTransition(process="web", run=0, from_=ProcessState.WAITING, to=ProcessState.RUNNING,
                          reason="forked")
    behaviour = {
        "repr": [repr(a), repr(t)],
        "eq": [a == b, a == c, a != c, t == t],
        "hash_alike": hash(a) == hash(b),
        "hash_apart": hash(a) != hash(c),
        "init_error": "",
    }
    try:
        ProcessSpec(nonsense=1)
    except TypeError as exc:
        behaviour["init_error"] = str(exc)
    import linecache
    lines = sum(name.startswith("<attrs generated") and not name.startswith("<attrs generated methods attr.")
                for name in linecache.cache)  # attrs' own classes are made as it loads, before the cache
    print(json.dumps({"installed": installed, "counts": codecache.counts(), "saved": codecache.save(),
                      "behaviour": behaviour, "linecache": lines}))
""")


def probe(cache: Path | str, seed: int, *, plain: bool = False, preexec_fn: Callable[[], None] | None = None,
          script: str = PROBE, **env: str) -> dict:
    environ = {**os.environ, "STOKER_CODE_CACHE": str(cache), "PYTHONHASHSEED": str(seed), **env}
    if "PYTHONDONTWRITEBYTECODE" not in env:
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run([sys.executable, "-c", script, "plain" if plain else "cache"], cwd=REPO,
                            env=environ, capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_file(cache: Path) -> Path:
    [path] = cache.glob("attrs-run.*.bin")
    return path


def entries_of(path: Path) -> dict:
    """The file's entries: file name → ((source, code), ...)."""
    data = path.read_bytes()
    assert data.startswith(codecache.HEADER)
    return marshal.loads(data[len(codecache.HEADER):])


def write_entries(path: Path, entries: dict, header: bytes = codecache.HEADER) -> None:
    path.write_bytes(header + marshal.dumps(entries))


def test_a_second_process_serves_every_class_from_the_file_and_they_behave_as_compiled(tmp_path):
    plain = probe(tmp_path, 1, plain=True)
    first = probe(tmp_path, 2)
    second = probe(tmp_path, 3)
    assert plain["counts"] == [0, 0] and not plain["saved"]
    hits, compiled = first["counts"]
    assert hits == 0 and compiled >= 80 and first["saved"]
    assert second["counts"] == [compiled, 0] and not second["saved"]  # nothing new to write
    assert first["behaviour"] == second["behaviour"] == plain["behaviour"]
    assert "unexpected keyword argument 'nonsense'" in second["behaviour"]["init_error"]
    # attrs' own step keeps every class's source in linecache; the cache's keeps none (where
    # attrs has that step: 24.3; before, its `_make_method` keeps those it makes, served or
    # not, and a process with the cache has it make fewer: 333 entries against 372 without
    # the cache, with attrs 23.1, as `make test-deps-oldest` runs)
    assert plain["linecache"] >= 80
    assert first["linecache"] == second["linecache"]
    assert first["linecache"] == 0 if ONE_SCRIPT else 0 < first["linecache"] <= plain["linecache"]


def test_a_traceback_through_a_served_init_names_its_file_and_line(tmp_path):
    code = textwrap.dedent("""
        import sys, traceback
        from executor import codecache
        codecache.install("run")
        import attrs

        @attrs.frozen
        class Checked:
            port: int = attrs.field(validator=attrs.validators.gt(0))

        try:
            Checked(0)
        except ValueError:
            print(traceback.format_exc())
    """)
    environ = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert f'File "{generated("__main__.Checked")}", line' in out and "in __init__" in out
    assert "ValueError: 'port' must be > 0: 0" in out


def test_a_class_whose_source_changed_is_compiled_not_served(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    entries = entries_of(path)
    name = generated("config.spec.ProcessSpec")
    [(source, _)] = entries[name]
    entries[name] = ((source.replace("max_failures", "max_fails"),  # as an edited class would
                      entries[generated("executor.events.ProcessTransition")][0][1]),)
    write_entries(path, entries)
    again = probe(tmp_path, 2)
    assert again["counts"] == [compiled - 1, 1] and again["saved"]
    assert again["behaviour"] == probe(tmp_path, 3, plain=True)["behaviour"]
    assert probe(tmp_path, 4)["counts"] == [compiled, 0]  # the rewritten file serves it again


@pytest.mark.parametrize("content", [b"", b"garbage", b"\xe3" + b"\0" * 40], ids=["empty", "text", "truncated"])
def test_a_damaged_file_is_ignored_and_written_again(tmp_path, content):
    compiled = probe(tmp_path, 1)["counts"][1]
    run_file(tmp_path).write_bytes(content)
    assert probe(tmp_path, 2)["counts"] == [0, compiled]
    assert probe(tmp_path, 3)["counts"] == [compiled, 0]


def test_a_file_from_another_python_build_is_ignored(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    header = codecache.HEADER.replace(repr(sys.version).encode(), b"'3.11.0 (some other build)'")
    write_entries(path, entries_of(path), header)
    assert probe(tmp_path, 2)["counts"] == [0, compiled]


def test_nothing_is_written_when_python_is_told_not_to_write_bytecode(tmp_path):
    first = probe(tmp_path, 1, PYTHONDONTWRITEBYTECODE="1")
    assert first["installed"] and not first["saved"] and not list(tmp_path.iterdir())


def test_a_directory_that_cannot_be_made_is_no_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = probe(blocker / "cache", 1)  # ENOTDIR, whoever runs the test (a path not used: off)
    assert not result["saved"]
    assert result["behaviour"] == probe(tmp_path, 2, plain=True)["behaviour"]


def test_a_directory_whose_parents_are_missing_is_made(tmp_path):
    cache = tmp_path / "a" / "b" / "cache"
    compiled = probe(cache, 1)["counts"][1]
    assert probe(cache, 2)["counts"] == [compiled, 0]  # was: never written (ENOENT, silent)
    assert not any(level.stat().st_mode & 0o022 for level in (cache, cache.parent, cache.parent.parent))


@pytest.mark.parametrize("setting", ["off", "relative/dir"])
def test_off_or_a_relative_directory_leaves_attrs_alone(tmp_path, setting):
    result = probe(setting, 1)
    assert not result["installed"] and result["counts"] == [0, 0] and not result["saved"]
    assert not (REPO / setting).exists()


def test_a_save_whose_writer_does_not_load_writes_nothing_and_raises_nothing(tmp_path):
    # after an upgrade in place, `codecachewrite.py` (imported at the exit only) may be the new
    # version's and not load: was an ImportError's traceback at the exit of a task that ended
    unloadable = "import sys\nsys.modules['executor.codecachewrite'] = None\n"
    result = probe(tmp_path, 1, script=unloadable + PROBE)
    assert result["installed"] and result["counts"][1] > 0 and not result["saved"]
    assert not list(tmp_path.glob("attrs-run.*.bin"))


def test_the_stoker_entry_point_uses_it_and_warm_writes_every_profile(tmp_path, seeded_pyc):
    # the modules' code without docstrings (executor/nodocs.py) and Python's .pyc files: the
    # session's seed (what is checked here, the attrs code cache in tmp_path, starts empty)
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path), "PYTHONPYCACHEPREFIX": str(seeded_pyc)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "executor", "--version"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=60)
    [cli] = tmp_path.glob("attrs-cli.*.bin")
    written = cli.stat().st_mtime_ns
    subprocess.run([sys.executable, "-m", "executor", "--version"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=60)
    assert cli.stat().st_mtime_ns == written  # every class served: nothing to write again
    warm = subprocess.run([sys.executable, "-m", "executor.codecache"], cwd=REPO,
                          env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True, text=True,
                          timeout=120)
    assert warm.returncode == 0, warm.stderr
    assert sorted(p.name.split(".")[0] for p in tmp_path.glob("attrs-*.bin")) == [
        "attrs-cli", "attrs-executor", "attrs-observe", "attrs-plan", "attrs-run"]
    assert probe(tmp_path, 5)["counts"][1] == 0  # `run`'s start, all warmed


def test_warm_keeps_only_the_sources_a_start_uses(tmp_path):
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path), "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc"),
           "PYTHONDONTWRITEBYTECODE": "1"}  # the installer asked for the file: written all the same
    off = subprocess.run([sys.executable, "-c", "from executor import codecachewarm; print(codecachewarm.warm('cli'))"],
                         cwd=REPO, env={**env, "STOKER_CODE_CACHE": "off"}, capture_output=True, text=True, timeout=60)
    assert off.stdout == "False\n", off.stderr  # no cache to warm: nothing written

    def warm() -> dict:
        subprocess.run([sys.executable, "-m", "executor.codecache", "cli"], cwd=REPO, env=env, check=True,
                       capture_output=True, timeout=120)
        [path] = tmp_path.glob("attrs-cli.*.bin")
        return entries_of(path)

    entries = warm()
    assert any(tmp_path.rglob("*.opt-nodoc4.pyc"))  # and the modules' code without docstrings
    # attrs' validators are deferred as the entry point defers them: none of their classes made
    assert entries and not [name for name in entries if "attr.validators" in name]
    name = next(iter(entries))
    stale = (entries[name][0][0] + "\n# an older Stoker's shape", code_of("x = 1"))
    [path] = tmp_path.glob("attrs-cli.*.bin")
    write_entries(path, {**entries, name: (*entries[name], stale), "<gone>": (stale,)})
    # was: kept (merged), and held unserved by every command for its whole life
    assert warm() == entries


def code_of(source: str) -> object:
    return compile(source, "<probe>", "exec")


def test_warm_refuses_an_unknown_profile(tmp_path):
    result = subprocess.run([sys.executable, "-m", "executor.codecache", "rnu", "run", "cl"], cwd=REPO,
                            env={**os.environ, "STOKER_CODE_CACHE": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (2, "usage: python -m executor.codecache "
                                                     "[run|executor|observe|cli|plan]...; not a profile: rnu, cl\n")


FIELDS = textwrap.dedent("""
    import json, sys
    from executor import codecache
    installed = sys.argv[1] != "plain" and codecache.install("run")
    import attrs

    @attrs.frozen
    class Base:
        x: int
        count: int = 3  # a name the tuple has too: the field, as attrs' own property gives it

    @attrs.define
    class Child(Base):
        index: str = "i"

    fields = attrs.fields(Child)
    try:
        fields.nope
        missing = ""
    except AttributeError as exc:
        missing = type(exc).__name__
    import executor.local.run  # the supervisor's classes: each its own fields, by name
    from executor.task.process_rules import ProcessTrack
    track = attrs.fields(ProcessTrack)
    print(json.dumps({
        "installed": installed, "names": [f.name for f in fields], "len": len(fields),
        "by_name": [fields.x.name, fields.count.name, fields.index.name, fields.index.inherited],
        "tuple": [isinstance(fields, tuple), fields[1] is fields.count, missing],
        "dict": list(attrs.fields_dict(Child)), "evolve": repr(attrs.evolve(Child(1), count=5)),
        "asdict": attrs.asdict(Child(2)), "track": all(getattr(track, f.name) is f for f in track),
        "shared": type(fields) is type(attrs.fields(Base)) is type(track)}))
""")


def test_the_fields_of_every_class_read_as_attrs_own_from_one_shared_class(tmp_path):
    def fields(mode: str) -> dict:
        result = subprocess.run([sys.executable, "-c", FIELDS, mode], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, "STOKER_CODE_CACHE": str(tmp_path)}, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    plain, served = fields("plain"), fields("cache")
    assert served.pop("installed") and not plain.pop("installed")
    assert not plain.pop("shared") and served.pop("shared")  # attrs: a tuple class per class
    assert served == plain
    assert served["by_name"] == ["x", "count", "index", False] and served["tuple"] == [True, True, "AttributeError"]


GLOBALS = textwrap.dedent("""
    import json, sys
    from executor import codecache
    installed = sys.argv[1] != "plain" and codecache.install("run")
    import attrs

    def to_port(value):
        return int(value)

    @attrs.define
    class Listener:
        port: int = attrs.field(converter=to_port, validator=attrs.validators.gt(0))
        names: list = attrs.Factory(list)
        host: str = "localhost"

    made = Listener("80")
    try:
        Listener(0)
        refused = ""
    except ValueError as exc:
        refused = str(exc)
    made.port = "81"  # define(): converted and validated on setattr too
    columns = any(column is not None for code in (Listener.__init__.__code__,)  # (__repr__: attrsmethods.py)
                  for _, _, column, _ in code.co_positions())
    print(json.dumps({"installed": installed, "module_names": "json" in Listener.__init__.__globals__,
                      "columns": columns, "saved": codecache.save(),
                      "doc": [Listener.__init__.__doc__, Listener.__init__.__qualname__, Listener.__init__.__module__],
                      "made": [repr(made), made == Listener(81), made.names is not Listener(1).names],
                      "refused": refused, "annotations": [sorted(Listener.__dict__.get("__annotations__", {})),
                      sorted(Listener.__init__.__annotations__), [a.type.__name__ for a in attrs.fields(Listener)]],
                      "props": "__attrs_props__" in Listener.__dict__}))
""")


def run_globals(tmp_path: Path, mode: str) -> dict:
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # save() writes, as for .pyc files
    result = subprocess.run([sys.executable, "-c", GLOBALS, mode], cwd=REPO, capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_served_methods_keep_the_globals_they_read_and_no_columns_nor_docstrings(tmp_path):
    plain, served = run_globals(tmp_path, "plain"), run_globals(tmp_path, "cache")
    assert plain.pop("module_names") and not served.pop("module_names")  # attrs: the module's namespace copied
    assert plain.pop("columns") and not served.pop("columns")  # lines only: no source to mark anyway
    assert served.pop("saved") and not plain.pop("saved")
    plain_doc = plain.pop("doc")
    assert plain_doc == ["Method generated by attrs for class Listener.", "Listener.__init__", "__main__"]
    served_doc = served.pop("doc")  # no docstring, as Stoker's modules (attrs 23.1: attrs' own naming step)
    assert served_doc == ([None, "Listener.__init__", "__main__"] if NAMING_STEP else plain_doc)
    assert served.pop("installed") and not plain.pop("installed")
    # the class's and its `__init__`'s annotations gone, and its build's settings; its fields' `type` keeps them
    assert not served.pop("props") and plain.pop("props") == hasattr(_make, "ClassProps")  # (attrs 25.4 and later)
    plain_annotations, served_annotations = plain.pop("annotations"), served.pop("annotations")
    assert plain_annotations[:2] == [["host", "names", "port"], ["host", "names", "return"]]
    assert served_annotations == [[], [], plain_annotations[2]] and plain_annotations[2] == ["int", "list", "str"]
    assert served == plain and served["made"][1:] == [True, True] and "must be > 0" in served["refused"]


def test_a_file_of_a_former_format_is_compiled_again_and_written_in_this_one(tmp_path):
    run_globals(tmp_path, "cache")
    [path] = tmp_path.glob("attrs-run.*.bin")
    entries = {name: kept[0] for name, kept in entries_of(path).items()}
    path.write_bytes(marshal.dumps((2, sys.version, entries)))  # as FORMAT 2 wrote it
    again = run_globals(tmp_path, "cache")
    assert again["saved"] and not again["columns"]  # compiled again (lines only), and written
    assert path.read_bytes().startswith(codecache.HEADER)


EVAL = textwrap.dedent("""
    import json, sys
    from executor import codecache
    installed = sys.argv[1] != "plain" and codecache.install("run")
    from attr import _make

    globs = {"offset": 40}
    # attrs' own step without locals (its `_add_hash`, `_add_eq`, `_add_repr` then read the
    # method from the globals): what the script defines is there, and reads its globals
    _make._compile_and_eval("def answer(x):\\n    return x + offset\\n", globs, filename="<probe>")
    print(json.dumps({"installed": installed, "answer": globs["answer"](2)}))
""")


def test_attrs_step_without_locals_defines_in_the_globals_it_was_given(tmp_path):
    def answer(mode: str) -> dict:
        result = subprocess.run([sys.executable, "-c", EVAL, mode], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, "STOKER_CODE_CACHE": str(tmp_path)}, timeout=60)
        assert result.returncode == 0, result.stderr  # served: KeyError 'answer'
        return json.loads(result.stdout)

    assert answer("plain") == {"installed": False, "answer": 42}
    assert answer("cache") == {"installed": True, "answer": 42}


# A first run's planning child: `run`'s cache installed (the entry point's, before the fork),
# then `plan`'s added (`codecache.also`), the config language loaded: the classes it
# compiled, and whether `run`'s file holds any of the config language's.
