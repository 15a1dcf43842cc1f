"""`executor.nodocs`: modules loaded without their docstrings, in real interpreters.

Each case runs fresh Python processes that install the loader and import a small package of
the test's own; PYTHONPYCACHEPREFIX keeps every `.pyc` they write (ours and Python's) in the
test's directory. What the module does, and where its code came from, is printed as JSON.
"""
from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)

MODULE = textwrap.dedent('''\
    """The module's docstring."""


    def answer():
        """The function's docstring."""
        return 42


    def checked(x):
        assert x, "an assert that must stay"
        return x


    def fails():
        raise RuntimeError("the line a traceback names")


    def typed(x: int, *rest: str, flag: bool = False) -> str:
        return str(x)



    def pair():
        return (lambda: 1), (lambda: 2)
''')

PROBE = textwrap.dedent("""
    import json, sys, traceback
    from executor import nodocs
    installed = nodocs.install()
    from probepkg import mod
    try:
        mod.checked(0)
        asserted = False
    except AssertionError:
        asserted = True
    try:
        mod.fails()
    except RuntimeError as exc:
        line = traceback.extract_tb(exc.__traceback__)[-1].lineno
    print(json.dumps({"installed": installed, "loader": type(mod.__spec__.loader).__name__,
                      "docs": [mod.__doc__, mod.answer.__doc__], "answer": mod.answer(),
                      "asserted": asserted, "line": line}))
""")


@pytest.fixture
def package(tmp_path: Path) -> Path:
    (tmp_path / "probepkg").mkdir()
    (tmp_path / "probepkg" / "__init__.py").write_text("")
    (tmp_path / "probepkg" / "mod.py").write_text(MODULE)
    return tmp_path


def probe(where: Path, **env: str) -> dict:
    environ = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{where}",
               "PYTHONPYCACHEPREFIX": str(where / "pyc"), **env}
    for name in ("PYTHONDONTWRITEBYTECODE", "STOKER_CODE_CACHE"):
        if name not in env:
            environ.pop(name, None)
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=where, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def kept(where: Path) -> list[Path]:
    return sorted((where / "pyc").rglob("mod.*.opt-nodoc4.pyc"))


FAILS_LINE = MODULE.splitlines().index('    raise RuntimeError("the line a traceback names")') + 1


def test_the_first_process_writes_the_code_without_docstrings_and_the_next_reads_it(package):
    first = probe(package)
    assert first == {"installed": True, "loader": "NoDocLoader", "docs": [None, None], "answer": 42,
                     "asserted": True, "line": FAILS_LINE}
    [path] = kept(package)
    written = (path.stat().st_ino, path.stat().st_mtime_ns)
    # equal values are one object as the file loads (`nodoccode.dumps`): the two lambdas'
    # qualified name (so their local names and kinds, which Python does not show)
    code = marshal.loads(path.read_bytes()[16:])
    [pair] = [const for const in code.co_consts if getattr(const, "co_name", "") == "pair"]
    one, other = [const for const in pair.co_consts if getattr(const, "co_name", "") == "<lambda>"]
    assert one.co_qualname == "pair.<locals>.<lambda>" and one.co_qualname is other.co_qualname
    assert probe(package) == first
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == written  # read, not written again


def test_a_changed_source_is_compiled_again(package):
    probe(package)
    source = package / "probepkg" / "mod.py"
    source.write_text(MODULE.replace("return 42", "return 4242"))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 2_000_000_000))
    assert probe(package)["answer"] == 4242



