"""Build Stoker's release artifacts: `DIST/stoker-VERSION-py3-none-any.whl` and the
single-file zipapp `DIST/stoker.pyz` (what `make dist` runs).

Owns the build recipe and its checks:
1. copy what the build reads (setup.py, pyproject.toml and the three packages, regular files
   only) to a scratch directory and build the wheel there, once, stamped with the version
   setup.py gives the checkout (`0.1.0+g<commit>[.dirty]`, from git), so the checkout gets no
   `build/` or `*.egg-info` litter, two builds never share a directory, and nothing else in
   the checkout (`make run`'s sandboxes under .run/ with their logs, a live run's control
   socket) is copied or can fail the build;
2. turn the wheel's dependencies into wheels (`pip wheel`): a dependency published only as
   an sdist (pystachio) is built here, once, and pip's cache keeps it;
3. run shiv with pip restricted to wheels that run on every CPython 3.11 and later: pure
   (`none` ABI) or the stable ABI (`abi3`), resolved for Python 3.11; a dependency without
   such a wheel fails the build instead of giving a zipapp tied to one Python version.
   Today every dependency is pure Python, so the zipapp runs on any platform (x86_64,
   aarch64, ...); an abi3 extension would tie it to the build machine's, and the build
   says which it is;
4. check the bundle (every extension module is abi3, the entry point is `stoker`) and put
   `tools/zipapp_main.py` in place of shiv's `__main__.py` (Python version check, and the
   Mesos sandbox as the default SHIV_ROOT);
5. add the bytecode of every bundled module for the building Python (`__pycache__/*.pyc`,
   hash-checked as PEP 552 defines, since unpacking does not keep the files' times): an
   executor unpacking into a fresh sandbox, or running under PYTHONDONTWRITEBYTECODE, then
   compiles nothing on that Python version (others ignore the files and compile as ever).
It never touches anything in DIST but the two artifacts, and never installs anything into
the running environment: it needs shiv, setuptools and wheel there already (setup.py's
`dist` extra).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZIPAPP_MAIN = Path(__file__).resolve().with_name("zipapp_main.py")
SHEBANG = "/usr/bin/env python3"
CONSOLE_SCRIPT = "stoker"
# The oldest Python the zipapp supports; pip resolves dependencies as if running on it.
TARGET_PYTHON = "3.11"
# What the wheel is built from: everything else in the checkout stays out of the scratch copy.
BUILD_INPUTS = ("setup.py", "pyproject.toml", "executor", "healthcheck", "config")
PURE_OR_ABI3 = re.compile(r"^(py\d*|cp\d+)-(none|abi3)-")


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def _run(step: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    started = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if done.returncode != 0:
        raise BuildError(f"{step} failed with exit status {done.returncode}:\n{done.stdout.strip()}")
    print(f"build_dist: {step}: {time.monotonic() - started:.1f} s", file=sys.stderr)


def stage_sources(scratch: Path) -> Path:
    """Copy the build's inputs in REPO (no bytecode, no sockets or pipes) to SCRATCH/src."""
    repo = REPO
    src = scratch / "src"
    src.mkdir()

    def ignore(directory: str, names: list[str]) -> set[str]:
        paths = {n: os.path.join(directory, n) for n in names}
        return {n for n, p in paths.items()
                if n == "__pycache__" or n.endswith(".egg-info") or not (os.path.isdir(p) or os.path.isfile(p))}

    for name in BUILD_INPUTS:
        if (repo / name).is_dir():
            shutil.copytree(repo / name, src / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(repo / name, src / name)
    return src


def checkout_version() -> str:
    """The version setup.py stamps in the checkout (its git commit): the scratch copy the
    wheel is built from has no .git, so it is handed this one (STOKER_BUILD_VERSION)."""
    done = subprocess.run([sys.executable, str(REPO / "setup.py"), "--version"], cwd=REPO,
                          capture_output=True, text=True)
    lines = done.stdout.split()
    if done.returncode != 0 or not lines:
        raise BuildError(f"setup.py --version failed with exit status {done.returncode}:\n{done.stderr.strip()}")
    return lines[-1]


def build_wheel(src: Path, dist: Path, version: str) -> Path:
    """Build Stoker's own wheel into DIST with the current environment's setuptools,
    stamped with `version`."""
    _run("wheel", [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--use-pep517",
                   "--no-build-isolation", "--wheel-dir", str(dist), str(src)],
         env={**os.environ, "STOKER_BUILD_VERSION": version})
    wheels = sorted(dist.glob("stoker-*-py3-none-any.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one stoker-*-py3-none-any.whl in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def build_zipapp(wheel: Path, scratch: Path) -> Path:
    """Bundle WHEEL and its dependencies with shiv; returns the raw shiv zipapp."""
    wheelhouse = scratch / "wheelhouse"
    # Dependencies published only as sdists become wheels here (pip caches what it builds).
    _run("dependency wheels", [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse),
                               str(wheel)])
    raw = scratch / "shiv.pyz"
    _run("shiv", [sys.executable, "-m", "shiv", "--console-script", CONSOLE_SCRIPT,
                  "--output-file", str(raw), "--python", SHEBANG,
                  "-q", "--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", "cp",
                  "--abi", "abi3", "--abi", "none", "--find-links", str(wheelhouse), str(wheel)])
    return raw


def bundled_wheel_tags(archive: zipfile.ZipFile) -> dict[str, list[str]]:
    """Map each bundled distribution (`name-version`) to its wheel tags."""
    tags: dict[str, list[str]] = {}
    for name in archive.namelist():
        match = re.fullmatch(r"site-packages/([^/]+)\.dist-info/WHEEL", name)
        if match:
            text = archive.read(name).decode("utf-8", "replace")
            tags[match.group(1)] = re.findall(r"^Tag: (\S+)$", text, flags=re.MULTILINE)
    return tags


def check_bundle(archive: zipfile.ZipFile) -> dict[str, list[str]]:
    """Raise BuildError unless every bundled extension is abi3 and every wheel pure or abi3."""
    tags = bundled_wheel_tags(archive)
    problems = [f"{dist} is tagged {t}" for dist, ts in tags.items() for t in ts if not PURE_OR_ABI3.match(t)]
    for name in archive.namelist():
        if name.startswith("site-packages/") and name.endswith(".so") and not name.endswith(".abi3.so"):
            problems.append(f"{name} is an extension module for one Python version only")
    bootstrap = archive.read("_bootstrap/__init__.py").decode("utf-8")
    for wrapped in ("cache_path(archive, root_dir, build_id)", "extract_site_packages(archive, target_path,"):
        if f"def {wrapped}" not in bootstrap:
            problems.append(f"shiv's _bootstrap has no `def {wrapped}` any more; "
                            "tools/zipapp_main.py needs updating for this shiv version")
    if problems:
        raise BuildError("the zipapp would not run on every Python >= 3.11: " + "; ".join(problems))
    return tags


def hash_checked_pyc(source: bytes, filename: str) -> bytes | None:
    """SOURCE compiled by this Python as a `.pyc` checked against the source's hash (PEP
    552), so it holds whatever time the unpacked file gets; None: it does not compile."""
    try:
        with warnings.catch_warnings():  # a bundled module's own (pystachio's escapes)
            warnings.simplefilter("ignore")
            code = compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):  # compileall skips it too; Python then never imports it
        return None
    return importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little") + importlib.util.source_hash(source) + \
        marshal.dumps(code)


def bytecode_entries(src: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, bytes]]:
    """A `__pycache__/NAME.TAG.pyc` entry for each module under site-packages/."""
    entries = []
    for info in src.infolist():
        if not (info.filename.startswith("site-packages/") and info.filename.endswith(".py")):
            continue
        directory, _, name = info.filename.rpartition("/")
        pyc = hash_checked_pyc(src.read(info), info.filename)
        if pyc is not None:
            entry = zipfile.ZipInfo(f"{directory}/__pycache__/{name[:-3]}.{sys.implementation.cache_tag}.pyc",
                                    date_time=info.date_time)
            entry.external_attr = 0o644 << 16  # shiv unpacks with these permissions
            entries.append((entry, pyc))
    return entries


