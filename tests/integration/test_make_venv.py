"""tools/make_venv.py (every `make` target's venv): which venvs it makes again and why, and one
make of a checkout at a time. Its whole run (a venv made, pip, the editable install: a minute
or more) is checked by hand (docs/testing.md §15, "The developer's set-up")."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.support.stoker_proc import REPO
from tests.support.tools import load_tool
from tests.support.users import unsplit
from tests.support.waiting import wait_for


@pytest.fixture
def tool():
    # named as its path names it (tools.make_venv), as `make mutation` maps its functions
    return load_tool("make_venv.py", "tools.make_venv")


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


@pytest.fixture
def checkout(tool, tmp_path, monkeypatch):
    """`tool` run for a checkout at tmp_path/checkout (its setup.py older than any stamp)."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "setup.py").write_text("")
    os.utime(root / "setup.py", (1_000_000, 1_000_000))
    monkeypatch.setattr(tool, "ROOT", root)
    return root


# An interpreter that makes a venv of itself (`-m venv DIR`), answers the probe as Python
# 3.12 would, and writes down any other command it is given (pip, the code cache's warm step).
INTERPRETER = """#!/bin/sh
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1" = -I ]; then printf '3 12 1\\n/opt/python3.12\\n'; exit 0; fi
echo "$0 $* ($(pwd) $STOKER_BUILD_VERSION)" >> "$LOG"
"""


def interpreter(path: Path, log: Path, monkeypatch) -> str:
    path.write_text(INTERPRETER)
    path.chmod(0o755)
    monkeypatch.setenv("LOG", str(log))
    return str(path)


def test_a_venv_made_is_made_with_pip_the_checkout_and_the_code_cache_then_stamped(tool, checkout, tmp_path,
                                                                                 monkeypatch, capfd):
    log = tmp_path / "log"
    python, venv = interpreter(tmp_path / "python3", log, monkeypatch), checkout / ".venv"
    tool.ensure(venv, python)
    bin_python = f"{venv}/bin/python"
    steps = [f"{bin_python} -m pip install -q --upgrade pip", f"{bin_python} -m pip install -q -e .[test]",
             f"{bin_python} -P -m executor.codecache"]
    assert capfd.readouterr() == ("\n".join([f"{python} -m venv {venv}", *steps, ""]), "")
    assert log.read_text() == "".join(f"{step} ({checkout} 0.1.0)\n" for step in steps)
    assert (venv / ".installed").is_file()
    tool.ensure(venv, python)  # stamped, this Python's: nothing to do
    tool.ensure_extra(venv, "fuzz")
    tool.ensure_extra(venv, "fuzz")
    extra = f"{bin_python} -m pip install -q -e .[test,fuzz]"
    assert capfd.readouterr() == (extra + "\n", "") and (venv / ".fuzz-installed").is_file()
    assert log.read_text().splitlines()[3:] == [f"{extra} ({checkout} 0.1.0)"]


def test_a_venv_of_another_python_with_same_python_is_made_again_and_said_why(tool, checkout, tmp_path,
                                                                           monkeypatch, capfd):
    log = tmp_path / "log"
    venv = checkout / ".venv"
    fake_python(venv / "bin/python", "3 13 0\\n/opt/python3.13\\n")
    (venv / ".installed").touch()
    python = interpreter(tmp_path / "python3", log, monkeypatch)
    tool.ensure(venv, python)  # any Python >= 3.11: stamped, it stays
    assert capfd.readouterr() == ("", "")
    tool.ensure(venv, python, same_python=True)
    out, err = capfd.readouterr()
    assert err == (f"make_venv: .venv: it is Python 3.13.0's (/opt/python3.13), not {python}'s (3.12.1, "
                   "/opt/python3.12): making it again\n")
    assert out.splitlines()[0] == f"{python} -m venv {venv}" and (venv / "bin/python").read_text() == INTERPRETER


@pytest.mark.parametrize("answer", ["3 12 1\\n/opt\\nmore\\n", "3 x 1\\n/opt\\n", "3 12 1\\n"])
def test_a_venv_whose_python_answers_the_probe_otherwise_is_made_again(tool, tmp_path, answer):
    fake_python(tmp_path / "venv/bin/python", answer)
    assert tool.problem(tmp_path / "venv", None) == (f"{tmp_path}/venv/bin/python does not run or cannot "
                                                     "import pip (was its making interrupted?)")


def test_a_venv_without_a_python_at_all_is_made_again(tool, tmp_path):
    (tmp_path / "venv/bin").mkdir(parents=True)
    assert tool.problem(tmp_path / "venv", None) == f"its python {tmp_path}/venv/bin/python is gone"


def test_a_python_3_11_makes_the_venv(tool, tmp_path, capfd):
    python = fake_python(tmp_path / "python3", "3 11 0\\n/usr\\n")
    tool.make(tmp_path / "venv", python)  # (not refused: the fake's `-m venv` prints its answer)
    assert capfd.readouterr() == (f"{python} -m venv {tmp_path}/venv\n3 11 0\n/usr\n", "")


