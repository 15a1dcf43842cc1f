"""tests/support/wallclock.py: where the shim cannot be built, the tests that step the wall
clock are skipped with the compiler's reason."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.support import wallclock
from tests.support.wallclock import WallClock


def test_a_compiler_that_cannot_build_the_shim_skips_with_its_reason(tmp_path, monkeypatch):
    """gcc present without libc's headers (a slim image): the tests errored with
    `CalledProcessError: ... returned non-zero exit status 1`, the reason unsaid."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcc = bin_dir / "gcc"
    gcc.write_text("#!/bin/sh\necho 'wallclock.c:3:10: fatal error: dlfcn.h: No such file or directory' >&2\n"
                   "echo 'compilation terminated.' >&2\nexit 1\n")
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(pytest.skip.Exception) as skipped:
        WallClock(tmp_path)
    assert str(skipped.value) == (f"the wall-clock library does not build here ({gcc}, exit 1): "
                                  "wallclock.c:3:10: fatal error: dlfcn.h: No such file or directory")


def test_a_shim_that_does_not_compile_for_its_own_error_fails(tmp_path, monkeypatch):
    """A mistake in the shim's own source (no header missing) is no reason to skip: every test
    that steps the wall clock would be skipped, on every machine, and the mistake unseen."""
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(wallclock, "SOURCE", wallclock.SOURCE + "\nint broken(void) { return undeclared_name; }\n")
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as ended:
        WallClock(tmp_path)
    assert ended.type is pytest.fail.Exception, f"skipped: {ended.value}"
    assert "undeclared_name" in str(ended.value)
