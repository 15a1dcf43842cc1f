"""tools/make_venv.py (every `make` target's venv): which venvs it makes again and why, and one
make of a checkout at a time. Its whole run (a venv made, pip, the editable install: a minute
or more) is checked by hand (docs/testing.md "The developer's set-up")."""
from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO


@pytest.fixture
def tool():
    spec = importlib.util.spec_from_file_location("make_venv_under_test", REPO / "tools/make_venv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_python(path: Path, answer: str) -> str:
    """An interpreter at `path` that answers the probe as a Python of that version would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nprintf '{answer}'\n")
    path.chmod(0o755)
    return str(path)


def test_a_venv_left_without_pip_or_whose_python_is_gone_is_made_again_with_why(tool, tmp_path):
    """What a Ctrl-C in `python3 -m venv` leaves (a python, no pip), which every later make
    trusted ("No module named pip"), and a venv whose interpreter was removed since."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    assert "cannot import pip (was its making interrupted?)" in tool.problem(venv, None)
    (venv / "bin/python").unlink()
    (venv / "bin/python").symlink_to(tmp_path / "removed/python3")
    assert tool.problem(venv, None) == (f"its python {venv}/bin/python is gone "
                                        f"(a link to {tmp_path}/removed/python3)")
    if sys.prefix == sys.base_prefix:
        return  # not run in a venv (make's always is)
    # the venv this test runs in can be used, and it is this Python's
    assert tool.problem(Path(sys.prefix), None) is None
    assert tool.problem(Path(sys.prefix), sys.executable) is None


def test_a_venv_of_a_python_too_old_or_not_the_one_given_is_made_again(tool, tmp_path):
    venv = tmp_path / "venv"
    fake_python(venv / "bin/python", "3 9 18\\n/opt/python3.9\\n")
    assert tool.problem(venv, None) == "it is Python 3.9.18's, and Stoker needs 3.11 or newer"
    fake_python(venv / "bin/python", "3 12 1\\n/opt/python3.12\\n")
    assert tool.problem(venv, None) is None  # any Python >= 3.11, unless PY was given
    given = fake_python(tmp_path / "given", "3 12 1\\n/usr\\n")
    assert tool.problem(venv, given) == (f"it is Python 3.12.1's (/opt/python3.12), not {given}'s "
                                         "(3.12.1, /usr)")
    assert tool.problem(venv, fake_python(tmp_path / "same", "3 12 1\\n/opt/python3.12\\n")) is None


def test_a_second_make_waits_for_the_first_then_finds_the_venv_made(tmp_path):
    """Two makes of one checkout at once raced pip against itself (one failed with pip's
    traceback): the second waits, said once, and then has nothing left to do."""
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (REPO / "setup.py").stat().st_mtime:
        pytest.skip(f"this venv ({sys.prefix}) is not one make_venv stamped: it would install into it")
    held = os.open(REPO, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the first make holds it
    second = subprocess.Popen([sys.executable, "tools/make_venv.py", sys.prefix], cwd=REPO,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert second.stderr is not None
        said = second.stderr.readline()
        assert said == f"make_venv: waiting for another make of {REPO.resolve()} to finish with its venv\n"
        assert second.poll() is None
        os.close(held)
        held = -1
        assert second.wait(timeout=30) == 0 and second.stderr.read() == ""
    finally:
        if held >= 0:
            os.close(held)
        if second.poll() is None:
            second.kill()
            second.wait()
