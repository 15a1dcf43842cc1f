"""tools/make_venv.py (every `make` target's venv): which venvs it makes again and why, and one
make of a checkout at a time. Its whole run (a venv made, pip, the editable install: a minute
or more) is checked by hand (docs/testing.md "The developer's set-up")."""
from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO
from tests.support.users import unsplit


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


@pytest.mark.parametrize("makeflags, shown", [("", True), (" -j2 --jobserver-auth=3,4", True), (" -- PY=python3", True),
                                               ("s", False), ("ks -j2 --jobserver-auth=3,4", False)])
def test_its_steps_are_shown_as_make_shows_commands_and_not_under_make_s(tool, capfd, monkeypatch, makeflags, shown):
    """Was: `make -s` (MAKEFLAGS' first word `s`) still printed each step's command line."""
    monkeypatch.setenv("MAKEFLAGS", makeflags)
    tool.run([sys.executable, "-c", "pass"])
    assert capfd.readouterr().out == (f"{sys.executable} -c pass\n" if shown else "")


def test_make_run_with_no_directory_for_its_sandbox_says_what_to_do(tmp_path):
    """A checkout this user cannot write (a read-only mount): `make run` failed with mkdir's
    line alone. Shown with RUNS under a file, which no one can make a directory in (root may
    write a read-only checkout's directory where the mount is not read-only)."""
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.exists():
        pytest.skip(f"this venv ({sys.prefix}) is not one make_venv stamped: make would install into it")
    (tmp_path / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    (tmp_path / "setup.py").write_text("")
    os.utime(tmp_path / "setup.py", (0, 0))  # older than the stamp: make has nothing to install
    (tmp_path / "file").write_text("")
    done = subprocess.run(["make", "-s", "run", f"VENV={sys.prefix}", f"RUNS={tmp_path}/file/runs"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "MAKEFLAGS": ""})
    assert done.returncode == 2 and done.stdout == "", done
    mkdir_said, said = done.stderr.splitlines()[:2]
    assert "Not a directory" in mkdir_said
    assert said == (f"make run: no {tmp_path}/file/runs for the run's sandbox: give a directory you can write, "
                    "make run RUNS=DIR")


def test_a_venv_at_a_path_with_a_colon_is_refused_saying_what_to_do(tool, tmp_path, capfd):
    """Python's venv refuses it (PATH would split its bin/): was its one line, then make's
    error, and nothing said to give make a VENV elsewhere."""
    venv = tmp_path / "a:b" / ".venv"
    with pytest.raises(SystemExit):
        tool.make(venv, sys.executable)
    assert capfd.readouterr().err == (f"make_venv: {venv}: Python makes no venv at a path with ':' in it: give make "
                                      "one elsewhere, as in `make test VENV=~/.venvs/stoker`\n")
    assert not venv.exists()


def test_a_venv_path_is_judged_as_venv_judges_it_not_resolved(tool, tmp_path, capfd):
    """venv refuses the absolute path it is given (a link's name with ':' in it), not the one
    the links lead to. Was: resolved, `a:b` (a link to `plain`) passed, and venv's own
    refusal followed (its line, then "this step failed")."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "a:b").symlink_to(tmp_path / "plain")
    venv = tmp_path / "a:b" / ".venv"
    with pytest.raises(SystemExit):
        tool.make(venv, sys.executable)
    assert capfd.readouterr().err == (f"make_venv: {venv}: Python makes no venv at a path with ':' in it: give make "
                                      "one elsewhere, as in `make test VENV=~/.venvs/stoker`\n")
    assert not (tmp_path / "plain" / ".venv").exists()


def test_a_checkout_at_a_path_with_a_colon_is_importable_by_a_python_without_the_venv(tmp_path):
    """What the cross-user tests run (`users.stoker_as`: another user's Python, without the
    venv's editable install) found the checkout on PYTHONPATH, which splits `/a:b/c` in two:
    it could not import it, and those tests skipped."""
    checkout = tmp_path / "a:b" / "c"
    (checkout / "probe_pkg").mkdir(parents=True)
    (checkout / "probe_pkg" / "__init__.py").write_text("")

    def imports(entry: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", "-c", "import probe_pkg"], capture_output=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": entry})

    assert imports(str(checkout)).returncode == 1  # split: '.../a' and 'b/c'
    assert imports(unsplit(checkout)).returncode == 0


def test_two_checkouts_with_a_colon_get_a_link_each_never_one_found_there(tmp_path):
    """Was: one name per process (`stoker-checkout-PID` in the temp directory), taken as it
    was found: a second checkout got the first one's link (this test's checkout, then the
    repository's for `stoker_as`), and a link left there (a killed run's, with the same pid;
    another user's) was used whatever it named."""
    first, second = tmp_path / "a:b", tmp_path / "c:d"
    planted = Path(tempfile.gettempdir()) / f"stoker-checkout-{os.getpid()}"
    if not planted.is_symlink():
        planted.symlink_to(tmp_path / "elsewhere")
    try:
        links = [unsplit(first), unsplit(second)]
        assert [os.readlink(link) for link in links] == [str(first), str(second)]
        assert unsplit(first) == links[0] and ":" not in "".join(links)
    finally:
        if os.readlink(planted) == str(tmp_path / "elsewhere"):
            planted.unlink()
