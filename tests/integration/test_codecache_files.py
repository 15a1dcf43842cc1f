"""`executor.codecache`: a cache file that is not one this build wrote, and classes that
share a generated file name. Fresh processes, as in test_codecache.py (its `probe`)."""
from __future__ import annotations

import json
import marshal
import os
import resource
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor import codecache, codecachewrite
from tests.integration.test_codecache import (
    ONE_SCRIPT,
    entries_of,
    generated,
    probe,
    run_file,
    write_entries,
)
from tests.support.stoker_proc import REPO
from tests.support.users import as_nobody, open_sandbox

pytestmark = pytest.mark.timeout(120)
SPEC = generated("config.spec.ProcessSpec")


def code() -> object:
    return compile("x = 1", "<probe>", "exec")


# each a payload after this build's header: valid marshal, of a shape not the cache's
SHAPES = {
    "list": lambda entries: list(entries.items()),
    "pair_not_tuple": lambda entries: {**entries, SPEC: [entries[SPEC][0]]},
    "arity": lambda entries: {**entries, SPEC: (entries[SPEC][0] + ("extra",),)},
    "empty_kept": lambda entries: {**entries, SPEC: ()},
    "code_for_source": lambda entries: {**entries, SPEC: ((code(), entries[SPEC][0][1]),)},
    "string_for_code": lambda entries: {**entries, SPEC: ((entries[SPEC][0][0], "x = 1"),)},
    "int_value": lambda entries: {**entries, SPEC: 7},
    "bytes_name": lambda entries: {b"name": ((entries[SPEC][0]),)},
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_file_of_the_wrong_shape_is_ignored_and_written_again(tmp_path, shape):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    write_entries(path, SHAPES[shape](entries_of(path)))
    again = probe(tmp_path, 2)
    assert again["counts"] == [0, compiled] and again["saved"]
    assert again["behaviour"] == probe(tmp_path, 3, plain=True)["behaviour"]
    assert probe(tmp_path, 4)["counts"] == [compiled, 0]


@pytest.mark.parametrize("cut", [1, 2, 100])
def test_a_truncated_file_is_ignored(tmp_path, cut):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:len(codecache.HEADER) + cut])  # the header whole, its marshal cut short
    assert probe(tmp_path, 2)["counts"] == [0, compiled]


def other_python() -> str:
    """A Python of another minor version: on PATH, or installed beside this one (pyenv)."""
    ours = f"python{sys.version_info.major}.{sys.version_info.minor}"
    beside = sorted(str(p) for p in Path(sys.base_prefix).parent.glob("3.*/bin/python3.*")
                    if p.name != ours and p.name[-1].isdigit())
    for found in [shutil.which(f"python3.{minor}") for minor in (12, 13, 10)] + beside:
        if found and subprocess.run([found, "-c", ""], capture_output=True, timeout=30).returncode == 0:
            return found
    pytest.skip("no Python of another version on PATH or beside this one")


