"""What `pip install` and `make dist` put in the wheel, checked against the source tree
without building anything (tests/e2e/test_dist.py builds and runs the artifacts).

setup.py's find_packages() takes a directory only when it has an `__init__.py`, and
package_data takes a file that is not Python only when a glob names it: a subpackage or a
data file that misses either runs from the checkout (and in `make`'s editable install)
but is not in the wheel or the zipapp. The declared dependencies are exactly the
third-party distributions the product imports, and `stoker --version` is setup.py's,
stamped with the commit it was built from.
"""
from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import executor

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("executor", "healthcheck", "config")


def setup_keywords() -> dict[str, object]:
    """setup()'s keyword arguments in setup.py that are plain literals."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    [call] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"]
    found = {}
    for keyword in call.keywords:
        try:
            found[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:  # find_packages(...), not a literal
            continue
    return found


def product_sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


# An import statement at the start of a line (lazy ones inside functions too): a regular
# expression, since parsing every module would cost a second of the suite.
IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([A-Za-z_][\w., \t]*))", re.M)


def third_party_imports() -> dict[str, set[str]]:
    """Top-level name → the product files importing it, for everything imported that is
    neither the standard library nor Stoker's own."""
    found: dict[str, set[str]] = {}
    for path in product_sources():
        for source, names in IMPORT.findall(path.read_text()):
            for name in [source] if source else names.split(","):
                top = name.split(" as ")[0].strip().split(".")[0]
                if top and top not in sys.stdlib_module_names and top not in PACKAGES and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_directory_with_python_files_is_a_package_find_packages_takes():
    directories = {p.parent for p in product_sources()}
    assert sorted(str(d.relative_to(ROOT)) for d in directories if not (d / "__init__.py").is_file()) == []


