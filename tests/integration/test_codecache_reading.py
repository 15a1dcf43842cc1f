"""`executor.codecache` in this process: why a file is ignored (its one DEBUG line), the
bounds of its size, a compile step's mode and flags, `also`'s other profile, and a save past
MAX_ENTRIES. No attrs class is made here: the cache under test is one of the test's own
(`codecache._Cache`), put in place of the process's for the calls that read it. `install`
itself, which serves attrs' steps, runs in a process of its own; a file of root's is read as
nobody in a forked child."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from executor import codecache
from tests.integration.test_codecache import entries_of, write_entries
from tests.support.stoker_proc import REPO
from tests.support.users import as_nobody, open_sandbox

pytestmark = pytest.mark.timeout(30)
TAG = sys.implementation.cache_tag


def code(text: str = "x = 1") -> object:
    return compile(text, "<probe>", "exec")


def ignored_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "executor.codecache" and r.levelno == logging.DEBUG]


@pytest.fixture
def debug(caplog):
    caplog.set_level(logging.DEBUG, logger="executor.codecache")
    return caplog


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    """A cache of the test's own, as `install("run")` would have made it in tmp_path, in a
    process that writes bytecode (the suite's may be told not to)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    cache = codecache._Cache(tmp_path / f"attrs-run.{TAG}.bin", {})
    monkeypatch.setattr(codecache, "_cache", cache)
    return cache


# each: what is put in the file's place, and the reason its DEBUG line gives
def _damaged(path):
    path.write_bytes(codecache.HEADER + b"\x00not marshal")
    return "bad marshal data (unknown type code)"


def _former_header(path):
    write_entries(path, {"<a>": (("x = 1", code()),)}, header=b"stoker attrs code 2 " + codecache.HEADER[20:])
    return f"not this build's FORMAT {codecache.FORMAT} file"


def _wrong_shape(path):
    write_entries(path, {"<a>": ()})  # a name with no source
    return f"not this build's FORMAT {codecache.FORMAT} file"


def _directory(path):
    path.mkdir()
    return "not a regular file"


def _open_to_anyone(path):
    write_entries(path, {"<a>": (("x = 1", code()),)})
    path.chmod(0o646)
    return "writable by anyone (mode 646)"


@pytest.mark.parametrize("make", [_damaged, _former_header, _wrong_shape, _directory, _open_to_anyone])
def test_a_file_read_and_refused_is_one_debug_line_naming_it_and_why(tmp_path, debug, make):
    path = tmp_path / f"attrs-run.{TAG}.bin"
    reason = make(path)
    assert codecache._read(path) == {}
    assert ignored_lines(debug) == [f"code cache {path} ignored: {reason}"]


def test_a_missing_file_is_no_entries_and_no_line(tmp_path, debug):
    assert codecache._read(tmp_path / "absent.bin") == {}
    assert ignored_lines(debug) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_of_another_users_is_refused_by_its_uid(tmp_path, debug):
    path = tmp_path / "other.bin"
    write_entries(path, {"<a>": (("x = 1", code()),)})
    os.chown(path, 65534, 65534)
    assert codecache._read(path) == {}
    assert ignored_lines(debug) == [f"code cache {path} ignored: owned by uid 65534"]


def test_a_file_of_exactly_max_bytes_is_read_and_one_of_a_byte_more_is_not(tmp_path, debug, monkeypatch):
    path = tmp_path / "edge.bin"
    entries = {"<a>": (("x = 1", code()),)}
    write_entries(path, entries)
    size = path.stat().st_size
    monkeypatch.setattr(codecache, "MAX_BYTES", size)
    assert codecache._read(path).keys() == entries.keys()
    monkeypatch.setattr(codecache, "MAX_BYTES", size - 1)
    assert codecache._read(path) == {}
    assert ignored_lines(debug) == [f"code cache {path} ignored: larger than {size - 1} bytes"]


def test_a_file_whose_size_says_0_is_read_to_its_end_and_no_further_than_the_bound(debug, monkeypatch):
    # /proc's files are regular files of size 0 (of this user's, or root's): read a MiB at a time
    path = f"/proc/{os.getpid()}/smaps"
    assert codecache._own_bytes(path).count(b"\n") > 20  # the whole of it, not the byte its size allowed
    monkeypatch.setattr(codecache, "MAX_BYTES", 100)
    with pytest.raises(ValueError, match="^larger than 100 bytes$"):
        codecache._own_bytes(path)


def test_a_compile_step_with_flags_of_its_own_does_not_inherit_this_modules_future(own_cache):
    # codecache.py has `from __future__ import annotations`: its own step's code takes it,
    # one given flags (typing's, `compileserved`) takes those alone
    script = "def f(x: int): pass"
    spaces: list[dict] = [{}, {}]
    exec(own_cache.code_for(script, "<own>"), spaces[0])
    exec(own_cache.code_for(script, "<given>", "exec", 0), spaces[1])
    assert spaces[0]["f"].__annotations__ == {"x": "int"}
    assert spaces[1]["f"].__annotations__ == {"x": int}


def test_an_eval_source_is_served_only_whole_and_apart_from_a_script_of_its_name(own_cache):
    first = own_cache.code_for("hash((12, 3))", "<ann>", "eval", 0)
    assert eval(first) == hash((12, 3))
    key, source, _ = own_cache.fresh[0]
    assert (key, source) == ("<ann> (eval 0) hash((12, 3))", "hash((12, 3))")  # no `#` for its number
    own_cache.loaded = {k: ((s, c),) for k, s, c in own_cache.fresh}
    assert own_cache.code_for("hash((12, 3))", "<ann>", "eval", 0) is first
    assert eval(own_cache.code_for("hash((99, 3))", "<ann>", "eval", 0)) == hash((99, 3))
    assert eval(own_cache.code_for("hash((12, 3))", "<ann>", "eval", 1 << 24)) == hash((12, 3))  # other flags
    assert own_cache.hits == 1 and len(own_cache.fresh) == 3


def test_a_script_is_served_whatever_its_hash_term_and_each_kept_source_once(own_cache):
    cached = code("h = hash((1, 2))")
    own_cache.loaded = {"<m>": (("h = hash((#, 2))", cached), ("h = hash((#, 2))", code()))}
    assert own_cache.code_for("h = hash((-5, 2))", "<m>") is cached
    assert own_cache.served == [("<m>", hash("h = hash((#, 2))"))]
    assert len(own_cache.loaded["<m>"]) == 1  # the one served is not held once served
    assert own_cache.code_for("h = hash((7, 3))", "<m>") not in (cached,)
    assert (own_cache.hits, [f[:2] for f in own_cache.fresh]) == (1, [("<m>", "h = hash((#, 3))")])


def test_also_adds_the_other_profiles_names_and_keeps_the_installed_ones(own_cache, tmp_path):
    mine = (("x = 1", code()),)
    own_cache.loaded = {"<shared>": mine}
    write_entries(tmp_path / f"attrs-plan.{TAG}.bin",
                  {"<shared>": (("x = 2", code("x = 2")),), "<planned>": (("y = 1", code("y = 1")),)})
    environ = {"STOKER_CODE_CACHE": str(tmp_path)}
    codecache.also("nonsense", environ)
    codecache.also("plan", {"STOKER_CODE_CACHE": "off"})
    assert own_cache.loaded == {"<shared>": mine}
    codecache.also("plan", environ)
    assert own_cache.loaded["<shared>"] is mine
    assert [s for s, _ in own_cache.loaded["<planned>"]] == ["y = 1"]


def test_also_without_an_installed_cache_reads_nothing(monkeypatch, tmp_path, debug):
    monkeypatch.setattr(codecache, "_cache", None)
    (tmp_path / f"attrs-plan.{TAG}.bin").write_bytes(b"damaged")
    codecache.also("plan", {"STOKER_CODE_CACHE": str(tmp_path)})
    assert ignored_lines(debug) == []  # not even read


@pytest.mark.parametrize("names, kept", [(1, 2), (2, 1)], ids=["to-the-bound", "past-it"])
def test_a_save_past_max_entries_starts_the_file_again_with_what_it_compiled(own_cache, monkeypatch, names, kept):
    monkeypatch.setattr(codecache, "MAX_ENTRIES", 2)
    write_entries(own_cache.path, {f"<old{n}>": ((f"x = {n}", code()),) for n in range(names)})
    own_cache.code_for("z = 1", "<new>")
    assert codecache.counts() == (0, 1)
    assert codecache.save() is True
    assert len(entries_of(own_cache.path)) == kept and "<new>" in entries_of(own_cache.path)
    assert (codecache.counts(), own_cache.fresh, own_cache.compiled) == ((0, 1), [], 1)
    assert codecache.save() is False  # nothing new since
    own_cache.code_for("z = 2", "<newer>")
    assert codecache.save() is True
    assert codecache.counts() == (0, 2)  # what each save wrote, counted together


def test_a_save_when_python_writes_no_bytecode_writes_nothing(own_cache, monkeypatch):
    own_cache.code_for("z = 1", "<new>")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert codecache.save() is False
    assert not own_cache.path.exists() and len(own_cache.fresh) == 1



@pytest.mark.skipif(os.geteuid() != 0, reason="a file of root's read by another user needs root")
def test_a_file_of_roots_is_read_by_another_user(debug):
    """An installer's file (`python -m executor.codecache` as root) serves its users."""
    with open_sandbox() as where:
        where.chmod(0o755)
        path = where / "root.bin"
        write_entries(path, {"<a>": (("x = 1", code()),)})
        path.chmod(0o644)
        assert as_nobody(lambda: ",".join(codecache._read(path)) or "none") == "<a>"


INSTALLS = textwrap.dedent("""
    import json, sys
    from executor import attrssteps, codecache
    if sys.argv[1] == "refused":  # attrs' steps are not the ones the cache knows
        attrssteps.serve = lambda *args: False
    first = codecache.install("run")
    print(json.dumps([first, codecache.install("run"), codecache._cache is not None]))
""")


@pytest.mark.parametrize("mode, said", [("known", [True, True, True]), ("refused", [False, False, False])])
def test_install_serves_once_and_says_so_again_and_not_for_an_attrs_it_does_not_know(tmp_path, mode, said):
    env = {**os.environ, "STOKER_CODE_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", INSTALLS, mode], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == said
