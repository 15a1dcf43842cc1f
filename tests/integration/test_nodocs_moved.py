"""`executor.nodocs` and `executor.codebundle` in a copy of Stoker's tree made with its files'
mtimes (`cp -a`, `rsync -a`, an image's `COPY`): the files of Stoker's own modules, kept
beside their `.pyc`, came along and still match their sources' headers, but their code was
compiled from the first tree's paths. A traceback, `inspect` and `linecache` read the
copy's files, as Python's own `.pyc` loader has them (`_imp._fix_co_filename`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)

PACKAGES = ("executor", "config", "healthcheck")

COMPILE = textwrap.dedent("""
    import sys
    from executor import codecachewarm, nodocs
    sys.dont_write_bytecode = False
    nodocs.install()
    nodocs._compile_always = True
    import config.words
""")

BUNDLE = textwrap.dedent("""
    import sys
    from executor import codecachewarm, nodocs
    sys.dont_write_bytecode = False
    nodocs.install()
    import config.words
    print(codecachewarm.write_codebundle(["config", "config.words"]))
""")

PROBE = textwrap.dedent("""
    import json, traceback
    from executor import codebundle, nodocs
    nodocs.install()
    bundled = codebundle.install()
    import config.words as words
    try:
        words.shell_word(None)
    except AttributeError as exc:
        named = traceback.extract_tb(exc.__traceback__)[-1].filename
    print(json.dumps({"loader": type(words.__spec__.loader).__name__, "file": words.__file__,
                      "code": words.shell_word.__code__.co_filename, "traceback": named}))
""")


def run(tree: Path, script: str) -> str:
    environ = {name: value for name, value in os.environ.items()
               if name not in ("PYTHONPYCACHEPREFIX", "STOKER_CODE_CACHE", "PYTHONDONTWRITEBYTECODE")}
    environ["PYTHONPATH"] = str(tree)
    result = subprocess.run([sys.executable, "-P", "-c", script], cwd=tree, env=environ, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    """A tree of Stoker's packages whose files were compiled there, copied as `cp -a` copies it."""
    first = tmp_path / "first"
    for package in PACKAGES:
        shutil.copytree(REPO / package, first / package, ignore=shutil.ignore_patterns("__pycache__"))
    run(first, COMPILE)
    shutil.copytree(first, tmp_path / "copy")  # (copy2: the mtimes kept, so the files still match)
    return tmp_path / "copy"


@pytest.mark.parametrize("bundle", [False, True], ids=["nodocs", "bundle"])
def test_a_copied_trees_code_names_the_copys_files(copied: Path, bundle: bool) -> None:
    if bundle:
        assert run(copied, BUNDLE).split() == ["2"]
    answer = json.loads(run(copied, PROBE).splitlines()[-1])
    assert answer["loader"] == ("CodeBundleLoader" if bundle else "NoDocLoader")
    source = str(copied / "config" / "words.py")
    assert (answer["file"], answer["code"], answer["traceback"]) == (source, source, source)