def test_every_file_that_is_not_python_is_named_by_package_data():
    globs: dict[str, list[str]] = setup_keywords()["package_data"]  # type: ignore[assignment]
    data = [p for package in PACKAGES for p in (ROOT / package).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "the IDL (config/aurora/aurora.thrift) at least"
    unlisted = []
    for path in data:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        if not any(fnmatch.fnmatch(path.name, glob) for glob in globs.get(package, [])):
            unlisted.append(str(path.relative_to(ROOT)))
    assert unlisted == [], "not in the wheel: add them to setup.py's package_data"


def test_the_declared_dependencies_are_exactly_what_the_product_imports():
    requires: list[str] = setup_keywords()["install_requires"]  # type: ignore[assignment]
    declared = {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requires}
    providers = importlib.metadata.packages_distributions()
    imported = third_party_imports()
    undeclared = {name: files for name, files in imported.items()
                  if not {d.lower() for d in providers.get(name, [])} & declared}
    assert undeclared == {}, "imported by the product but not in setup.py's install_requires"
    used = {d.lower() for name in imported for d in providers.get(name, [])}
    assert sorted(declared - used) == [], "in install_requires but imported by nothing Stoker runs"


def setup_version_function(here: Path) -> Callable[[], str]:
    """setup.py's `build_version`, as if setup.py were in `here` (setup.py runs setup() when
    imported: its constants and that function are taken out of it)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    kept = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and "setuptools" not in ast.unparse(n)
            or isinstance(n, ast.FunctionDef) and n.name in ("git", "sdist_version", "build_version")
            or isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "BASE_VERSION"]
    space: dict[str, object] = {"HERE": str(here)}
    exec(compile(ast.Module(body=kept, type_ignores=[]), "setup.py", "exec"), space)
    return space["build_version"]  # type: ignore[return-value]


def test_stoker_version_is_the_wheels_stamped_with_its_commit(tmp_path, monkeypatch):
    """Every build was 0.1.0: `stoker --version` could not tell an operator which one ran."""
    monkeypatch.delenv("STOKER_BUILD_VERSION", raising=False)
    stamped = setup_version_function(ROOT)()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=7", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert re.fullmatch(rf"{re.escape(executor.BASE_VERSION)}\+g{commit}[0-9a-f]*(\.dirty)?", stamped), stamped
    (tmp_path / "executor").mkdir()
    assert setup_version_function(tmp_path)() == executor.BASE_VERSION == "0.1.0"  # no git: 0.1.0
    monkeypatch.setenv("STOKER_BUILD_VERSION", "0.1.0+gfeedbee")  # tools/build_dist.py's copy
    assert setup_version_function(tmp_path)() == "0.1.0+gfeedbee"
    assert executor.version() == executor.__version__ == "0.1.0"  # a checkout run in place: no stamp


def test_the_development_venv_records_no_commit_for_its_editable_install():
    """`make`'s editable install was stamped with the commit of the day it was made, which
    pip went on reporting (`pip show stoker`: 0.1.0+g5676995 on a checkout at e1d040d), and
    test_cli_conventions' test_version compared `stoker --version` (0.1.0 run from a
    checkout) with it: it is made with the base version, as `stoker --version` says there."""
    # tools/make_venv.py makes .venv (and .venv-3.N): every step of it, the editable installs of
    # the test extra and of any other (make dist, mutation, fuzz) among them, under the base
    # version: each made pip record that day's commit again
    tool = (ROOT / "tools/make_venv.py").read_text()
    assert f'BUILD_VERSION = "{executor.BASE_VERSION}"' in tool
    assert 'env={**os.environ, "STOKER_BUILD_VERSION": BUILD_VERSION}' in tool
    assert '"pip", "install", "-q", "-e", ".[test]"' in tool
    # and the Makefile's own, .venv-oldest's
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install -q" in line and " -e " in line]
    assert installs and all(f"STOKER_BUILD_VERSION={executor.BASE_VERSION} " in line for line in installs)


def test_a_tree_inside_another_repository_is_not_stamped_with_its_commit(tmp_path, monkeypatch):
    """A tarball unpacked inside another project's repository (vendored) was stamped with
    that project's commit: `git -C` finds the enclosing repository."""
    monkeypatch.delenv("STOKER_BUILD_VERSION", raising=False)
    outer = tmp_path / "project"
    (outer / "vendor/stoker/executor").mkdir(parents=True)
    git = ["git", "-C", str(outer), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "theirs"], check=True)
    assert setup_version_function(outer / "vendor/stoker")() == "0.1.0"


