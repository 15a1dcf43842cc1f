"""tools/build_dist.py's staging step on a checkout as a developer has it: what it copies
into the scratch directory the wheel is built in (the build itself: tests/e2e/test_dist.py)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import zipfile

import pytest

from tests.support.tools import load_tool


@pytest.fixture
def build_dist():
    return load_tool("build_dist.py", "build_dist_under_test")


def test_staging_copies_the_build_inputs_only_and_a_live_runs_socket_or_a_pipe_is_no_error(
        build_dist, tmp_path, monkeypatch):
    """A `make run` still running has its control socket in .run/; a pipe may sit anywhere.
    Copying the whole checkout failed on them (shutil.Error: a named pipe) and copied every
    sandbox's logs for nothing."""
    checkout = tmp_path / "checkout"
    files = ["setup.py", "pyproject.toml", "executor/__init__.py", "executor/cli/main.py",
             "healthcheck/__init__.py", "config/__init__.py", "config/aurora/aurora.thrift"]
    for name in [*files, "README.md", ".run/hello/.logs/hello/0/stdout", "executor/__pycache__/x.cpython-311.pyc"]:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(name)
    os.mkfifo(checkout / ".run/hello/pipe")
    os.mkfifo(checkout / "config/stray-pipe")
    (checkout / ".run/hello/.stoker").mkdir()
    (tmp_path / "scratch").mkdir()  # build() stages into a fresh temporary directory
    with socket.socket(socket.AF_UNIX) as control:
        with contextlib.chdir(checkout / ".run/hello/.stoker"):  # under pytest-xdist's popen-gwN/,
            control.bind("control.sock")  # the whole path is too long for AF_UNIX (108 bytes)
        monkeypatch.setattr(build_dist, "REPO", checkout)
        src = build_dist.stage_sources(tmp_path / "scratch")
    staged = sorted(str(p.relative_to(src)) for p in src.rglob("*") if not p.is_dir())
    assert staged == sorted(files)
    assert all((src / name).read_text() == name for name in files)


@pytest.mark.parametrize(("given", "dated"), [("1796065252", "1796065252"), (" 1796065252\n", "1796065252"),
                                              ("0", "315532800"), ("-86400", "315532800")])
def test_a_source_date_epoch_is_dated_as_a_zip_can_store_it(build_dist, tmp_path, monkeypatch, given, dated):
    """A zip entry's date runs from 1980 to 2107: wheel dated an earlier SOURCE_DATE_EPOCH
    1980-01-01, and shiv then stopped with a traceback (`ZIP does not support timestamps
    before 1980`); both now get 1980-01-01."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", given)
    assert build_dist.source_date_epoch(tmp_path) == dated


@pytest.mark.parametrize("given", ["abc", "1.5", "1e9", "4354819200"])
def test_a_source_date_epoch_no_zip_can_store_is_one_error_naming_it(build_dist, tmp_path, monkeypatch, given):
    """Not a whole number of seconds (pip printed wheel's traceback), or after 2107."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", given)
    with pytest.raises(build_dist.BuildError, match=rf"^SOURCE_DATE_EPOCH is {re.escape(repr(given))}: "):
        build_dist.source_date_epoch(tmp_path)


def test_a_tree_without_its_own_git_is_dated_by_its_newest_file(build_dist, tmp_path, monkeypatch):
    """A `git archive` tarball (its files carry the commit's time) was dated as each build
    ran, so no two builds of it were the same; unpacked inside another repository, it was
    dated by that repository's last commit. Both are now dated by the newest file."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    outer = tmp_path / "outer"
    tree = outer / "vendor/stoker"
    for name, mtime in [("setup.py", 1_700_000_000), ("executor/__init__.py", 1_700_000_100)]:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
        os.utime(tree / name, (mtime, mtime))
    monkeypatch.setattr(build_dist, "REPO", tree)
    assert build_dist.source_date_epoch(tree) == "1700000100"
    env = {**os.environ, "GIT_AUTHOR_DATE": "@1600000000 +0000", "GIT_COMMITTER_DATE": "@1600000000 +0000"}
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(outer), *argv], check=True, env=env, capture_output=True)
    assert build_dist.source_date_epoch(tree) == "1700000100"  # not the outer repository's 1600000000
    monkeypatch.setattr(build_dist, "REPO", outer)
    assert build_dist.source_date_epoch(tree) == "1600000000"  # a repository's own: its commit's


def test_the_bundle_id_is_one_per_unpacked_content_bytecode_included(build_dist, tmp_path, monkeypatch):
    """shiv unpacks a bundle into ~/.shiv/stoker.pyz_<build id> and reuses a directory of
    that name as it finds it. The id was a hash of the modules alone, not of the bytecode
    the build adds: a zipapp built by Python 3.12 ran from the directory a 3.11 build of the
    same commit had unpacked, without its own bytecode, and compiled every module as it
    started. The same bundle keeps its id; other modules or other bytecode get another."""
    raw = tmp_path / "shiv.pyz"

    def bundle(module: str, tag: str) -> str:
        with zipfile.ZipFile(raw, "w") as out:
            out.writestr("site-packages/mod.py", module)
            out.writestr("environment.json", json.dumps({"build_id": "shiv's", "entry_point": "mod:main"}))
            out.writestr("__main__.py", "shiv's")
        monkeypatch.setattr(sys.implementation, "cache_tag", tag)
        build_dist.install_main(raw, tmp_path / "stoker.pyz")
        with zipfile.ZipFile(tmp_path / "stoker.pyz") as built:
            assert f"site-packages/__pycache__/mod.{tag}.pyc" in built.namelist()
            environment = json.loads(built.read("environment.json"))
        assert environment["entry_point"] == "mod:main"
        return environment["build_id"]

    first = bundle("x = 1\n", "cpython-311")
    assert bundle("x = 1\n", "cpython-311") == first != "shiv's"
    assert len({first, bundle("x = 2\n", "cpython-311"), bundle("x = 1\n", "cpython-312")}) == 3
