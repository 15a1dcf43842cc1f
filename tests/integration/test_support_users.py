"""tests/support/users.py's `readable_copy()`, the copy of the checkout's code that `stoker_as`
runs where another user cannot read the checkout (CI's clone): made whole while other tests
write the checkout's `__pycache__`, writable by root alone, and not left in /tmp by a
worker killed before its `atexit` handlers ran."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.users import COPY_PREFIX, REPO, copy_as_it_is, open_to_readers, remove_copies_left

# Writes a file into place, as Python's `.pyc` and the code cache's files are: a temporary
# name of its own, then renamed (bounded: the test kills it sooner).
RENAMER = textwrap.dedent("""
    import os, sys
    directory = sys.argv[1]
    for count in range(2_000_000):
        temporary = os.path.join(directory, f"written.pyc.{os.getpid()}.{count}.tmp")
        with open(temporary, "wb") as file:
            file.write(b"x" * 4096)
        os.replace(temporary, os.path.join(directory, "written.pyc"))
""")


def test_a_tree_another_process_writes_in_is_copied_with_every_file_that_stays(tmp_path):
    """Was: `shutil.copytree`, which raised `shutil.Error` ("No such file or directory") when
    a temporary file it had listed was renamed away meanwhile: 11 of 50 such copies."""
    source = tmp_path / "package"
    cache = source / "__pycache__"
    cache.mkdir(parents=True)
    for number in range(200):
        (cache / f"module{number}.pyc").write_bytes(b"y" * 4096)
        os.utime(cache / f"module{number}.pyc", (1_000_000, 1_000_000 + number))
    (source / "link").symlink_to("__pycache__")
    writer = subprocess.Popen([sys.executable, "-c", RENAMER, str(cache)])
    try:
        for attempt in range(30):
            target = tmp_path / f"copy{attempt}"
            copy_as_it_is(source, target)
            kept = sorted(path.name for path in (target / "__pycache__").glob("module*.pyc"))
            assert kept == sorted(f"module{number}.pyc" for number in range(200))
            assert (target / "__pycache__" / "module7.pyc").stat().st_mtime == 1_000_007  # a .pyc still matches
            assert os.readlink(target / "link") == "__pycache__"
    finally:
        writer.kill()
        writer.wait()


def test_the_copy_is_readable_by_all_and_writable_by_its_owner_alone(tmp_path):
    """Was: a checkout's group and others' write bits (a clone made under a umask of 0) were
    kept, and another user could change the code the tests ran as that user."""
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)
    for name, mode in (("module.py", 0o666), ("script", 0o775), ("private", 0o600)):
        (tmp_path / "open" / name).write_text("")
        os.chmod(tmp_path / "open" / name, mode)
    open_to_readers(tmp_path)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "open", *(tmp_path / "open").iterdir())}
    assert modes == {"open": 0o755, "module.py": 0o644, "script": 0o755, "private": 0o644}


def test_a_copy_whose_process_was_killed_is_removed_by_the_next_copy(tmp_path):
    """A worker SIGKILLed (xdist's crash, the OOM killer) runs no `atexit` handler. Was: its
    copy, 20 MB, stayed in /tmp for good; now the next process that makes one removes it,
    and a live process's, another's directory, are kept."""
    make = textwrap.dedent("""
        import os, signal, sys
        from tests.support.users import readable_copy
        print(readable_copy(), flush=True)
        if sys.argv[1] == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", make, "killed"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert killed.returncode == -9, killed.stderr
    left = Path(killed.stdout.strip())
    assert left.name.startswith(COPY_PREFIX) and (left / "executor" / "__init__.py").is_file()
    live = tmp_path / f"{COPY_PREFIX}{os.getpid()}-abcdefgh"
    other = tmp_path / f"{COPY_PREFIX}abcdefgh"
    live.mkdir()
    other.mkdir()
    assert remove_copies_left(str(tmp_path)) == []
    ended = subprocess.run([sys.executable, "-c", make, "ended"], cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert ended.returncode == 0, ended.stderr
    assert not left.exists() and not Path(ended.stdout.strip()).exists()  # the killed one's, and its own at exit
    assert live.is_dir() and other.is_dir()