def test_its_help_names_it_as_make_runs_it(tool, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as ended:
        tool.main(["--help"])
    out = capsys.readouterr().out
    assert ended.value.code == 0 and out.startswith(
        "usage: tools/make_venv.py [-h] [--same-python] [--extra EXTRA] venv\n\n"
        "`make`'s virtual environment, `.venv` (README \"On a laptop\"): made, made again when it\n")
    assert "  --same-python  the venv must be this Python's (PY given)\n" in out
    assert "  --extra EXTRA  install this extra of the checkout too\n" in out


def test_a_stamp_older_than_setup_py_is_not_fresh(tool, checkout):
    stamp = checkout / ".installed"
    assert not tool.fresh(stamp)
    stamp.touch()
    for at, fresh in ((999_999, False), (1_000_000, True), (1_000_001, True)):
        os.utime(stamp, (at, at))
        assert tool.fresh(stamp) is fresh


def test_a_step_that_fails_ends_with_its_status_and_no_stamp(tool, checkout, capfd):
    with pytest.raises(SystemExit) as ended:
        tool.run([sys.executable, "-c", "import os, sys; print(os.getcwd(), os.environ['STOKER_BUILD_VERSION']); "
                  "sys.exit(3)"])
    assert ended.value.code == 1
    out, err = capfd.readouterr()
    assert out.splitlines()[1:] == [f"{checkout} 0.1.0"]
    assert err == ("make_venv: this step failed (exit 3); .venv is not stamped, and the next make "
                   "tries again\n")


@pytest.mark.parametrize("answer, what", [(None, "does not run"), ("3 10 9\\n/usr\\n", "is Python 3.10.9")])
def test_a_python_too_old_or_that_does_not_run_makes_no_venv_and_says_which_to_give(tool, tmp_path, capfd,
                                                                                 answer, what):
    python = str(tmp_path / "python3") if answer is None else fake_python(tmp_path / "python3", answer)
    with pytest.raises(SystemExit) as ended:
        tool.make(tmp_path / "venv", python)
    assert ended.value.code == 1 and not (tmp_path / "venv").exists()
    assert capfd.readouterr().err == (f"make_venv: {python} {what}, and Stoker needs 3.11 or newer: give "
                                      "make another, as in `make test PY=python3.11`\n")


def test_remove_takes_a_venv_s_link_or_file_but_not_where_the_link_leads(tool, tmp_path):
    (tmp_path / "real" / "bin").mkdir(parents=True)
    for name, make in (("link", lambda p: p.symlink_to(tmp_path / "real")), ("file", lambda p: p.write_text("")),
                       ("dir", lambda p: (p / "bin").mkdir(parents=True))):
        make(tmp_path / name)
        tool.remove(tmp_path / name)
        assert not os.path.lexists(tmp_path / name)
    assert (tmp_path / "real" / "bin").is_dir()


def test_a_make_waiting_for_another_says_so_once_and_goes_on_once_it_is_done(tool, checkout, capfd):
    held = os.open(checkout, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the first make holds it
    inside = threading.Event()

    def second() -> None:
        with tool.locked():
            inside.set()

    waiting = threading.Thread(target=second)
    try:
        waiting.start()
        said = f"make_venv: waiting for another make of {checkout} to finish with its venv\n"
        # Its line is written before it blocks: wait for the kernel's list of blocked lock
        # waiters to show it on the checkout, then read stderr once. (Reading it in a loop
        # lost the line once in CI: capfd's read and its truncation are two steps, and a
        # write between them is gone.)
        stat = os.stat(checkout)
        where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino} "
        wait_for(lambda: any("->" in line and where in line for line in Path("/proc/locks").read_text().splitlines()),
                 timeout_secs=10, message="the second make blocked on the checkout's lock")
        assert not inside.is_set() and capfd.readouterr().err == said
    finally:
        os.close(held)
        waiting.join(timeout=10)
    assert inside.is_set() and capfd.readouterr().err == ""
    with tool.locked():  # not waiting: said nothing
        assert capfd.readouterr().err == ""


def test_main_makes_nothing_for_a_stamped_venv_of_its_checkout(tool, checkout, capfd):
    fake_python(checkout / "v" / "bin/python", "3 12 1\\n/opt/python3.12\\n")
    (checkout / "v" / ".installed").touch()
    (checkout / "v" / ".mutation-installed").touch()
    assert tool.main(["v", "--extra", "mutation"]) == 0
    assert capfd.readouterr() == ("", "")


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
    (tmp_path / "venv").symlink_to(sys.prefix)  # make splits a target at a space: a checkout at "/a b/" too
    done = subprocess.run(["make", "-s", "run", "VENV=venv", f"RUNS={tmp_path}/file/runs"], cwd=tmp_path,
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


@pytest.mark.parametrize("makeflags, silent", [
    ("", False), ("s", True), ("ks -j2 --jobserver-auth=fifo:/tmp/GMfifo1", True), ("k", False),
    ("k s", False),  # only the first word holds the one-letter flags
    (" -j2 --jobserver-auth=fifo:/tmp/GMfifos", False), ("-- VENV=/tmp/s", False), ("VENV=s", False),
])
def test_make_silent_reads_the_one_letter_flags_of_makeflags_first_word(tool, makeflags, silent):
    assert tool.make_silent(makeflags) is silent