def install_main(raw: Path, target: Path) -> None:
    """Write TARGET: RAW's entries with tools/zipapp_main.py as `__main__.py`, and the
    bundled modules' bytecode, executable."""
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(raw) as src, open(tmp, "wb") as out:
        out.write(f"#!{SHEBANG}\n".encode())
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = ZIPAPP_MAIN.read_bytes() if info.filename == "__main__.py" else src.read(info)
                dst.writestr(info, data)
            for entry, pyc in bytecode_entries(src):
                dst.writestr(entry, pyc, compress_type=zipfile.ZIP_DEFLATED)
    tmp.chmod(0o755)
    os.replace(tmp, target)


def build(dist: Path) -> tuple[Path, Path, dict[str, list[str]]]:
    """Build both artifacts into DIST; returns (wheel, zipapp, bundled wheel tags)."""
    dist.mkdir(parents=True, exist_ok=True)
    for old in [*dist.glob("stoker-*.whl"), dist / "stoker.pyz"]:
        old.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="stoker-dist-") as tmp:
        scratch = Path(tmp)
        wheel = build_wheel(stage_sources(scratch), dist, checkout_version())
        raw = build_zipapp(wheel, scratch)
        with zipfile.ZipFile(raw) as archive:
            tags = check_bundle(archive)
        install_main(raw, dist / "stoker.pyz")
    return wheel, dist / "stoker.pyz", tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/stoker-VERSION-py3-none-any.whl and dist/stoker.pyz.")
    parser.add_argument("--dist-dir", default=str(REPO / "dist"), help="output directory (default: dist)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        wheel, pyz, tags = build(Path(args.dist_dir).resolve())
    except BuildError as exc:
        print(f"build_dist: error: {exc}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(pyz.read_bytes()).hexdigest()
    print(f"built {wheel} and {pyz} ({pyz.stat().st_size / 1e6:.1f} MB, sha256 {digest}) "
          f"in {time.monotonic() - started:.1f} s")
    for dist_name, dist_tags in sorted(tags.items(), key=lambda kv: kv[0].lower()):
        print(f"  bundled {dist_name}: {', '.join(dist_tags)}")
    compiled = sorted(d for d, ts in tags.items() if any(t.split("-")[2] != "any" for t in ts))
    print("  pure Python: runs on any platform" if not compiled else
          f"  compiled parts ({', '.join(compiled)}): runs on this machine's platform only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
