"""`executor.codecachewarm`: the files an earlier Stoker wrote under its own tags
(`nodocs.EARLIER_TAGS`: `opt-nodoc`, `opt-nodoc2`, `opt-nodoc3`) are removed by the warm step where they are
this installation's alone, and left where another installation may still read them.

Each tag change left every module's file of the tag before beside the new one, for good: no
start reads them, and pip's upgrade removes only the files it installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor import codebundle, codecachewarm, nodocs
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)

TAGS = nodocs.EARLIER_TAGS


def earlier_files(directory: Path, module: str) -> list[Path]:
    """Files of each earlier tag for `module` (a file name without `.py`) in `directory`, made."""
    directory.mkdir(parents=True, exist_ok=True)
    made = [directory / f"{module}.{sys.implementation.cache_tag}.opt-{tag}.pyc" for tag in TAGS]
    for path in made:
        path.write_bytes(b"an earlier Stoker's code")
    return made


def cache_at(monkeypatch, own_cache: Path, used: Path, *, made: bool = True) -> Path:
    """nodocs' code cache set to `used` (`own_cache`: the package's own directory); its
    `nodoc/`, made (0755, as the step makes it) where `made`."""
    if made:
        (used / "nodoc").mkdir(parents=True)
        for level in (used, used / "nodoc"):
            os.chmod(level, 0o755)
    monkeypatch.setattr(nodocs, "CACHE_DIR", str(own_cache))
    monkeypatch.setattr(nodocs, "_elsewhere", str(used))
    monkeypatch.setattr(nodocs, "_nodoc", str(used / "nodoc"))
    monkeypatch.setattr(nodocs, "_closed", {})
    return used / "nodoc"


def test_the_warm_step_removes_the_earlier_tags_files_of_its_own_modules_only(tmp_path):
    """Under a PYTHONPYCACHEPREFIX: Stoker's module's earlier files go; the interpreter's
    module's (its `json`, which the step writes too) stay, a prefix another Stoker may share."""
    prefix = tmp_path / "pyc"
    own = earlier_files(prefix / str(REPO / "executor").lstrip(os.sep), "codecache")
    json_dir = Path(json.__file__).parent
    interpreter_s = earlier_files(prefix / str(json_dir).lstrip(os.sep), "decoder")
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path / "cache"), "PYTHONPYCACHEPREFIX": str(prefix)}
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "cli"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert warm.returncode == 0, warm.stderr
    assert list(own[0].parent.glob("codecache.*.opt-nodoc4.pyc"))  # the step wrote this module's
    assert list(interpreter_s[0].parent.glob("decoder.*.opt-nodoc4.pyc"))  # and json.decoder's
    assert [path.exists() for path in own + interpreter_s] == [False] * len(TAGS) + [True] * len(TAGS)


@pytest.mark.parametrize("cache", ["package's own", "STOKER_CODE_CACHE"])
def test_the_earlier_files_under_nodoc_go_only_from_the_package_s_own_cache(tmp_path, monkeypatch, cache):
    """An interpreter's module's files (under `nodoc/`): the package's own code cache directory
    is this installation's; a STOKER_CODE_CACHE directory may serve an older Stoker too."""
    source = tmp_path / "lib" / "mod.py"
    source.parent.mkdir()
    source.write_text("x = 1\n")
    own_cache, elsewhere = tmp_path / "package" / "__pycache__", tmp_path / "elsewhere"
    used = own_cache if cache == "package's own" else elsewhere
    cache_at(monkeypatch, own_cache, used, made=False)
    monkeypatch.setattr(nodocs, "_own", ())
    monkeypatch.setattr(sys, "pycache_prefix", None)
    kept = Path(nodocs.kept_path(str(source)))
    assert kept.is_relative_to(used / "nodoc")
    made = earlier_files(kept.parent, "mod")
    codecachewarm._remove_earlier(str(source))
    assert [path.exists() for path in made] == [cache != "package's own"] * len(TAGS)


@pytest.mark.parametrize("cache", ["package's own", "STOKER_CODE_CACHE"])
def test_the_bundle_s_file_of_its_first_name_goes_as_the_step_writes_it(tmp_path, monkeypatch, cache):
    """`nodoc/run.bundle`, the code bundle's first name (the steps of 09:24-09:36 on 2 December
    wrote it), nothing reads: it goes as the step writes `run.codebundle`, from the package's
    own cache only (as the tags' files), and a symlink of that name is unlinked, its target
    kept; no other file of `nodoc/` is touched."""
    own_cache, elsewhere = tmp_path / "package" / "__pycache__", tmp_path / "elsewhere"
    used = own_cache if cache == "package's own" else elsewhere
    nodoc = cache_at(monkeypatch, own_cache, used)
    first = nodoc / "run.bundle"
    first.write_bytes(b"the bundle under its first name")
    other = nodoc / "run.bundle.kept"
    other.write_bytes(b"not one of the step's names")
    assert codecachewarm.write_codebundle([]) == 0
    assert (nodoc / codebundle.NAME).exists()
    assert (first.exists(), other.exists()) == (cache != "package's own", True)
    if cache == "package's own":
        target = tmp_path / "target"
        target.write_bytes(b"another file")
        first.symlink_to(target)
        codecachewarm.write_codebundle([])
        assert (first.is_symlink(), target.exists()) == (False, True)


def test_the_bundles_are_named_for_the_interpreter_and_their_untagged_files_go(tmp_path, monkeypatch):
    """One checkout, two Pythons (a 3.11 and a 3.12 venv over one source tree): the bundles'
    names had no interpreter tag, so each warm step replaced the other's, whose modules'
    headers (the magic number) then matched none (a 3.11 start with 3.12's file: 0 of 99
    served). Now each is named as a `.pyc` is (`run.cpython-311.codebundle`): another
    interpreter's is left as it is, and the untagged names, which nothing reads, go."""
    own_cache = tmp_path / "package" / "__pycache__"
    nodoc = cache_at(monkeypatch, own_cache, own_cache)
    other_tag = "cpython-399" if sys.implementation.cache_tag != "cpython-399" else "cpython-398"
    others = [nodoc / f"{name}.{other_tag}.codebundle" for name in ("run", "plan")]
    untagged = [nodoc / f"{name}.codebundle" for name in ("run", "plan")]
    for path in others + untagged:
        path.write_bytes(b"another interpreter's bundle")
    assert codecachewarm.write_codebundle([]) == 0
    assert codecachewarm.write_codebundle([], codebundle.PLAN) == 0
    written = sorted(path.name for path in nodoc.iterdir())
    tag = sys.implementation.cache_tag
    assert written == sorted([f"plan.{tag}.codebundle", f"run.{tag}.codebundle", *(path.name for path in others)])
    assert all(path.read_bytes() == b"another interpreter's bundle" for path in others)