def test_a_changed_source_whose_pyc_python_wrote_is_compiled_again_where_its_file_was(package):
    """A dev tree edited, or an installer that upgrades and compiles `.pyc` files (pip)
    without the warm step: the file of ours is stale, Python's `.pyc` usable. The module was
    loaded from that `.pyc`, docstrings and columns included (0.5 MiB of an idle `stoker run`),
    at every start until `python -m executor.codecache` ran again; a stale file of ours says
    this installation was warmed: compiled again once, where it can be written."""
    probe(package)
    source = package / "probepkg" / "mod.py"
    source.write_text(MODULE.replace("return 42", "return 4242"))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 2_000_000_000))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{package}", "PYTHONPYCACHEPREFIX": str(package / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compiled = subprocess.run([sys.executable, "-m", "compileall", "-q", "probepkg"], cwd=package, env=env,
                              capture_output=True, text=True, timeout=60)
    assert compiled.returncode == 0, compiled.stderr
    after = probe(package)
    assert after["answer"] == 4242 and after["docs"] == [None, None]
    [path] = kept(package)
    assert path.read_bytes()[8:12] == (int(source.stat().st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")


@pytest.mark.parametrize("damage", ["header", "body"])
def test_a_damaged_file_is_compiled_again(package, damage):
    probe(package)
    [path] = kept(package)
    data = path.read_bytes()
    path.write_bytes(b"\0" * 16 + data[16:] if damage == "header" else data[:16] + b"\xff garbage")
    assert probe(package)["docs"] == [None, None]
    assert path.read_bytes() == data


def test_without_bytecode_writing_a_module_without_a_file_keeps_its_docstrings(package):
    result = probe(package, PYTHONDONTWRITEBYTECODE="1")
    assert result["installed"] and result["docs"] == ["The module's docstring.", "The function's docstring."]
    assert result["asserted"] and result["line"] == FAILS_LINE and kept(package) == []


def test_the_code_cache_setting_off_leaves_the_loaders_alone(package):
    result = probe(package, STOKER_CODE_CACHE="off")
    assert not result["installed"] and result["loader"] == "SourceFileLoader"
    assert result["docs"] == ["The module's docstring.", "The function's docstring."] and kept(package) == []


def test_warm_writes_the_start_modules_files_whatever_pythondontwritebytecode_says(tmp_path):
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path / "attrs"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert warm.returncode == 0, warm.stderr
    # a package by its directory's name (3.13's pathlib is one: its `__init__`)
    names = {p.parent.name if p.name.startswith("__init__.") else p.name.split(".")[0]
             for p in (tmp_path / "pyc").rglob("*.opt-nodoc4.pyc")}
    # the supervisor's own modules, those loaded before the loader (codecache's), the stdlib's
    assert {"run", "planning", "codecache", "pathlib", "subprocess"} <= names
    # attrs' two modules loaded through a loader of Stoker's around the path finder's
    # (`compileserved`'s, `deferred`'s): attrs' largest kept its docstrings at every start
    made = {p.name.split(".")[0] for p in (tmp_path / "pyc").rglob("*.opt-nodoc4.pyc") if p.parent.name == "attr"}
    assert {"_make", "_compat"} <= made
    # and those of Stoker's packages and pystachio that a command loads only when it needs them
    # (a first run's config: config.loader, config.bind, pystachio's parser; an Aurora task's)
    assert {"loader", "bind", "parsing", "wire", "announcer"} <= names


def test_a_private_sources_file_is_as_private_as_its_pyc(package):
    """Python writes a `.pyc` with its source's mode (plus owner write): a source only its
    owner may read does not become code anyone may read. So must ours."""
    (package / "probepkg" / "mod.py").chmod(0o600)
    old = os.umask(0o022)
    try:
        probe(package)
    finally:
        os.umask(old)
    [path] = kept(package)
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_code_outside_stokers_installation_is_kept_in_its_code_cache_not_beside_it(package):
    """The standard library's and the system's packages' `__pycache__` belong to the
    interpreter's package manager (dpkg's, say): without PYTHONPYCACHEPREFIX, only modules
    of Stoker's own installation get their file beside their `.pyc`; the others' go under
    the code cache directory, `nodoc/` and their source's directory."""
    cache = package / "cache"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")}
    environ.update(PYTHONPATH=f"{REPO}{os.pathsep}{package}", STOKER_CODE_CACHE=str(cache))
    for _ in range(2):  # the second run reads what the first wrote
        result = subprocess.run([sys.executable, "-c", PROBE], cwd=package, env=environ,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["docs"] == [None, None]
    assert list(package.joinpath("probepkg").rglob("*.opt-nodoc4.pyc")) == []
    mirrored = cache / "nodoc" / str(package / "probepkg").lstrip(os.sep)
    assert [p.name for p in mirrored.glob("mod.*.opt-nodoc4.pyc")] == [f"mod.{sys.implementation.cache_tag}.opt-nodoc4.pyc"]
    warm = subprocess.run([sys.executable, "-c", "from executor import codecachewarm, nodocs; nodocs.install(); import difflib; "
                           "codecachewarm.write_loaded()"], cwd=package, env=environ, capture_output=True, text=True,
                          timeout=60)  # as the installer's step: the standard library has its .pyc
    assert warm.returncode == 0, warm.stderr
    stdlib = os.path.dirname(os.__file__)
    assert list((cache / "nodoc" / stdlib.lstrip(os.sep)).glob("difflib.*.opt-nodoc4.pyc"))


HELPER = '''\
def greeting():
    """echo hello from a docstring"""


CMDLINE = greeting.__doc__
'''
CONFIG = '''\
import cmdhelp

task = SequentialTask(processes=[Process(name="hello", cmdline=cmdhelp.CMDLINE)],
                      resources=Resources(cpu=1.0, ram=128 * MB, disk=128 * MB))
jobs = [Job(task=task, cluster="c", role="r", environment="prod", name="hello")]
'''


def test_a_module_a_config_imports_keeps_its_docstrings(tmp_path):
    """A config is the user's code, and so is what it imports (here from PYTHONPATH): its
    modules load as Python loads them, docstrings and all, while Stoker's do not."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cmdhelp.py").write_text(HELPER)
    (tmp_path / "job.aurora").write_text(CONFIG)
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environ.update(PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path / 'lib'}", PYTHONPYCACHEPREFIX=str(tmp_path / "pyc"))
    for setting in ("", "", "off"):  # the second run reads what the first wrote
        result = subprocess.run([sys.executable, "-m", "executor", "inspect", "job.aurora"], cwd=tmp_path,
                                env={**environ, "STOKER_CODE_CACHE": setting}, capture_output=True, text=True,
                                timeout=60)
        assert (result.returncode, result.stderr) == (0, "")
        assert "| echo hello from a docstring" in result.stdout
    assert list((tmp_path / "pyc").rglob("loader.*.opt-nodoc4.pyc"))  # Stoker's own modules: without
    assert not list((tmp_path / "pyc").rglob("cmdhelp.*.opt-nodoc4.pyc"))


ANNOTATIONS = textwrap.dedent("""
    import json
    from executor import nodocs
    nodocs.install()
    from executor.events import ProcessExited
    from executor.procs import runenv
    from probepkg import mod
    print(json.dumps({"own": runenv.run_marker.__annotations__, "marker": runenv.run_marker("t", "p", 2),
                      "fields": ProcessExited.__annotations__,
                      "other": {name: kind.__name__ for name, kind in mod.typed.__annotations__.items()}}))
""")


def test_stokers_own_functions_lose_their_annotations_and_its_classes_fields_keep_theirs(package):
    """Stoker's modules compiled without their functions' annotations (strings held for
    nothing), but a class's fields keep theirs (attrs makes the class from them); a module
    that is not Stoker's keeps its functions' (a library may read them)."""
    environ = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{package}", "PYTHONPYCACHEPREFIX": str(package / "pyc")}
    for name in ("PYTHONDONTWRITEBYTECODE", "STOKER_CODE_CACHE"):
        environ.pop(name, None)
    for _ in range(2):  # compiled, then read from the file the first wrote
        result = subprocess.run([sys.executable, "-c", ANNOTATIONS], cwd=package, env=environ,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["own"] == {} and answer["marker"] == "t/p/2"
        assert answer["fields"]["pid"] == "int" and answer["fields"]["process"] == "str"
        assert answer["other"] == {"x": "int", "rest": "str", "flag": "bool", "return": "str"}
    assert list((package / "pyc").rglob("runenv.*.opt-nodoc4.pyc"))


def test_the_configs_namespace_name_is_the_one_the_loader_knows():
    from config.loader import _Run
    from executor import nodocs

    assert _Run().namespace["__name__"] == nodocs.CONFIG_NAMESPACE


def test_a_module_with_a_usable_pyc_loads_from_it_until_the_installer_writes_its_file(package):
    """A fresh unpack of the zipapp (hash-checked `.pyc` files, nothing of ours) or an
    installation not warmed: compiling every module again without docstrings costs a start
    about twice Python's own compile (seconds, for `stoker executor`), where Python
    compiles nothing. Then the `.pyc` is loaded; `write_loaded()` (the installer's `python
    -m executor.codecache`) writes the file, which the next start reads."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{package}", "PYTHONPYCACHEPREFIX": str(package / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compiled = subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash",
                               "probepkg"], cwd=package, env=env, capture_output=True, text=True, timeout=60)
    assert compiled.returncode == 0, compiled.stderr
    assert probe(package)["docs"] == ["The module's docstring.", "The function's docstring."]
    assert kept(package) == []
    warm = subprocess.run([sys.executable, "-c", "from executor import codecachewarm, nodocs; nodocs.install(); "
                           "import probepkg.mod; codecachewarm.write_loaded()"], cwd=package, env=env,
                          capture_output=True, text=True, timeout=60)
    assert warm.returncode == 0, warm.stderr
    assert len(kept(package)) == 1 and probe(package)["docs"] == [None, None]


def test_a_module_whose_file_has_an_earlier_tag_is_compiled_again_as_a_stale_one(package):
    """An installation warmed by an earlier Stoker (its files `opt-nodoc2`), upgraded without
    the warm step: Python's `.pyc` of the new source would serve the module, docstrings and
    all, at every start (was: the tag's change hid the file gone stale). Compiled once."""
    assert probe(package)["docs"] == [None, None]
    [path] = kept(package)
    path.rename(path.with_name(path.name.replace(".opt-nodoc4.", ".opt-nodoc2.")))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{package}", "PYTHONPYCACHEPREFIX": str(package / "pyc")}
    compiled = subprocess.run([sys.executable, "-m", "compileall", "-q", "probepkg"], cwd=package, env=env,
                              capture_output=True, text=True, timeout=60)  # Python's usable `.pyc`, as pip writes it
    assert compiled.returncode == 0, compiled.stderr
    assert probe(package)["docs"] == [None, None]
    assert len(kept(package)) == 1


def test_a_module_loaded_before_the_loader_gets_its_pyc_from_the_installer_whatever_the_environment(package):
    """The entry point loads its first modules (`executor`, `executor.nodocs`, ...) before
    the loader is in place, from Python's `.pyc` alone: the warm step writes it, even under
    PYTHONDONTWRITEBYTECODE=1 (as the code cache's file), else each start compiled them, and
    the builtin `compile()` made the compiler's syntax-tree classes (0.2 MiB). Was: only
    the file without docstrings, which such a module never reads (a checkout only ever run
    under PYTHONDONTWRITEBYTECODE=1, or a module edited since: `test_compileserved`'s start
    made 119 of them, unless another test's process had written the `.pyc` first)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{package}", "PYTHONPYCACHEPREFIX": str(package / "pyc"),
           "PYTHONDONTWRITEBYTECODE": "1", "STOKER_CODE_CACHE": str(package / "cache")}
    early = "import sys; seen = []; sys.addaudithook(lambda e, a: e == 'compile' and seen.append(a[1])); import probepkg.mod"
    warm = subprocess.run([sys.executable, "-c", f"{early}; from executor import codecachewarm; codecachewarm.warm('cli')"],
                          cwd=package, env=env, capture_output=True, text=True, timeout=60)  # as the installer's step
    assert warm.returncode == 0, warm.stderr
    start = subprocess.run([sys.executable, "-c", f"{early}; print(seen)"], cwd=package, env=env,
                           capture_output=True, text=True, timeout=60)
    assert (start.returncode, start.stdout.strip()) == (0, "[]"), start.stderr  # was: ['.../probepkg/__init__.py', ...]


def test_a_run_under_python_o_leaves_the_next_plain_runs_asserts_alone(package):
    """`python -O` (PYTHONOPTIMIZE) compiles without asserts and `__debug__` blocks, into
    Python's own `.opt-1.pyc`: a file of ours written then must not serve a plain run."""
    assert probe(package, PYTHONOPTIMIZE="1")["asserted"] is False  # as Python -O does
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{package}", "PYTHONPYCACHEPREFIX": str(package / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    warm = subprocess.run([sys.executable, "-O", "-c", "from executor import codecachewarm, nodocs; nodocs.install(); "
                           "import probepkg.mod; codecachewarm.write_loaded(); codecachewarm.write_packages(['probepkg'])"],
                          cwd=package, env=env, capture_output=True, text=True, timeout=60)  # an installer's, -O
    assert warm.returncode == 0, warm.stderr
    assert probe(package)["asserted"] is True


def test_the_directories_of_its_code_cache_are_never_open_to_others_whatever_the_umask(package):
    """Under a umask of 0 (a root shell's, a service manager's UMask=0000), the levels of
    `nodoc/` a start makes are 0755, as the attrs code cache's (`codecachewrite.write`). Was:
    0777, Python's own `set_data`, and another user could plant a module's file there (its
    header is the source's mtime and size, which anyone may read): root's next start ran it."""
    cache = package / "cache"
    cache.mkdir(mode=0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")}
    environ.update(PYTHONPATH=f"{REPO}{os.pathsep}{package}", STOKER_CODE_CACHE=str(cache))
    result = subprocess.run([sys.executable, "-c", "import os; os.umask(0)\n" + PROBE], cwd=package, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    mirrored = cache / "nodoc" / str(package / "probepkg").lstrip(os.sep)
    assert list(mirrored.glob("mod.*.opt-nodoc4.pyc"))  # written, under the umask of 0
    made = mirrored.relative_to(cache)
    levels = [cache / level for level in (made, *made.parents[:-1])]  # each level made, to `nodoc`
    open_levels = {str(level): oct(level.stat().st_mode & 0o777) for level in levels if level.stat().st_mode & 0o022}
    assert open_levels == {}


def test_install_lets_go_of_the_docstrings_of_stokers_modules_loaded_before_it():
    probe = ("import json, sys, executor.cli.start\n"
             "from executor import nodocs\n"
             "before = [executor.cli.start.__doc__ is not None, nodocs.__doc__ is not None]\n"
             "nodocs.install()\n"
             "print(json.dumps({'before': before, 'after': [executor.__doc__, executor.cli.start.__doc__,"
             " nodocs.__doc__], 'json': json.__doc__ is not None}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "STOKER_CODE_CACHE": ""})
    assert result.returncode == 0, result.stderr
    # was: the entry point's and nodocs' own, 24 KB held by every command for its whole life
    assert json.loads(result.stdout) == {"before": [True, True], "after": [None, None, None], "json": True}


@pytest.mark.parametrize("spelling", ["", "/"], ids=["link", "link/"])
def test_a_code_cache_directory_that_is_a_symlink_keeps_no_nodoc_tree_however_spelled(package, spelling):
    """The code cache directory above `nodoc/` must be no symlink (docs/design.md §9). Was:
    `STOKER_CODE_CACHE=/path/link/` passed, as lstat follows a trailing slash's link, and
    the docstring-less code was kept under the directory it leads to."""
    (package / "cache").mkdir(mode=0o755)
    (package / "link").symlink_to(package / "cache")
    got = probe(package, STOKER_CODE_CACHE=f"{package / 'link'}{spelling}", PYTHONPYCACHEPREFIX="")
    assert got["docs"] == ["The module's docstring.", "The function's docstring."], got
    assert list((package / "cache").iterdir()) == []
