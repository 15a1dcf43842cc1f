"""`executor.codebundle`: modules served from one file, in real interpreters, only while the
path finder would find the same source unchanged.

Each case writes a bundle of a small package of the test's own (`codecachewarm.write_codebundle`,
in a fresh process with the docstring-free loader installed, as the warm step does), then
imports it in another fresh process with the bundle's finder installed, and prints where
the module's code came from and what it answers. A damaged bundle: test_codebundle_damage.py.
"""
from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from executor import codebundle
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)
WRITE = textwrap.dedent("""
    import sys
    from executor import codecachewarm, nodocs
    sys.dont_write_bytecode = False
    nodocs.install()
    nodocs._compile_always = True
    import probepkg.mod
    print(codecachewarm.write_codebundle(["probepkg", "probepkg.mod"]))
""")

READ = textwrap.dedent("""
    import json
    from executor import codebundle, nodocs
    nodocs.install()
    installed = codebundle.install()
    from probepkg import mod
    loader = mod.__spec__.loader
    kept = getattr(loader, "code", None) is not None  # the module's top-level code, after it ran
    print(json.dumps({"installed": installed, "loader": type(loader).__name__,
                      "answer": mod.answer(), "doc": mod.__doc__, "kept": kept,
                      "again": loader.get_code("probepkg.mod") is not None,
                      "damaged": codebundle.forget()}))  # (the package's code too read whole, where it is)
""")


def module(answer: int) -> str:
    return f'"""The module\'s docstring."""\n\n\ndef answer():\n    return {answer}\n'


@pytest.fixture
def where(tmp_path: Path) -> Path:
    for place, answer in (("src", 42), ("other", 7)):
        (tmp_path / place / "probepkg").mkdir(parents=True)
        (tmp_path / place / "probepkg" / "__init__.py").write_text("")
        (tmp_path / place / "probepkg" / "mod.py").write_text(module(answer))
    (tmp_path / "cache").mkdir(mode=0o755)
    os.chmod(tmp_path / "cache", 0o755)
    return tmp_path


