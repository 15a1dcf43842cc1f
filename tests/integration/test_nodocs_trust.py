"""`executor.nodocs`: the files under the code cache's `nodoc/` are code root runs, so one
another user could have put there is never read (root only: the plants are nobody's).

A `nodoc/` tree made before its levels were 0755 (under a umask of 0, Python's mkdir gave
0777) stays open: nobody could put a module's file there (its header is the source's mtime
and size, which anyone may read), and root's next start ran it. Each case plants as nobody
in such a tree, or a file of nobody's in a closed one, then root's next start must load the
module as Python does (its `.pyc`, docstrings kept) and run nothing of nobody's; the warm
step (`python -m executor.codecache`) moves such a tree aside and writes it again.
"""
from __future__ import annotations

import contextlib
import json
import marshal
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.util import MAGIC_NUMBER
from pathlib import Path

import pytest

from executor import codecachewarm
from tests.integration.test_nodocs_loader import MODULE, PROBE
from tests.support.stoker_proc import REPO
from tests.support.users import as_nobody, needs_root, open_sandbox

pytestmark = [pytest.mark.timeout(120), needs_root]

NOBODY = 65534


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory nobody may reach (not write): the package and the code cache in it."""
    with open_sandbox() as where:
        where.chmod(0o755)
        (where / "probepkg").mkdir()
        (where / "probepkg" / "__init__.py").write_text("")
        (where / "probepkg" / "mod.py").write_text(MODULE)
        (where / "cache").mkdir(mode=0o755)
        yield where


def start(where: Path, script: str = PROBE) -> dict:
    """root's start: the loader installed, the code cache in `where`, no pycache prefix."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")}
    environ.update(PYTHONPATH=f"{REPO}{os.pathsep}{where}", STOKER_CODE_CACHE=str(where / "cache"))
    result = subprocess.run([sys.executable, "-c", script], cwd=where, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]) if script is PROBE else {}


def kept_file(where: Path) -> Path:
    mirrored = where / "cache" / "nodoc" / str(where / "probepkg").lstrip(os.sep)
    return mirrored / f"mod.{sys.implementation.cache_tag}.opt-nodoc4.pyc"


