"""`make`'s virtual environment, `.venv` (README "On a laptop"): made, made again when it
cannot be used, installed and stamped, by one `make` of the checkout at a time.

    python3 tools/make_venv.py [--same-python] [--extra NAME] VENV

Every target needs VENV/.installed (the Makefile's $(STAMP)); make runs this, on its PY, when
that stamp is missing or older than setup.py, when VENV/bin/python is gone, and whenever PY
is given (`make test PY=python3.12`, which --same-python says). It

- waits for any other `make` of this checkout doing the same (a lock on the checkout's
  directory): two at once raced pip against itself, and one failed with pip's traceback;
  when that one has done the work, there is nothing left to do;
- makes the venv again, one line saying why, when its python is gone (an interpreter removed
  or upgraded away), cannot import pip (a Ctrl-C while `python3 -m venv` ran, or while pip
  upgraded itself, left none: every later `make` failed "No module named pip"), is older
  than 3.11, or, with --same-python, is another Python than this one;
- upgrades pip, installs the checkout editable with the test extra, warms the attrs code
  cache, and writes the stamp last: a Ctrl-C anywhere before it leaves no stamp, and the
  next `make` goes on from what is there (pip installs what is missing or half there).

--extra NAME installs the checkout's NAME extra as well, stamped VENV/.NAME-installed (`make
dist`, `test-reproducible`, `coverage`, `mutation`, `fuzz`). tools/test_pythons.py makes its
`.venv-3.N` with `ensure`. Standard library only, and it runs on any Python 3 far enough to
say that one is too old.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLDEST = (3, 11)
# The editable install is stamped with the base version, not a commit (the venv runs the
# checkout, whatever its commit; pip's record named the commit of the day it was made).
BUILD_VERSION = "0.1.0"
# What a Python is: its version and the installation it is (a venv's: the one it was made from).
PROBE = "import os, sys; print(*sys.version_info[:3]); print(os.path.realpath(sys.base_prefix))"


def say(line: str) -> None:
    print(f"make_venv: {line}", file=sys.stderr, flush=True)


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def probe(python: str, pip: bool = False) -> tuple[tuple[int, ...], str] | None:
    """(version, base installation) of `python`, a venv's or not; None when it does not run
    (or, with `pip`, cannot import pip)."""
    try:
        done = subprocess.run([python, "-I", "-c", PROBE + ("; import pip" if pip else "")], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != 2 or not all(p.isdigit() for p in lines[0].split()):
        return None
    return tuple(int(p) for p in lines[0].split()), lines[1]


def problem(venv: Path, python: str | None) -> str | None:
    """Why the existing venv `venv` cannot be used (None: it can); `python`: the one it must
    be made from (None: any Python >= 3.11)."""
    own = venv / "bin" / "python"
    if not own.exists():
        gone = f" (a link to {os.path.realpath(own)})" if own.is_symlink() else ""
        return f"its python {own} is gone{gone}"
    have = probe(str(own), pip=True)
    if have is None:
        return f"{own} does not run or cannot import pip (was its making interrupted?)"
    if have[0][:2] < OLDEST:
        return f"it is Python {dotted(have[0])}'s, and Stoker needs {dotted(OLDEST)} or newer"
    wanted = probe(python) if python is not None else None
    if wanted is not None and wanted != have:
        return f"it is Python {dotted(have[0])}'s ({have[1]}), not {python}'s ({dotted(wanted[0])}, {wanted[1]})"
    return None


def fresh(stamp: Path) -> bool:
    return stamp.exists() and stamp.stat().st_mtime >= (ROOT / "setup.py").stat().st_mtime


def run(argv: list[str]) -> None:
    """One step, shown as make shows its commands (not under `make -s`); its failure ends
    this with its status."""
    if not make_silent(os.environ.get("MAKEFLAGS", "")):
        print(" ".join(argv), flush=True)
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "STOKER_BUILD_VERSION": BUILD_VERSION})
    if done.returncode != 0:
        say(f"this step failed (exit {done.returncode}); .venv is not stamped, and the next make tries again")
        raise SystemExit(1)


def make_silent(makeflags: str) -> bool:
    """Whether the make that runs this was given -s (--silent, --quiet): MAKEFLAGS' first word
    holds its one-letter flags (`s`, `ks -j2 ...`; a long option or `--` first: none)."""
    words = makeflags.split()
    return bool(words) and not words[0].startswith("-") and "=" not in words[0] and "s" in words[0]


def remove(venv: Path) -> None:
    if venv.is_symlink() or not venv.is_dir():
        venv.unlink()
    else:
        shutil.rmtree(venv)


def ensure(venv: Path, python: str, same_python: bool = False) -> None:
    """`venv` made from `python` if missing or unusable (see `problem`), the test extra installed
    and stamped; with the checkout locked. Raises SystemExit when a step fails."""
    with locked():
        why = problem(venv, python if same_python else None) if os.path.lexists(venv) else None
        if why is None and fresh(venv / ".installed"):
            return
        if why is not None:
            say(f"{venv.name}: {why}: making it again")
            remove(venv)
        if not venv.exists():
            make(venv, python)
        bin_python = str(venv / "bin" / "python")
        run([bin_python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
        run([bin_python, "-m", "pip", "install", "-q", "-e", ".[test]"])
        run([bin_python, "-P", "-m", "executor.codecache"])  # attrs' generated methods, compiled once
        (venv / ".installed").touch()


def make(venv: Path, python: str) -> None:
    made_by = probe(python)
    if made_by is None or made_by[0][:2] < OLDEST:
        what = "does not run" if made_by is None else f"is Python {dotted(made_by[0])}"
        say(f"{python} {what}, and Stoker needs {dotted(OLDEST)} or newer: give make another, "
            "as in `make test PY=python3.11`")
        raise SystemExit(1)
    if os.pathsep in str(venv.resolve()):  # venv refuses it: PATH would split its bin/ there
        say(f"{venv.resolve()}: Python makes no venv at a path with '{os.pathsep}' in it: give make one elsewhere, "
            "as in `make test VENV=~/.venvs/stoker`")
        raise SystemExit(1)
    run([python, "-m", "venv", str(venv)])


def ensure_extra(venv: Path, extra: str) -> None:
    """The checkout's `extra` installed in `venv` (made already), stamped."""
    with locked():
        stamp = venv / f".{extra}-installed"
        if not fresh(stamp):
            run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-e", f".[test,{extra}]"])
            stamp.touch()


class locked:
    """The checkout's directory locked (flock) for this process; said once when it waits."""

    def __enter__(self) -> None:
        self.fd = os.open(ROOT, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another make of {ROOT} to finish with its venv")
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/make_venv.py", description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path)
    parser.add_argument("--same-python", action="store_true", help="the venv must be this Python's (PY given)")
    parser.add_argument("--extra", help="install this extra of the checkout too")
    args = parser.parse_args(argv)
    venv = ROOT / args.venv
    try:
        ensure(venv, sys.executable, args.same_python)
        if args.extra:
            ensure_extra(venv, args.extra)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