def test_a_file_of_another_python_versions_marshal_is_ignored(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    # another version's code objects, under this build's name and even its header
    entry = f"{{{SPEC!r}: (('source', compile('x = 1', 'f', 'exec')),)}}"
    script = f"import marshal, sys; sys.stdout.buffer.write(marshal.dumps({entry}))"
    payload = subprocess.run([other_python(), "-c", script], capture_output=True, timeout=30, check=True).stdout
    path.write_bytes(codecache.HEADER + payload)
    assert probe(tmp_path, 2)["counts"][1] == compiled
    path.write_bytes(payload)  # without the header: as that version would have written it
    assert probe(tmp_path, 3)["counts"] == [0, compiled]


def test_a_directory_in_the_files_place_is_ignored(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    path.unlink()
    path.mkdir()
    result = probe(tmp_path, 2)
    assert result["counts"] == [0, compiled] and not result["saved"]  # os.replace cannot replace it


def test_warm_that_cannot_write_its_file_fails(tmp_path):
    """`python -m executor.codecache run` where its file's place holds a directory: what it
    compiled is not kept, exit 1 (an installer's step that did nothing), not 0."""
    probe(tmp_path, 1)
    path = run_file(tmp_path)
    path.unlink()
    path.mkdir()
    warm = subprocess.run([sys.executable, "-m", "executor.codecache", "run"], cwd=REPO, capture_output=True,
                          env={**os.environ, "STOKER_CODE_CACHE": str(tmp_path)}, text=True, timeout=120)
    assert warm.returncode == 1, warm.stderr


def test_a_fifo_in_the_files_place_is_ignored_without_waiting(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    path.unlink()
    os.mkfifo(path)
    result = probe(tmp_path, 2)  # nobody opens it to write: a plain read would wait for ever
    assert result["counts"] == [0, compiled] and result["saved"]
    assert path.is_file() and probe(tmp_path, 3)["counts"] == [compiled, 0]  # written over it


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_another_user_owns_is_ignored_and_replaced(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    os.chown(path, 65534, 65534)
    result = probe(tmp_path, 2)
    assert result["counts"] == [0, compiled] and result["saved"]
    assert path.stat().st_uid == os.geteuid()


@pytest.mark.parametrize("mode", [0o777, 0o1777], ids=["open", "sticky"])
def test_a_directory_others_may_write_is_not_used(tmp_path, mode):
    cache = tmp_path / "cache"
    probe(cache, 1)
    cache.chmod(mode)  # its file of a start before in it, as before
    result = probe(cache, 2)
    # was: served, and another user could plant a symlink there under its name (to a log of
    # root's a task writes), or `nodoc/`: root's next start ran their code
    assert not result["installed"] and result["counts"] == [0, 0] and not result["saved"]
    if mode == 0o777:  # to be made in it: they could rename it away and put theirs in its place
        assert not probe(cache / "below", 3)["installed"]
    written = run_file(cache).name  # and its lock, by the first start
    assert sorted(p.name for p in cache.iterdir()) == [written, written.replace(".bin", ".lock")]


def test_a_missing_directory_in_a_sticky_one_is_made_by_the_first_start(tmp_path):
    """/tmp/cache after a reboot: made at once by this user, whom the sticky bit lets no one
    else rename it or what is in it. Was: the one it would be made in is open to others, so
    the cache was off, nothing made, and it stayed off for good."""
    (tmp_path / "tmp").mkdir(mode=0o1777)
    (tmp_path / "tmp").chmod(0o1777)
    cache = tmp_path / "tmp" / "cache" / "below"
    first = probe(cache, 1)
    assert first["installed"] and first["saved"]
    for level in (cache, cache.parent):
        assert (level.stat().st_uid, oct(stat.S_IMODE(level.stat().st_mode))) == (os.geteuid(), oct(0o755))
    assert probe(cache, 2)["counts"] == [first["counts"][1], 0]


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another user's needs root")
def test_a_missing_directory_another_user_made_first_in_a_sticky_one_is_not_used():
    with open_sandbox() as tmp:
        tmp.chmod(0o1777)
        assert as_nobody(lambda: str((tmp / "cache").mkdir(mode=0o755))) == "None"
        result = probe(tmp / "cache", 1)
        assert not result["installed"] and not result["saved"]
        assert list((tmp / "cache").iterdir()) == []


# A function that makes a class of the same module and name twice, with different fields:
# attrs names both classes' generated file alike.
# (attrs loaded before the cache: its own classes, served once it is installed first, not counted)
TWINS = textwrap.dedent("""
    import json
    import attrs
    from executor import codecache
    codecache.install("run")

    def make(*names):
        @attrs.define
        class Twin:
            __annotations__ = {name: int for name in names}
        return Twin

    one, two, again = make("a"), make("b", "c"), make("a")
    print(json.dumps({"counts": codecache.counts(), "saved": codecache.save(),
                      "made": [repr(one(1)), repr(two(2, 3)), repr(again(4))]}))
""")


def run_script(cache: Path, script: str, *args: str) -> dict:
    """What `script` prints, as JSON, run in a fresh process with its cache in `cache`."""
    env = {**os.environ, "STOKER_CODE_CACHE": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_classes_of_one_name_are_both_kept_and_the_file_not_rewritten(tmp_path):
    def run() -> dict:
        return run_script(tmp_path, TWINS)

    first = run()
    scripts = first["counts"][1] // 3  # a class's (attrs 24.3: 1; 23.1: one a method)
    assert first["counts"] == [0, 3 * scripts] and first["saved"]
    [path] = tmp_path.glob("attrs-run.*.bin")
    written = path.stat().st_mtime_ns
    second = run()
    # the third, the first's twin, taken its entry already: compiled again, nothing new to write
    assert second["counts"] == [2 * scripts, scripts] and not second["saved"]  # was: saved each start
    assert path.stat().st_mtime_ns == written
    assert second["made"] == first["made"] == ["Twin(a=1)", "Twin(b=2, c=3)", "Twin(a=4)"]
    name = generated("__main__.make.<locals>.Twin")
    assert len(entries_of(path)[name]) == (2 if ONE_SCRIPT else 1)  # attrs 23.1: "-1" for the other


def test_a_file_whose_body_marshal_rejects_with_a_system_error_is_ignored(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    # this build's header, then a code object flagged as a reference: marshal raises SystemError
    path.write_bytes(codecache.HEADER + b"\xe3" + marshal.dumps(code())[1:])
    assert probe(tmp_path, 2)["counts"] == [0, compiled]  # was: the start failed, a traceback


def test_a_huge_file_is_ignored_without_reading_it_whole(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    with path.open("r+b") as file:
        file.truncate(4 << 30)  # sparse: 4 GiB of zeros after this build's header
    # was: read whole into memory before its header was looked at (MemoryError with a 1 GiB bound)
    result = probe(tmp_path, 2, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)))
    assert result["counts"] == [0, compiled]


READ_UNDER_A_LIMIT = """
import json, resource, sys
from pathlib import Path
from executor import codecache
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) << 10
resource.setrlimit(resource.RLIMIT_AS, (size + (32 << 20), resource.RLIM_INFINITY))  # 32 MiB more than now
print(json.dumps(len(codecache._read(Path(sys.argv[1])))))
"""


def test_a_file_is_read_under_an_address_space_limit_its_bound_would_pass(tmp_path):
    probe(tmp_path, 1)
    path = run_file(tmp_path)
    result = subprocess.run([sys.executable, "-c", READ_UNDER_A_LIMIT, str(path)], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    # was: MemoryError, a traceback of every `stoker run` under `ulimit -v` 78 MiB (the read
    # took MAX_BYTES + 1 of address space for a file of 0.1 MB), which ran with the cache off
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == len(entries_of(path)) > 0


def test_a_file_longer_than_its_size_said_is_read_under_an_address_space_limit_too():
    # a file with more bytes than its fstat said (one that grew meanwhile; /proc's, of size 0,
    # here: the reader's own status, its user's, regular, read-only): the rest was one read
    # of MAX_BYTES, the same 64 MiB of address space, a MemoryError (a traceback) again
    result = subprocess.run([sys.executable, "-c", READ_UNDER_A_LIMIT, "/proc/self/status"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 0  # not a code cache file: ignored


def test_a_file_over_the_bound_is_ignored_under_an_address_space_limit_too(tmp_path):
    probe(tmp_path, 1)
    path = run_file(tmp_path)
    with path.open("r+b") as file:
        file.truncate(codecache.MAX_BYTES + 1)  # sparse
    # was: read at its size bounded by MAX_BYTES, 64 MiB asked at once before the size was
    # looked at: a MemoryError, a traceback, under `ulimit -v`
    result = subprocess.run([sys.executable, "-c", READ_UNDER_A_LIMIT, str(path)], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 0


# A command that compiled a class the file lacks, saving at its exit with the address space
# full (`fcntl` loaded before, as a command has it: a C module maps as it loads).
SAVE_UNDER_A_LIMIT = """
import fcntl, resource
import attrs
from executor import codecache
codecache.install("run")
@attrs.define
class Fresh:
    x: int = 0
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) << 10
resource.setrlimit(resource.RLIMIT_AS, (size, resource.RLIM_INFINITY))
saved = codecache.save()
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(saved)
"""


def test_a_save_with_no_memory_for_it_writes_nothing_and_raises_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # else no save is tried
    env.update(STOKER_CODE_CACHE=str(tmp_path), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-m", "executor.codecache", "run"], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=120)  # the whole file to read: an allocation of its size
    path = tmp_path / f"attrs-run.{sys.implementation.cache_tag}.bin"
    before = path.read_bytes()
    result = subprocess.run([sys.executable, "-c", SAVE_UNDER_A_LIMIT], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    # was: MemoryError out of the read, `executor: crashed` and exit 1 after the task ended
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False"]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_a_file_written_under_umask_0_is_not_writable_by_others(tmp_path):
    previous = os.umask(0)  # a daemon's, inherited by the probe
    try:
        probe(tmp_path, 1)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(run_file(tmp_path).stat().st_mode) == 0o644  # was: 0666, code anyone could change


def test_a_file_anyone_may_write_is_ignored_and_replaced(tmp_path):
    compiled = probe(tmp_path, 1)["counts"][1]
    path = run_file(tmp_path)
    path.chmod(0o666)
    result = probe(tmp_path, 2)
    assert result["counts"] == [0, compiled] and result["saved"]  # was: its code served
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_symlink_at_the_temporary_name_is_not_written_through(tmp_path):
    path = tmp_path / "attrs-run.bin"
    target = tmp_path / "someone-elses"
    target.write_bytes(b"kept")
    (tmp_path / f"{path.name}.{os.getpid()}.tmp").symlink_to(target)  # the name a save used to take
    assert codecachewrite.write(path, {"<name>": (("x = 1", code()),)})
    assert target.read_bytes() == b"kept" and not path.is_symlink()
    assert marshal.loads(path.read_bytes()[len(codecache.HEADER):])["<name>"][0][0] == "x = 1"


# A class served at every start beside a twin of its name whose fields change at every start
STEADY = TWINS.replace('one, two, again = make("a"), make("b", "c"), make("a")',
                       'one, two, again = make("a"), make(sys.argv[1]), None').replace(
                       "repr(again(4))", "repr(one(4))").replace(
                       "import json", "import json, sys").replace(
                       "repr(two(2, 3))", "repr(two(2))")


def test_a_class_served_at_every_start_is_kept_beside_a_twin_that_changes(tmp_path):
    def run(shape: str) -> dict:
        return run_script(tmp_path, STEADY, shape)

    scripts = run("b")["counts"][1] // 2
    for shape in "cdefg":  # the file written at each: the steady class's entry first among its name's
        # was: served at the 2nd to 4th start, then evicted by the 4 newest shapes, compiled again at the 5th
        assert run(shape)["counts"] == [scripts, scripts], shape


# What the cache object holds once the classes are made: any of attrs' generated source in it
HELD = TWINS.replace('print(json.dumps({', """import gc
def sources(root):
    seen, found, todo = set(), 0, [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        found += isinstance(item, str) and "def __" in item  # a class's script (attrs < 24.3: a method's)
        todo.extend(gc.get_referents(item))
    return found
print(json.dumps({"held": sources(codecache._cache), """)


def test_a_served_class_s_source_is_not_held_once_served(tmp_path):
    first = run_script(tmp_path, HELD)
    assert first["held"] == first["counts"][1]  # compiled: held until saved (fresh)
    second = run_script(tmp_path, HELD)
    # was: every served class's source held for the process's life (0.17 MiB of a supervisor)
    assert second["counts"][0] and second["held"] == second["counts"][1]  # only the one compiled again

