"""`executor.codebundle`: a damaged bundle, in real interpreters: its index or its entries changed
or cut short, its code cut short past a whole index, an index length past the file's end, an
entry of a negative length: nothing served from it, nothing raised, and the file named once
(`forget()`, one DEBUG line of `stoker run`). The bundles and fixtures are
test_codebundle.py's.
"""
from __future__ import annotations

import marshal
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executor import codebundle
from tests.integration.test_codebundle import FORGOTTEN, MOVED, WRITE, read, run, where  # noqa: F401  (its fixture `where` too)
from tests.support.stoker_proc import REPO

pytestmark = pytest.mark.timeout(120)


def written(tree: Path) -> tuple[Path, bytes]:
    """The bundle WRITE makes of `tree`'s src, and its bytes."""
    run(tree, WRITE, "src")
    bundled = tree / "cache" / "nodoc" / codebundle.NAME
    return bundled, bundled.read_bytes()


def index_end(data: bytes) -> int:
    """Where a bundle's index ends in its bytes (its length first, 4 bytes)."""
    return 4 + int.from_bytes(data[:4], "little")


def index_of(data: bytes):
    return marshal.loads(data[4:index_end(data)])


def with_index(data: bytes, index) -> bytes:
    """A bundle's bytes with `index` for its own, the code after it kept."""
    rewritten = marshal.dumps(index)
    return len(rewritten).to_bytes(4, "little") + rewritten + data[index_end(data):]


def put(bundled: Path, damaged: bytes) -> None:
    bundled.write_bytes(damaged)
    os.chmod(bundled, 0o644)


def test_a_damaged_bundle_is_not_used(where: Path) -> None:  # noqa: F811
    bundled, data = written(where)
    index = index_of(data)
    for damaged in ((index[0], {name: entry[:3] for name, entry in index[1].items()}),  # its entries cut short
                    ([], index[1]), (index[0], {name: (1,) * 5 for name in index[1]})):
        put(bundled, with_index(data, damaged))
        assert read(where, "src")["answer"] == 42


def test_a_bundle_damaged_past_its_index_is_named_too(where: Path) -> None:  # noqa: F811
    """A file cut short in its code (its index whole), or an entry of another shape, is found
    damaged only as a module is looked for (`find_spec`), which served it from its source and
    said nothing: `forget()` gave "" (no DEBUG line), as for a sound file. Given once, too."""
    bundled, data = written(where)
    index = index_of(data)
    entries = {name: entry[:3] for name, entry in index[1].items()}  # its entries cut short
    for damaged in (data[:index_end(data) + 1], with_index(data, (index[0], entries))):
        put(bundled, damaged)
        assert run(where, FORGOTTEN, "src").split() == ["42", repr(str(bundled)), "''"]


RUN_JOB = """
a = Process(name='a', cmdline='true')
jobs = [Job(cluster='local', role='me', environment='test', name='job',
            task=Task(processes=[a], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


SUPERVISOR = textwrap.dedent("""
    import sys
    from executor import codecachewarm, nodocs
    sys.dont_write_bytecode = False
    nodocs.install()
    nodocs._compile_always = True
    import executor.cli.main, executor.local.run
    print(codecachewarm.write_codebundle(list(sys.modules)))
