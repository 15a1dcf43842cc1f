"""`executor.codebundle`: where a module is found after the start, in real interpreters: a
package that changed its `__path__`, a subpackage, `sys.path` changed or a working directory
changed after the start, a relative entry, a source removed meanwhile, a config's own import, a
second install, a one-file module of that name earlier on the path. The bundles and fixtures
are test_codebundle.py's.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.integration.test_codebundle import FORGOTTEN, MOVED, READ, WRITE, module, read, run, where  # noqa: F401  (its fixture `where` too)

pytestmark = pytest.mark.timeout(120)


def test_a_submodule_of_a_package_that_changed_its_path_is_found_there(where: Path) -> None:  # noqa: F811
    """A package whose `__init__` puts another directory first on its `__path__`: its
    submodule is looked for there, as the path finder would, not served from the bundle."""
    run(where, WRITE, "src")
    (where / "src" / "probepkg" / "__init__.py").write_text(
        f"__path__.insert(0, {str(where / 'other' / 'probepkg')!r})\n")
    answer = read(where, "src")
    assert (answer["answer"], answer["loader"]) == (7, "NoDocLoader")


def test_a_subpackage_is_served_from_the_bundle_too(where: Path) -> None:  # noqa: F811
    """A package inside a package is found under its parent's directory, as the path finder
    finds it: served, without its docstring."""
    (where / "src" / "probepkg" / "sub").mkdir()
    (where / "src" / "probepkg" / "sub" / "__init__.py").write_text(module(5))
    assert run(where, WRITE.replace('["probepkg", "probepkg.mod"]', '["probepkg", "probepkg.mod", "probepkg.sub"]')
               .replace("import probepkg.mod", "import probepkg.mod, probepkg.sub"), "src").split() == ["3"]
    said = run(where, READ.replace("from probepkg import mod", "from probepkg import sub as mod")
               .replace('get_code("probepkg.mod")', 'get_code("probepkg.sub")'), "src")
    answer = json.loads(said.splitlines()[-1])
    assert (answer["answer"], answer["loader"], answer["doc"], answer["damaged"]) == (5, "CodeBundleLoader", None, "")


def test_a_top_level_module_is_found_where_sys_path_now_has_it(where: Path) -> None:  # noqa: F811
    """`sys.path` changed after `install()` (an entry put first): a top-level module is found
    as the path finder finds it, there, not served."""
    run(where, WRITE, "src")
    change = f"sys.path.insert(0, {str(where / 'other')!r})"
    assert run(where, MOVED.format(change=change), "src").split() == ["7", "NoDocLoader", "NoDocLoader"]


def test_a_source_removed_after_the_start_began_is_not_served(where: Path) -> None:  # noqa: F811
    """A module whose source is gone as it is imported is not found, as Python finds none."""
    run(where, WRITE, "src")
    change = f"os.remove({str(where / 'src' / 'probepkg' / 'mod.py')!r})"
    assert run(where, MOVED.format(change=change), "src").split() == ["ImportError"]


def test_a_relative_entry_of_sys_path_is_served_while_the_working_directory_is_the_same(where: Path) -> None:  # noqa: F811
    """`sys.path` with an entry relative to the working directory (`src`), the same since the
    start: its modules are served."""
    run(where, WRITE, "src")
    relative = MOVED.replace("assert codebundle.install()", textwrap.dedent(f"""
        sys.path[:] = ["src" if entry == {str(where / 'src')!r} else entry for entry in sys.path]
        assert codebundle.install()"""))
    assert run(where, relative.format(change=""), "src").split() == ["42", "CodeBundleLoader", "CodeBundleLoader"]


def test_a_module_a_config_imports_is_not_served(where: Path) -> None:  # noqa: F811
    """A config's own import (code in the config's namespace, `config/loader.py`'s) finds its
    module as Python does, docstring and all: never the bundle's."""
    run(where, WRITE, "src")
    change = "exec('from probepkg import mod', {'__name__': nodocs.CONFIG_NAMESPACE})"
    said = MOVED.format(change=change).replace("print(mod.answer()", "print(mod.__doc__ is not None, mod.answer()")
    assert run(where, said, "src").split() == ["True", "42", "NoDocLoader", "NoDocLoader"]



def test_a_second_install_of_the_same_bundle_reads_nothing_and_answers_as_the_first(where: Path) -> None:  # noqa: F811
    run(where, WRITE, "src")
    twice = MOVED.format(change=textwrap.dedent("""
        before = len(os.listdir("/proc/self/fd"))
        print(codebundle.install(), len(os.listdir("/proc/self/fd")) - before)"""))
    assert run(where, twice, "src").split() == ["True", "0", "42", "CodeBundleLoader", "CodeBundleLoader"]


def test_a_working_directory_changed_after_the_start_is_looked_at_only_for_a_relative_entry(where: Path) -> None:  # noqa: F811
    """With `src` relative, a start that moved to another directory (which has a `src` of its
    own) finds its modules there, as Python does; with every entry absolute, the move changes
    nothing and they are served."""
    run(where, WRITE, "src")
    (where / "elsewhere" / "src" / "probepkg").mkdir(parents=True)
    (where / "elsewhere" / "src" / "probepkg" / "__init__.py").write_text("")
    (where / "elsewhere" / "src" / "probepkg" / "mod.py").write_text(module(7))
    moved = MOVED.format(change=f"os.chdir({str(where / 'elsewhere')!r})")
    relative = moved.replace("assert codebundle.install()", textwrap.dedent(f"""
        sys.path[:] = ["src" if entry == {str(where / 'src')!r} else entry for entry in sys.path]
        assert codebundle.install()"""))
    assert run(where, relative, "src").split() == ["7", "NoDocLoader", "NoDocLoader"]
    assert run(where, moved, "src").split() == ["42", "CodeBundleLoader", "CodeBundleLoader"]


def test_a_module_file_of_that_name_earlier_on_the_path_is_the_one_imported(where: Path) -> None:  # noqa: F811
    """A top-level module of one file (`probemod.py`, not a package) in an entry the bundle does
    not know, before its own: that one is imported, as the path finder finds it."""
    (where / "src" / "probemod.py").write_text(module(42))
    (where / "other" / "probemod.py").write_text(module(7))
    write = WRITE.replace('["probepkg", "probepkg.mod"]', '["probemod"]').replace("import probepkg.mod", "import probemod")
    assert run(where, write, "src").split() == ["1"]
    said = MOVED.replace("from probepkg import mod", "import probemod as mod").replace(
        'sys.modules["probepkg"], mod', "mod,").replace("assert codebundle.install()", "codebundle.install()")
    assert run(where, said.format(change=""), "other", "src").split() == ["7", "NoDocLoader"]
    assert run(where, said.format(change=""), "src").split() == ["42", "CodeBundleLoader"]
