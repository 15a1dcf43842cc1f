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
6. make both artifacts byte for byte the same whenever they are built from the same commit
   with the same tools (docs/testing.md §8): every zip entry is dated the commit's time
   (SOURCE_DATE_EPOCH, which wheel and shiv honour; a caller's own wins; without git, the
   newest staged file's, as a `git archive` tarball dates them all), files are staged
   and written with the same permissions whatever the umask or the clone's, and the bundle
   drops the one file naming where the build ran (stoker's direct_url.json: the wheel's path).
It never touches anything in DIST but the two artifacts, and never installs anything into
the running environment: it needs shiv, setuptools and wheel there already (setup.py's
`dist` extra).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
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
    """Copy the build's inputs in REPO (no bytecode, no sockets or pipes) to SCRATCH/src,
    each 0644 (0755 when executable), as a clone made under any umask becomes in the wheel."""
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
    for path in [src, *src.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path.stat().st_mode & 0o111 else 0o644)
    return src


# The dates a zip entry can hold: 1980-01-01 to 2107-12-31 (UTC, as wheel and shiv write them).
ZIP_FIRST, ZIP_LAST = 315532800, 4354819199


def zip_epoch(given: str) -> str:
    """SOURCE_DATE_EPOCH's value GIVEN as a time every entry can be dated: one before 1980 is
    1980-01-01, as wheel dates it (shiv stopped with a traceback); BuildError unless it is
    a whole number of seconds, or when it is after 2107."""
    if not re.fullmatch(r"-?[0-9]+", given.strip()):
        raise BuildError(f"SOURCE_DATE_EPOCH is {given!r}: not a whole number of seconds since 1970-01-01 UTC")
    if int(given) > ZIP_LAST:
        raise BuildError(f"SOURCE_DATE_EPOCH is {given!r}: after 2107, which no zip entry can be dated")
    return str(max(int(given), ZIP_FIRST))


def source_date_epoch(src: Path) -> str:
    """The time every entry of the artifacts is dated: the caller's SOURCE_DATE_EPOCH, else
    the checkout's commit time, else (no git, or a tree inside another repository, as
    setup.py's version says) the newest of the staged files in SRC: a `git archive`
    tarball's files carry the commit's time."""
    given = os.environ.get("SOURCE_DATE_EPOCH")
    if given:
        return zip_epoch(given)
    try:
        top = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--show-prefix"], capture_output=True, text=True)
        done = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    except OSError:  # no git installed
        top = done = subprocess.CompletedProcess([], 1, "", "")
    epoch = done.stdout.strip()
    if top.returncode == 0 and top.stdout.strip() == "" and done.returncode == 0 and epoch:
        return zip_epoch(epoch)
    return zip_epoch(str(max((int(p.lstat().st_mtime) for p in src.rglob("*") if p.is_file()), default=0)))


def build_environment(src: Path) -> dict[str, str]:
    """os.environ with SOURCE_DATE_EPOCH (see source_date_epoch)."""
    return {**os.environ, "SOURCE_DATE_EPOCH": source_date_epoch(src)}


def checkout_version() -> str:
    """The version setup.py stamps in the checkout (its git commit): the scratch copy the
    wheel is built from has no .git, so it is handed this one (STOKER_BUILD_VERSION)."""
    done = subprocess.run([sys.executable, str(REPO / "setup.py"), "--version"], cwd=REPO,
                          capture_output=True, text=True)
    lines = done.stdout.split()
    if done.returncode != 0 or not lines:
        raise BuildError(f"setup.py --version failed with exit status {done.returncode}:\n{done.stderr.strip()}")
    return lines[-1]


def build_wheel(src: Path, dist: Path, version: str, env: dict[str, str]) -> Path:
    """Build Stoker's own wheel into DIST with the current environment's setuptools,
    stamped with `version`, in ENV (build_environment)."""
    _run("wheel", [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--use-pep517",
                   "--no-build-isolation", "--wheel-dir", str(dist), str(src)],
         env={**env, "STOKER_BUILD_VERSION": version})
    wheels = sorted(dist.glob("stoker-*-py3-none-any.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one stoker-*-py3-none-any.whl in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def build_zipapp(wheel: Path, scratch: Path, env: dict[str, str]) -> Path:
    """Bundle WHEEL and its dependencies with shiv in ENV; returns the raw shiv zipapp."""
    wheelhouse = scratch / "wheelhouse"
    # Dependencies published only as sdists become wheels here (pip caches what it builds).
    _run("dependency wheels", [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse),
                               str(wheel)])
    raw = scratch / "shiv.pyz"
    _run("shiv", [sys.executable, "-m", "shiv", "--console-script", CONSOLE_SCRIPT,
                  "--output-file", str(raw), "--python", SHEBANG,
                  "-q", "--only-binary=:all:", "--python-version", TARGET_PYTHON, "--implementation", "cp",
                  "--abi", "abi3", "--abi", "none", "--find-links", str(wheelhouse), str(wheel)],
         env=env)
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


# pip's record of where it installed a distribution from (PEP 610): for stoker, the path of
# the wheel on the build machine, different in each build directory, and of no use inside
# the bundle. Dropped, with its line in the RECORD; shiv's build id (the name of the
# directory the bundle unpacks into), a hash that included it, is computed again without it.
DIRECT_URL = re.compile(r"site-packages/[^/]+\.dist-info/direct_url\.json")


def entry_data(src: zipfile.ZipFile, info: zipfile.ZipInfo, build_id: str) -> bytes:
    """What TARGET holds for SRC's entry INFO: ours for `__main__.py`, RECORD without the
    direct_url.json line, shiv's environment with BUILD_ID, the rest as it is."""
    if info.filename == "__main__.py":
        return ZIPAPP_MAIN.read_bytes()
    data = src.read(info)
    if info.filename == "environment.json":
        return json.dumps({**json.loads(data), "build_id": build_id}).encode("utf-8")
    if info.filename.startswith("site-packages/") and info.filename.endswith(".dist-info/RECORD"):
        lines = data.decode("utf-8").splitlines(keepends=True)
        data = "".join(line for line in lines if not line.partition(",")[0].endswith(".dist-info/direct_url.json"))\
            .encode("utf-8")
    return data


def bundle_build_id(src: zipfile.ZipFile, bytecode: list[tuple[zipfile.ZipInfo, bytes]]) -> str:
    """A hash of what the bundle unpacks (site-packages/, names and contents), as shiv's, and
    of the BYTECODE added to it: shiv reuses a directory unpacked under the same id as it
    finds it, so a build by another Python must not have the id of one whose bytecode it lacks."""
    digest = hashlib.sha256()
    for info in src.infolist():
        if info.filename.startswith("site-packages/") and not DIRECT_URL.fullmatch(info.filename):
            digest.update(entry_data(src, info, ""))
            digest.update(info.filename.encode("utf-8"))
    for entry, pyc in bytecode:
        digest.update(pyc)
        digest.update(entry.filename.encode("utf-8"))
    return digest.hexdigest()


def install_main(raw: Path, target: Path) -> None:
    """Write TARGET: RAW's entries with tools/zipapp_main.py as `__main__.py`, and the
    bundled modules' bytecode, executable."""
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(raw) as src, open(tmp, "wb") as out:
        out.write(f"#!{SHEBANG}\n".encode())
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            bytecode = bytecode_entries(src)
            build_id = bundle_build_id(src, bytecode)
            for info in src.infolist():
                if not DIRECT_URL.fullmatch(info.filename):
                    # a copy: writestr sets the entry's offset in DST on the ZipInfo it is given
                    dst.writestr(copy.copy(info), entry_data(src, info, build_id))
            for entry, pyc in bytecode:
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
        src = stage_sources(scratch)
        env = build_environment(src)
        wheel = build_wheel(src, dist, checkout_version(), env)
        raw = build_zipapp(wheel, scratch, env)
        with zipfile.ZipFile(raw) as archive:
            tags = check_bundle(archive)
        install_main(raw, dist / "stoker.pyz")
    return wheel, dist / "stoker.pyz", tags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/stoker-VERSION-py3-none-any.whl and dist/stoker.pyz.")
    parser.add_argument("--dist-dir", default=str(REPO / "dist"), help="output directory (default: dist)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    os.umask(0o022)  # the modes of what the build writes (build_lib, shiv's site-packages), whatever the caller's
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