def run(where: Path, script: str, *path: str) -> str:
    environ = {**os.environ, "STOKER_CODE_CACHE": str(where / "cache"),
               "PYTHONPATH": os.pathsep.join([str(REPO), *(str(where / p) for p in path)])}
    environ.pop("PYTHONPYCACHEPREFIX", None)
    result = subprocess.run([sys.executable, "-P", "-c", script], cwd=where, env=environ, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def read(where: Path, *path: str) -> dict:
    return json.loads(run(where, READ, *path).splitlines()[-1])


def test_a_module_is_served_from_the_bundle_without_its_docstring(where: Path) -> None:
    assert run(where, WRITE, "src").split() == ["2"]
    # (kept: the loader, which the module's spec keeps for good, held its code: 0.7 MiB of a
    # supervisor's USS at N=100 for its 140 modules; asked again, it is Python's own)
    assert read(where, "src") == {"installed": True, "loader": "CodeBundleLoader", "answer": 42, "doc": None,
                                  "kept": False, "again": True, "damaged": ""}


def test_a_source_changed_after_the_bundle_runs_as_edited(where: Path) -> None:
    run(where, WRITE, "src")
    source = where / "src" / "probepkg" / "mod.py"
    source.write_text(module(43))  # the same size: only its mtime tells
    stat = source.stat()
    os.utime(source, (stat.st_atime, stat.st_mtime + 10))
    answer = read(where, "src")
    assert (answer["answer"], answer["loader"]) == (43, "NoDocLoader")


def test_a_module_of_that_name_earlier_on_the_path_is_the_one_imported(where: Path) -> None:
    run(where, WRITE, "src")
    answer = read(where, "other", "src")
    assert (answer["answer"], answer["loader"], answer["damaged"]) == (7, "NoDocLoader", "")


def test_a_module_added_beside_the_package_takes_it_off_the_bundle(where: Path) -> None:
    run(where, WRITE, "src")
    (where / "src" / "probepkg" / "mod").mkdir()  # a package `probepkg.mod`: the path finder's first choice
    (where / "src" / "probepkg" / "mod" / "__init__.py").write_text("def answer():\n    return 5\n")
    answer = read(where, "src")
    assert (answer["answer"], answer["loader"]) == (5, "NoDocLoader")


def test_a_bundle_another_user_may_write_is_not_read(where: Path) -> None:
    run(where, WRITE, "src")
    os.chmod(where / "cache" / "nodoc" / codebundle.NAME, 0o666)
    assert read(where, "src")["installed"] is False


def test_after_the_start_a_module_is_found_as_python_finds_it(where: Path) -> None:
    run(where, WRITE, "src")
    forgotten = READ.replace("installed = codebundle.install()", "installed = codebundle.install()\ncodebundle.forget()")
    answer = json.loads(run(where, forgotten, "src").splitlines()[-1])
    assert (answer["installed"], answer["loader"], answer["answer"]) == (True, "NoDocLoader", 42)


def test_a_bundled_module_s_loader_compiles_its_source_as_it_is_now(where: Path) -> None:
    # the loader keeps no code of the bundle once the module ran (it held the module-level code of each
    # module, 0.5 MB in a supervisor, and gave it again for a source edited since)
    run(where, WRITE, "src")
    again = READ.replace('print(json.dumps', textwrap.dedent('''
        import pathlib
        pathlib.Path(mod.__file__).write_text("def answer():\\n    return 1043\\n")
        namespace = {}
        exec(mod.__loader__.get_code(mod.__name__), namespace)
        print(namespace["answer"]())
        print(json.dumps'''))
    assert run(where, again, "src").splitlines()[0] == "1043"


FORGOTTEN = textwrap.dedent("""
    from executor import codebundle, nodocs
    nodocs.install()
    codebundle.install()
    from probepkg import mod
    print(mod.answer(), repr(codebundle.forget()), repr(codebundle.forget()))
""")


def test_a_zip_earlier_on_the_path_is_the_one_imported(where: Path) -> None:
    run(where, WRITE, "src")
    with zipfile.ZipFile(where / "other.zip", "w") as archive:
        archive.writestr("probepkg/__init__.py", "")
        archive.writestr("probepkg/mod.py", module(7))
    answer = read(where, "other.zip", "src")
    assert (answer["answer"], answer["loader"], answer["damaged"]) == (7, "zipimporter", "")


def test_a_zip_on_the_path_as_the_bundle_was_written_keeps_the_modules_it_does_not_hold(where: Path) -> None:
    with zipfile.ZipFile(where / "other.zip", "w") as archive:
        archive.writestr("unrelated.py", module(7))
    run(where, WRITE, "other.zip", "src")
    assert read(where, "other.zip", "src")["loader"] == "CodeBundleLoader"


def test_an_import_under_way_as_the_finder_goes_finds_its_module(where: Path) -> None:
    # another thread's import, in `sys.meta_path`'s loop past the bundle's finder as the start's end takes it off
    run(where, WRITE, "src")
    (where / "src" / "solo.py").write_text("ANSWER = 6\n")
    script = textwrap.dedent("""
        import sys
        from executor import codebundle, nodocs
        nodocs.install()
        assert codebundle.install()

        class ForgetOnce:
            @staticmethod
            def find_spec(name, path=None, target=None):
                codebundle.forget()

        sys.meta_path.insert(sys.meta_path.index(codebundle.CodeBundleFinder) + 1, ForgetOnce)
        import solo
        print(solo.ANSWER, codebundle.CodeBundleFinder in sys.meta_path)
    """)
    assert run(where, script, "src").split() == ["6", "False"]


FORGOTTEN_MEANWHILE = textwrap.dedent("""
    import sys
    from executor import codebundle, nodocs
    nodocs.install()
    steps = {codebundle.CodeBundleFinder.find_spec.__code__, codebundle._served.__code__, codebundle._code.__code__}
    said = []
    for at in range(1, 60):  # the start's end (another thread's) at each line of finding a module and reading its code
        assert codebundle.install()
        lines = [0]

        def line(frame, event, arg):
            lines[0] += event == "line"
            if event == "line" and lines[0] == at:
                said.append(codebundle.forget())
            return line

        sys.settrace(lambda frame, event, arg: line if frame.f_code in steps else None)
        try:
            spec = codebundle.CodeBundleFinder.find_spec("probepkg")
            code = spec.loader.get_code("probepkg") if spec is not None else None
        finally:
            sys.settrace(None)
        said.append(codebundle.forget())
        assert spec is None or code is not None
    print(sorted(set(said)), lines[0] < at)
""")


def test_a_bundle_let_go_as_a_module_is_found_or_read_is_never_named_damaged(where: Path) -> None:
    # a loader made as `forget()` went took the bundle's next reading for its own, and read its bytes,
    # the empty ones: the file was named damaged
    run(where, WRITE, "src")
    assert run(where, FORGOTTEN_MEANWHILE, "src").split() == ["['']", "True"]


FOUND_NOT_RUN = textwrap.dedent("""
    import types
    from executor import codebundle, nodocs
    nodocs.install()
    assert codebundle.install()
    spec = codebundle.CodeBundleFinder.find_spec("probepkg")
    held = [name for name, value in vars(spec.loader).items() if isinstance(value, types.CodeType)]
    print(type(spec.loader).__name__, held)
""")


def test_a_module_found_and_not_run_holds_no_code(where: Path) -> None:
    # a module `executor.deferred` makes lazy keeps its spec, and so its loader, for the process's life
    # (found as the start began, `ipaddress`' and `fnmatch`'s code stayed: 0.16 MB of a supervisor)
    run(where, WRITE, "src")
    assert run(where, FOUND_NOT_RUN, "src").split() == ["CodeBundleLoader", "[]"]


def test_a_module_found_before_the_bundle_goes_and_run_after_runs_its_source(where: Path) -> None:
    # the source edited in between (its size too: the bundle's code would still pass its header's check)
    run(where, WRITE, "src")
    script = FOUND_NOT_RUN.replace("print(type", textwrap.dedent("""
        import pathlib
        mod = codebundle.CodeBundleFinder.find_spec("probepkg.mod", spec.submodule_search_locations)
        codebundle.forget()
        pathlib.Path(mod.origin).write_text("def answer():\\n    return 1043\\n")
        namespace = {}
        exec(mod.loader.get_code("probepkg.mod"), namespace)
        print(namespace["answer"]())
        print(type"""))
    assert run(where, script, "src").splitlines()[0] == "1043"


def test_the_bundle_lists_no_module_the_entry_point_defers() -> None:
    # the warm step's list deferred them after `codecache`, which imports `pathlib` and with it `fnmatch`,
    # `urllib.parse` and `ipaddress`: bundled, and the last two never imported by a supervisor
    script = ("from executor import codecachewarm, deferred\n"
              "print(len(codecachewarm._started()), *sorted(set(codecachewarm._started()) & set(deferred.LAZY)))")
    listed = subprocess.run([sys.executable, "-P", "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=True)
    count, *deferred = listed.stdout.split()
    assert int(count) > 100 and deferred == []


def test_a_second_bundle_adds_its_modules_to_the_first_s(where: Path) -> None:
    # a first run's planning child: the supervisor's bundle from its fork, its own added (`codebundle.PLAN`)
    run(where, WRITE.replace('write_codebundle(["probepkg", "probepkg.mod"])', 'write_codebundle(["probepkg"])'), "src")
    run(where, WRITE.replace('write_codebundle(["probepkg", "probepkg.mod"])',
                             'write_codebundle(["probepkg.mod"], codecachewarm.codebundle.PLAN)'), "src")
    both = READ.replace("installed = codebundle.install()",
                        "installed = (codebundle.install(), codebundle.install(codebundle.PLAN))")
    answer = json.loads(run(where, both, "src").splitlines()[-1])
    assert (answer["installed"], answer["loader"], answer["answer"]) == ([True, True], "CodeBundleLoader", 42)
    assert read(where, "src")["loader"] == "NoDocLoader"  # the supervisor's alone does not hold it


def test_the_planning_child_s_bundle_holds_the_config_language_and_not_what_it_has_from_its_fork(where: Path) -> None:
    environ = {**os.environ, "STOKER_CODE_CACHE": str(where / "cache"), "PYTHONPATH": str(REPO)}
    environ.pop("PYTHONPYCACHEPREFIX", None)
    subprocess.run([sys.executable, "-P", "-m", "executor.codecache", "plan"], cwd=where, env=environ, check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    data = (where / "cache" / "nodoc" / codebundle.PLAN).read_bytes()
    names = set(marshal.loads(data[4:4 + int.from_bytes(data[:4], "little")])[1])
    assert {"pystachio", "pystachio.typing", "config.schema.aurora", "config.loader", "config.bind",
            "config.purity"} <= names
    assert sorted(names & {"attr", "json", "typing", "config.plan", "executor.local.planning"}) == []
    assert not (where / "cache" / "nodoc" / codebundle.NAME).exists()  # the supervisor's is the `run` step's


def test_a_working_directory_removed_after_the_start_began_finds_modules_as_python_does(where: Path) -> None:
    # a relative entry of `sys.path` (a PYTHONPATH's), the directory it was relative to removed: Python's path finder
    # passes over the entry; the bundle's finder raised FileNotFoundError (os.getcwd()) out of the import
    run(where, WRITE, "src")
    script = textwrap.dedent("""
        import os, sys, tempfile
        sys.path.insert(1, "relative")
        from executor import codebundle, nodocs
        nodocs.install()
        installed = codebundle.install()
        gone = tempfile.mkdtemp(dir=PLACE)
        os.chdir(gone)
        os.rmdir(gone)
        from probepkg import mod
        print(installed, mod.answer())
    """)
    assert run(where, script.replace("PLACE", repr(str(where))), "src").split() == ["True", "42"]


def test_a_start_in_a_removed_working_directory_serves_nothing_and_names_no_file_damaged(where: Path) -> None:
    # a relative entry cannot be placed: nothing served (was: the file named damaged, its DEBUG line said so)
    run(where, WRITE, "src")
    script = textwrap.dedent("""
        import os, sys, tempfile
        sys.path.insert(1, "relative")
        gone = tempfile.mkdtemp(dir=PLACE)
        os.chdir(gone)
        os.rmdir(gone)
        from executor import codebundle, nodocs
        nodocs.install()
        installed = codebundle.install()
        from probepkg import mod
        print(installed, mod.answer(), repr(codebundle.forget()))
    """)
    assert run(where, script.replace("PLACE", repr(str(where))), "src").split() == ["False", "42", "''"]


RECYCLED = textwrap.dedent("""
    import marshal, os
    from executor import codebundle, nodocs
    nodocs.install()
    assert codebundle.install()
    import probepkg
    spec = codebundle.CodeBundleFinder.find_spec("probepkg.mod", probepkg.__path__)
    with open(os.path.join(nodocs._nodoc, codebundle.NAME), "rb") as file:
        data = file.read()
    start, length = spec.loader.where
    other = marshal.dumps(compile("answer = list", spec.origin, "exec"))  # (shorter than the module's)
    assert len(other) <= length
    at = 4 + int.from_bytes(data[:4], "little") + start
    with open("decoy", "wb") as file:  # another file, where the bundle had that module's code: another's
        file.write(data[:at] + other.ljust(length, b"\\0"))
    seen = []

    def close_and_go_on(fd):
        os.close(fd)  # (os.close lets the GIL go: another thread runs, opens a file, imports)
        reused = os.open("decoy", os.O_RDONLY)
        namespace = {}
        exec(spec.loader.get_code("probepkg.mod"), namespace)
        seen.extend([reused == fd, namespace["answer"]()])
        os.close(reused)

    codebundle._OpenBundle._close = staticmethod(close_and_go_on)
    codebundle.forget()
    print(*seen, repr(codebundle.forget()))  # (a closing file is the source's, not a damaged one)
""")


def test_a_loader_never_reads_the_descriptor_its_closing_file_let_go(where: Path) -> None:
    # the file's weak reference still gives it while its __del__ runs, and os.close lets the GIL go: a thread
    # that imported then read the number its close freed, whatever another thread had opened under it
    run(where, WRITE, "src")
    assert run(where, RECYCLED, "src").split() == ["True", "42", "''"]


MOVED = textwrap.dedent("""
    import os, sys
    from executor import codebundle, nodocs
    nodocs.install()
    assert codebundle.install()
    {change}
    try:
        from probepkg import mod
        print(mod.answer(), *(type(m.__spec__.loader).__name__ for m in (sys.modules["probepkg"], mod)))
    except ImportError as exc:
        print(type(exc).__name__)
""")


def test_no_bundle_written_or_no_docstring_free_code_installs_nothing(where: Path) -> None:
    """No bundle file yet: nothing installed, nothing raised. A bundle there, but the
    docstring-free code (`nodocs`) not installed: not read either (its cache is not in use)."""
    script = MOVED.replace("assert codebundle.install()", "print(codebundle.install(), repr(codebundle.forget()))")
    assert run(where, script.format(change=""), "src").split() == ["False", "''", "42", "NoDocLoader", "NoDocLoader"]
    run(where, WRITE, "src")
    without = script.replace("nodocs.install()\n", "")
    assert run(where, without.format(change=""), "src").split()[:3] == ["False", "''", "42"]
