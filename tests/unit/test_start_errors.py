"""What a start's OSError says of the file it names (`earlyfork.unnamed`, `failed_in`): a
file at fault is named (`cannot start /bin/bash for process 'web' run 0 in /srv/gone: No
such file or directory`); a fork refused (EAGAIN, ENOMEM) or no descriptor left (EMFILE,
ENFILE) names none: the file it carries is only what the call was opening then
(`/bin/bash`, or Popen's module at its first load: '... in .../subprocess.py')."""
from __future__ import annotations

import errno
import os

import pytest

from executor.procs.earlyfork import failed_in, unnamed


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE])
def test_a_shortage_names_no_file(code: int) -> None:
    error = OSError(code, os.strerror(code), "/usr/lib/python3.11/subprocess.py")
    plain = unnamed(error)
    assert (type(plain), plain.errno, plain.strerror, plain.filename) == (
        type(OSError(code, "")), code, os.strerror(code), None)  # (EAGAIN's a BlockingIOError, as raised)
    assert failed_in(error) == ""


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EACCES, errno.ENOEXEC])
def test_a_file_at_fault_is_named(code: int) -> None:
    error = OSError(code, os.strerror(code), "/srv/gone")
    assert unnamed(error) is error
    assert failed_in(error) == " in /srv/gone"


def test_an_error_with_no_file_names_none() -> None:
    assert failed_in(OSError(errno.ENOENT, os.strerror(errno.ENOENT))) == ""
