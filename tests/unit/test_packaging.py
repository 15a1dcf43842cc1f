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
    makefile = (ROOT / "Makefile").read_text()
    assert f"STOKER_BUILD_VERSION={executor.BASE_VERSION} $(BIN)/python -m pip install -q -e '.[test]'" in makefile
    # and so is every later editable install of an extra (make dist, mutation, fuzz): each
    # made pip record that day's commit again
    installs = [line for line in makefile.splitlines() if "pip install -q -e" in line]
    assert len(installs) >= 4 and all(f"STOKER_BUILD_VERSION={executor.BASE_VERSION} " in line for line in installs)


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