def planted_code(where: Path) -> bytes:
    """A file as ours would be for mod.py (its header the source's mtime and size), whose
    code also writes `ran` with the uid it ran as."""
    info = (where / "probepkg" / "mod.py").stat()
    header = (MAGIC_NUMBER + bytes(4) + (int(info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
              + (info.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    source = MODULE + f"\nimport os as _os\nopen({str(where / 'ran')!r}, 'w').write(str(_os.geteuid()))\n"
    return header + marshal.dumps(compile(source, str(where / "probepkg" / "mod.py"), "exec"))


def open_old_tree(where: Path) -> None:
    """Every level of `nodoc/` 0777, as a start under a umask of 0 made them before 1371c01."""
    for directory, _, _ in os.walk(where / "cache" / "nodoc"):
        os.chmod(directory, 0o777)


def renamed_in_as_nobody(path: Path, make: Callable[[Path], object]) -> None:
    """As nobody: `make` a temporary beside `path`, renamed over it."""
    def ask() -> str:
        temporary = path.with_name("planted.tmp")
        make(temporary)
        os.rename(temporary, path)
        return "planted"

    assert as_nobody(ask) == "planted"


def plant_file(where: Path) -> None:
    data = planted_code(where)
    renamed_in_as_nobody(kept_file(where), lambda temporary: temporary.write_bytes(data))


def plant_symlink(where: Path) -> None:
    """A link to a file of root's whose content nobody chose (a task's log, as root writes it)."""
    log = where / "log"
    log.write_bytes(planted_code(where))
    renamed_in_as_nobody(kept_file(where), lambda temporary: temporary.symlink_to(log))


def plant_directory(where: Path) -> None:
    """nobody's own level in place of ours, holding its file."""
    data, path = planted_code(where), kept_file(where)

    def ask() -> str:
        os.rename(path.parent, path.parent.with_name("ours-aside"))
        path.parent.mkdir()
        path.write_bytes(data)
        return "planted"

    assert as_nobody(ask) == "planted"


def plant_owner(where: Path) -> None:
    """A closed tree (0755 levels) whose file is nobody's (a leftover of theirs)."""
    path = kept_file(where)
    path.write_bytes(planted_code(where))
    os.chown(path, NOBODY, NOBODY)


@pytest.mark.parametrize("plant", [plant_file, plant_symlink, plant_directory, plant_owner],
                         ids=["file", "symlink", "directory", "owner"])
def test_a_file_another_user_could_have_put_in_nodoc_is_never_run(place, plant):
    """Was: root's start loaded it (`ran` holding 0) in each case."""
    assert start(place)["docs"] == [None, None]  # our file written
    assert kept_file(place).is_file()
    if plant is not plant_owner:
        open_old_tree(place)
    plant(place)
    again = start(place)
    assert not (place / "ran").exists(), f"root ran nobody's code: uid {(place / 'ran').read_text()}"
    assert again["docs"] == ["The module's docstring.", "The function's docstring."]  # Python's own .pyc
    assert again["answer"] == 42


def test_the_warm_step_moves_an_open_tree_aside_and_writes_it_again(place, capsys):
    start(place)
    open_old_tree(place)
    plant_file(place)
    nodoc = place / "cache" / "nodoc"
    assert codecachewarm.rebuild_open_tree(str(place / "cache")) == str(nodoc)  # its top level, 0777
    assert "written again" in capsys.readouterr().err
    assert sorted(p.name for p in (place / "cache").iterdir()) == []  # moved aside, then removed
    start(place, "from executor import codecachewarm, nodocs\nnodocs.install()\nimport probepkg.mod\n"
                 "codecachewarm.write_loaded()")  # as the installer's step: the module has its .pyc now
    assert start(place)["docs"] == [None, None]
    assert not (place / "ran").exists()
    assert codecachewarm.open_level(str(nodoc)) == ""
    assert codecachewarm.rebuild_open_tree(str(place / "cache")) == ""  # a closed tree stays


def test_the_warm_step_writes_nothing_others_may_write_whatever_the_umask():
    """An installer's `python -P -m executor.codecache` under a umask of 0: Python made
    `executor/__pycache__` 0777 at `import executor`, before any line of ours, and the warm
    step wrote root's code there (and Python's `.pyc` of what it loaded in other packages'
    new `__pycache__`, 0777 too). Now it says so and writes nothing; once closed, all it
    makes is 0755 or 0644 at most, under the same umask."""
    with open_sandbox() as where:
        for package in ("executor", "config", "healthcheck"):
            shutil.copytree(REPO / package, where / package, ignore=shutil.ignore_patterns("__pycache__"))
        environ = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "STOKER_CODE_CACHE")}
        environ["PYTHONPATH"] = str(where)

        def warm() -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-P", "-m", "executor.codecache", "cli"], cwd=where, env=environ,
                                  preexec_fn=lambda: os.umask(0), capture_output=True, text=True, timeout=120)

        pycache = where / "executor" / "__pycache__"
        first = warm()
        assert first.returncode == 1 and f"{pycache} (mode 777)" in first.stderr, first.stderr
        assert not list(pycache.glob("attrs-*"))
        pycache.chmod(0o755)
        second = warm()
        assert second.returncode == 0, second.stderr
        assert list(pycache.glob("attrs-cli.*.bin")) and list((where / "config" / "__pycache__").glob("*.opt-nodoc4.pyc"))
        assert [str(p) for p in where.rglob("*") if p.lstat().st_mode & 0o022 and not p.is_symlink()] == []


def test_the_warm_step_removes_a_symlink_in_nodoc_s_place(tmp_path, capsys):
    """Was: moved aside and left there for good (rmtree refuses a symlink, its error ignored),
    as the line said `written again`; where it leads is not touched."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "kept").write_text("")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "nodoc").symlink_to(tmp_path / "elsewhere")
    assert codecachewarm.rebuild_open_tree(str(tmp_path / "cache")) == str(tmp_path / "cache" / "nodoc")
    assert "written again" in capsys.readouterr().err
    assert list((tmp_path / "cache").iterdir()) == [] and (tmp_path / "elsewhere" / "kept").exists()


def test_the_warm_step_removes_the_trees_an_earlier_one_left_aside(tmp_path):
    """Was: a `nodoc.PID.HEX.old` an earlier step could not remove (killed as it removed it,
    or another user still writing into it) stayed for good."""
    cache = tmp_path / "cache"
    (cache / "nodoc").mkdir(parents=True, mode=0o755)
    left = cache / f"nodoc.12345.{os.urandom(4).hex()}.old"
    (left / "deeper").mkdir(parents=True)
    (left / "deeper" / "mod.pyc").write_bytes(b"")
    (cache / "nodoc.kept").mkdir()  # not a tree the step moved aside
    assert codecachewarm.rebuild_open_tree(str(cache)) == ""  # nodoc/ itself is closed: left as it is
    assert sorted(p.name for p in cache.iterdir()) == ["nodoc", "nodoc.kept"]


# Python 3.13's rmtree walks a tree with a list of its own, not by recursing: it removes one
# of any depth; 3.11's and 3.12's recurse once per level
RMTREE_RECURSES = sys.version_info < (3, 13)


def test_a_tree_too_deep_for_rmtree_is_said_not_removed_and_the_step_goes_on(tmp_path, capsys):
    """An open `nodoc/` another user filled with 1,500 nested levels, moved aside: Python
    3.11's rmtree recurses once per level (RecursionError), and the warm step ended in a
    traceback; retried by every later step (it removes the trees left aside), every one did.
    Where rmtree does not recurse (3.13), the tree is removed at the first step, with no word."""
    cache = tmp_path / "cache"
    (cache / "nodoc").mkdir(parents=True, mode=0o755)
    left = cache / f"nodoc.12345.{os.urandom(4).hex()}.old"
    deepest = left
    try:
        left.mkdir()
        for _ in range(1500):  # (os.makedirs recurses once per level too)
            deepest = deepest / "a"
            deepest.mkdir()
        for _ in range(2):
            assert codecachewarm.rebuild_open_tree(str(cache)) == ""
            said = f"stoker: {left}: not removed (too deep): nothing reads it\n" if RMTREE_RECURSES else ""
            assert capsys.readouterr().err == said
            assert left.exists() is RMTREE_RECURSES
    finally:
        while deepest != cache:
            with contextlib.suppress(OSError):
                deepest.rmdir()
            deepest = deepest.parent


def test_nothing_under_nodoc_is_read_when_the_package_s_pycache_above_it_is_open(place):
    """The default code cache directory, the package's `__pycache__`, others may write (a
    package unpacked under a umask of 0): was not looked at, as the levels below it are; its
    `nodoc/` files were read. Now the module loads as Python loads it."""
    for package in ("executor", "config", "healthcheck"):
        shutil.copytree(REPO / package, place / package, ignore=shutil.ignore_patterns("__pycache__"))
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "STOKER_CODE_CACHE")}
    environ["PYTHONPATH"] = str(place)

    def docs() -> list:
        done = subprocess.run([sys.executable, "-c", PROBE], cwd=place, env=environ, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])["docs"]

    assert docs() == [None, None]  # its file written, under executor/__pycache__/nodoc/
    assert list((place / "executor" / "__pycache__" / "nodoc").rglob("mod.*.opt-nodoc4.pyc"))
    (place / "executor" / "__pycache__").chmod(0o777)
    assert docs() == ["The module's docstring.", "The function's docstring."]  # Python's own .pyc