""")


def index_cut_short(bundled: Path, environ: dict[str, str]) -> None:
    bundled.write_bytes((64).to_bytes(4, "little") + b"not an index")


def code_cut_short(bundled: Path, environ: dict[str, str]) -> None:
    """The supervisor's modules bundled, the file cut short halfway through their code (its
    index whole): read as each is imported, past the index."""
    subprocess.run([sys.executable, "-P", "-c", SUPERVISOR], env=environ, stdin=subprocess.DEVNULL,
                   capture_output=True, check=True, timeout=60)
    data = bundled.read_bytes()
    start = index_end(data)
    bundled.write_bytes(data[:start + (len(data) - start) // 2])


def named_once(tmp_path: Path, pyc: Path, name: str, damage, flags: tuple[str, ...], unset: tuple[str, ...] = ()) -> None:
    """`stoker run --log-level DEBUG` of RUN_JOB (`flags` added; the variables `unset` not
    handed down) with the bundle `name` damaged by `damage`: it runs as ever, and one DEBUG
    line names the file. `pyc`: the session's seeded prefix, copied (the bundle, what is
    checked, is the test's own)."""
    cache = tmp_path / "cache"
    (cache / "nodoc").mkdir(parents=True)
    for level in (cache, cache / "nodoc"):
        os.chmod(level, 0o755)
    bundled = cache / "nodoc" / name
    environ = {**os.environ, "STOKER_CODE_CACHE": str(cache), "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
               "PYTHONPYCACHEPREFIX": str(pyc)}
    for variable in unset:
        environ.pop(variable, None)
    damage(bundled, environ)
    os.chmod(bundled, 0o644)
    (tmp_path / "job.aurora").write_text(RUN_JOB)
    done = subprocess.run([sys.executable, "-m", "executor", "run", "job.aurora", "--sandbox", str(tmp_path / "sb"),
                           *flags, "--log-level", "DEBUG"], cwd=tmp_path, env=environ,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    said = [line for line in done.stderr.splitlines() if "code_bundle_damaged" in line]
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(said) == 1 and str(bundled) in said[0], said


@pytest.mark.parametrize("damage", [index_cut_short, code_cut_short], ids=["index", "code"])
def test_a_damaged_bundle_is_named_on_a_debug_log_once(tmp_path: Path, seeded_pyc: Path, damage) -> None:
    """`stoker run --log-level DEBUG` with a bundle it cannot read (its index; a module's code,
    read only as the module is imported): it runs as ever, and one DEBUG line names the file
    (was: nothing said it was not used; a module's code, nothing either)."""
    named_once(tmp_path, seeded_pyc, codebundle.NAME, damage, ("--root", str(tmp_path / "root")))


@pytest.mark.parametrize("flags", [(), ("--root", "root")], ids=["ahead", "supervisor's child"])
def test_a_damaged_plan_bundle_is_named_on_a_debug_log_once(tmp_path: Path, seeded_pyc: Path, flags: tuple[str, ...]) -> None:
    """A first run's planning child reads `codebundle.PLAN` (the early start's child, or for a
    run not planned ahead the supervisor's own): one it cannot read was never said, the
    child ending without a word of it; the supervisor says it as it says its own's."""
    named_once(tmp_path, seeded_pyc, codebundle.PLAN, index_cut_short, flags, unset=("STOKER_EARLY_START", "STOKER_PLAN_CACHE"))


def test_a_bundle_cut_short_after_it_was_opened_serves_nothing_it_lacks_and_is_closed_as_the_start_ends(
        where: Path) -> None:  # noqa: F811
    # the file stays open while the start imports (each module read as it is imported, `os.pread`)
    run(where, WRITE, "src")
    script = textwrap.dedent("""
        import os
        from executor import codebundle, nodocs
        nodocs.install()
        before = set(os.listdir("/proc/self/fd"))
        assert codebundle.install()
        opened = len(set(os.listdir("/proc/self/fd")) - before)
        bundled = os.path.join(nodocs._nodoc, codebundle.NAME)
        with open(bundled, "rb") as file:
            size = int.from_bytes(file.read(4), "little")
        os.truncate(bundled, 4 + size)  # in place: the index kept, the modules' code gone
        from probepkg import mod
        codebundle.forget()
        print(opened, type(mod.__spec__.loader).__name__, mod.answer(), len(set(os.listdir("/proc/self/fd")) - before))
    """)
    # (found in the bundle, its code read only as it is imported: cut short, its source's)
    assert run(where, script, "src").split() == ["1", "CodeBundleLoader", "42", "0"]


def test_an_entry_whose_place_holds_another_module_s_code_runs_its_own_source(where: Path) -> None:  # noqa: F811
    # a damaged index: `probepkg.mod`'s entry where `probepkg`'s code starts (marshal reads one object and leaves the
    # rest): that code ran as `probepkg.mod` (no `answer`); its header still the source's, only the code tells
    bundled, data = written(where)
    directories, modules = index_of(data)
    package, mod = modules["probepkg"], modules["probepkg.mod"]
    modules["probepkg.mod"] = (*mod[:3], package[3], max(mod[4], package[4]))
    put(bundled, with_index(data, (directories, modules)))
    assert run(where, FORGOTTEN, "src").split() == ["42", repr(str(bundled)), "''"]


def test_an_entry_whose_code_would_end_past_the_file_is_damage_and_allocates_nothing(where: Path) -> None:  # noqa: F811
    """A damaged entry's length past the file's end (2**62 bytes, a buffer no address space
    holds) is damage found before any read: none is asked of `os.pread`, which allocates the
    length asked first (a MemoryError, out of `get_code`, would fail the import)."""
    bundled, data = written(where)
    directories, modules = index_of(data)
    modules["probepkg.mod"] = (*modules["probepkg.mod"][:4], 1 << 62)
    put(bundled, with_index(data, (directories, modules)))
    assert run(where, FORGOTTEN, "src").split() == ["42", repr(str(bundled)), "''"]


def test_a_bundle_of_no_module_is_sound_and_serves_nothing(where: Path) -> None:  # noqa: F811
    """A bundle whose index ends the file (no module, no code after it) is no damage."""
    assert run(where, WRITE.replace('["probepkg", "probepkg.mod"]', "[]"), "src").split() == ["0"]
    script = MOVED.replace("assert codebundle.install()", "print(codebundle.install(), repr(codebundle.forget()))")
    assert run(where, script.format(change=""), "src").split()[:2] == ["False", "''"]



def test_a_bundle_whose_modules_are_on_no_entry_of_sys_path_serves_none_and_is_no_damage(where: Path) -> None:  # noqa: F811
    run(where, WRITE, "src")
    script = MOVED.replace("assert codebundle.install()", "print(codebundle.install(), repr(codebundle.forget()))")
    assert run(where, script.format(change=""), "other.zip").split() == ["False", "''", "ModuleNotFoundError"]


def test_an_index_length_past_the_file_s_end_is_damage_and_allocates_nothing(where: Path) -> None:  # noqa: F811
    # its first 4 bytes damaged: `os.pread` allocated the length asked (4 GiB) before reading; under an address
    # space limit (ulimit -v) the start died of the MemoryError raised out of `install()`
    bundled, data = written(where)
    put(bundled, (0xFFFFFFF0).to_bytes(4, "little") + data[4:])
    limited = FORGOTTEN.replace("codebundle.install()\n", textwrap.dedent("""
        import resource
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
        room = pages * resource.getpagesize() + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (room, resource.getrlimit(resource.RLIMIT_AS)[1]))
        print(codebundle.install())
    """))
    assert run(where, limited, "src").split() == ["False", "42", repr(str(bundled)), "''"]


def test_an_entry_of_a_negative_length_is_damage_and_raises_nothing(where: Path) -> None:  # noqa: F811
    # past what os.pread takes (a C ssize_t): OverflowError, out of `get_code`, failed the import
    bundled, data = written(where)
    directories, modules = index_of(data)
    for length in (-1, -(1 << 70)):
        modules["probepkg.mod"] = (*modules["probepkg.mod"][:4], length)
        put(bundled, with_index(data, (directories, modules)))
        assert run(where, FORGOTTEN, "src").split() == ["42", repr(str(bundled)), "''"]
