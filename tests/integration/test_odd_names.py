"""Names longer than a file name may be: a job's, in the default sandbox's name, and a
sandbox or task id given to a command. Real directories, the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.local import planfiles
from executor.local.runstart import SandboxError, make_sandbox
from tests.support.shellwords import c_locale_starts
from tests.support.stoker_proc import REPO


@pytest.mark.parametrize("job", ["a" * 300, "作" * 100], ids=["300-letters", "100-chinese"])
def test_a_long_job_name_makes_a_default_sandbox_whose_name_fits(tmp_path, monkeypatch, job):
    """`sandbox-JOB-DATE-TIME-RANDOM` of a job named with 300 letters (or 100 Chinese ones,
    300 bytes) was longer than the 255 bytes of a file name: `stoker run` ended in a
    traceback, 'File name too long'."""
    monkeypatch.chdir(tmp_path)
    made = make_sandbox(None, job)
    assert made.is_dir() and len(os.fsencode(made.name)) <= 255
    assert planfiles.is_sandbox_name(made.name, job) and made.name.startswith("sandbox-" + job[:60])


def test_a_sandbox_or_task_id_too_long_for_a_file_name_is_one_error_line(tmp_path):
    """`stoker run --sandbox` of such a name, and `stoker status` of it (or of a task id that
    long), ended in a traceback; now one `stoker: error:` line, exit 2."""
    long = tmp_path / ("b" * 300)
    with pytest.raises(SandboxError, match=r"^cannot create sandbox '.*b': File name too long$"):
        make_sandbox(str(long), "job")
    for given in (str(long), "c" * 300):
        done = subprocess.run([sys.executable, "-m", "executor", "status", given], capture_output=True,
                              timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 2 and done.stderr.count(b"\n") == 1, done.stderr.decode()
        assert done.stderr.startswith(b"stoker: error: sandbox ")
        assert b"does not exist" in done.stderr


ASCII = {"LC_ALL": "C", "PYTHONUTF8": "0"}  # Python's file names in ASCII, surrogateescape
READ_AND_WRITE = """
import os, sys, time
from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import own_identity
from executor.host.registry import Registry
from executor.host.registrylookup import find
reg = Registry(RegistrySettings(registry_root=sys.argv[1], registry_retention_secs=86400.0))
for item in reg.entries():
    os.stat(item.entry.sandbox)
assert find(reg.entries(), sys.argv[3]) is not None, sys.argv[3]
me = own_identity()
reg.write(RegistryEntry(sandbox=sys.argv[2], supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                        supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=time.time(),
                        task_id="ascii-1"))
"""


@c_locale_starts
def test_a_registered_sandbox_is_found_whatever_the_locale_of_its_reader(tmp_path):
    """A supervisor under a UTF-8 locale registered /…/sb-ünï; `stoker ps` under `LC_ALL=C
    PYTHONUTF8=0` raised UnicodeEncodeError on it (the entry's text is not ASCII), and a
    Latin-1 reader would look for another directory. The entry keeps the path's bytes as
    UTF-8, and each reader names those bytes its own way, both ways round; a task id typed
    there (`stoker status 作业-1`) was no task."""
    mine, theirs = tmp_path / "sb-ünï", tmp_path / "sb-é"
    mine.mkdir()
    theirs.mkdir()
    root = tmp_path / "root"
    me = own_identity()
    reg = Registry(RegistrySettings(registry_root=str(root), registry_retention_secs=86400.0))
    assert reg.write(RegistryEntry(sandbox=str(mine), supervisor_pid=me.pid, supervisor_start=me.start_ticks,
                                   supervisor_boot=me.boot_id, front_end=FrontEnd.RUN,
                                   registered_wall=time.time(), task_id="作业-1"))
    subprocess.run([sys.executable, "-c", READ_AND_WRITE, str(root), os.fsencode(theirs), "作业-1".encode()], check=True,
                   timeout=30, env={**os.environ, **ASCII, "PYTHONPATH": str(REPO)})
    sandboxes = {item.entry.task_id: item.entry.sandbox for item in reg.entries()}
    assert sandboxes == {"作业-1": str(mine), "ascii-1": str(theirs)}