def test_a_wheel_built_from_an_sdist_keeps_the_sdists_version(tmp_path, monkeypatch):
    """pip install stoker-0.1.0+g1a2b3c4.tar.gz builds its wheel from the unpacked sdist,
    which has no .git: the wheel said 0.1.0 (its PKG-INFO has the stamp)."""
    monkeypatch.delenv("STOKER_BUILD_VERSION", raising=False)
    (tmp_path / "executor").mkdir()
    (tmp_path / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: stoker\nVersion: 0.1.0+g1a2b3c4.dirty\n")
    assert setup_version_function(tmp_path)() == "0.1.0+g1a2b3c4.dirty"


def setup_build_py() -> type:
    """setup.py's build_py command (FreshBuildPy), stamping the version 0.1.0+gfeedbee."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    kept = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
            or isinstance(n, ast.ClassDef) and n.name == "FreshBuildPy"
            or isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "TOP_PACKAGES"]
    space: dict[str, object] = {"VERSION": "0.1.0+gfeedbee"}
    exec(compile(ast.Module(body=kept, type_ignores=[]), "setup.py", "exec"), space)
    return space["FreshBuildPy"]  # type: ignore[return-value]


def test_an_editable_install_is_stamped_with_no_version_and_a_wheel_is(tmp_path, monkeypatch):
    """setuptools (>= 64) copies nothing into build_lib for an editable install (make's
    venv): writing executor/_version.py there failed, and every `pip install -e` printed the
    traceback. The checkout runs unstamped (0.1.0); a wheel's build_lib gets the stamp.
    (A venv of Python 3.12 or later has no setuptools: make test-pythons' skip it.)"""
    pytest.importorskip("setuptools", minversion="64")
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)  # setup.py's package_dir is the checkout
    for editable in (True, False):
        build_lib = tmp_path / f"editable-{editable}"
        command = setup_build_py()(Distribution({"name": "stoker", "packages": ["executor"],
                                                  "package_dir": {"": "."}, "script_name": "setup.py"}))
        command.build_lib, command.editable_mode = str(build_lib), editable
        command.ensure_finalized()
        command.run()
        stamp = build_lib / "executor/_version.py"
        assert stamp.exists() is not editable, editable
    assert "VERSION = '0.1.0+gfeedbee'" in stamp.read_text()
    assert not (ROOT / "executor/_version.py").exists()


def test_the_oldest_python_is_the_same_everywhere_it_is_named():
    """setup.py's python_requires, the zipapp's own check and the Python its dependencies
    are resolved for: a change to one alone would give a wheel or a zipapp that starts on a
    Python the other refuses or was not built for."""
    oldest = setup_keywords()["python_requires"]
    assert oldest == ">=3.11"
    zipapp_main = (ROOT / "tools/zipapp_main.py").read_text()
    assert "if sys.version_info < (3, 11):" in zipapp_main and "needs Python 3.11 or newer" in zipapp_main
    assert 'TARGET_PYTHON = "3.11"' in (ROOT / "tools/build_dist.py").read_text()
    assert 'python_version = "3.11"' in (ROOT / "pyproject.toml").read_text()  # what mypy checks against


def lower_bounds(requirements: list[str]) -> dict[str, str]:
    """Each requirement's lowest admitted version (its `>=` or `~=` bound), by normalized
    name; an exact pin (`ruff==0.17.6`) has no range to test the bottom of. A `>` bound names
    no version to pin: AssertionError."""
    found = {}
    for text in requirements:
        requirement = Requirement(text)
        for spec in requirement.specifier:
            assert spec.operator != ">", f"{text}: a `>` bound has no oldest version to pin; write `>=`"
            if spec.operator in (">=", "~="):
                found[canonicalize_name(requirement.name)] = spec.version
    return found


def test_each_lower_bound_is_read_whatever_its_spelling():
    """The pin check read `name>=version` alone: `attrs ~= 23.1`, `attrs >= 23.1` or an
    extra's `name[x]>=1` was no bound (no pin needed, the bottom never tested), a marker was
    taken into the version, `Pytest_Timeout` was another name than its pin's."""
    assert lower_bounds(["attrs ~= 23.1", "kazoo >= 2.9", "waitress[docs]>=3.0", "shiv>=1.0.4,<2",
                         "tomli>=1.1; python_version < '3.12'", "Pytest_Timeout>=2.2", "ruff==0.17.6",
                         "types-requests", "psutil<8"]) == {
        "attrs": "23.1", "kazoo": "2.9", "waitress": "3.0", "shiv": "1.0.4", "tomli": "1.1",
        "pytest-timeout": "2.2"}
    with pytest.raises(AssertionError, match="attrs>23.1: a `>` bound"):
        lower_bounds(["attrs>23.1"])


def test_the_oldest_versions_make_tests_with_are_setup_pys_bounds():
    """`make test-deps-oldest` installs tools/deps-oldest.txt's pins: a bound raised in
    setup.py alone would go on being tested at the old version, which pip no longer installs."""
    keywords = setup_keywords()
    extras: dict[str, list[str]] = keywords["extras_require"]  # type: ignore[assignment]
    bounds = lower_bounds([*keywords["install_requires"], *extras["test"]])  # type: ignore[misc]
    assert {"pystachio", "attrs", "kazoo", "waitress", "pytest", "psutil"} <= set(bounds)
    lines = (ROOT / "tools/deps-oldest.txt").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert [str(p) for p in pins if [s.operator for s in p.specifier] != ["=="]] == [], "each line name==version"
    assert {canonicalize_name(p.name): Version(next(iter(p.specifier)).version) for p in pins} == \
        {name: Version(v) for name, v in bounds.items()}
