"""Build Stoker's release artifacts: `DIST/stoker-VERSION-py3-none-any.whl` and the
single-file zipapp `DIST/stoker.pyz` (what `make dist` runs).

Owns the build recipe and its checks:
1. copy the project to a scratch directory and build the wheel there, once, so the
   checkout gets no `build/` or `*.egg-info` litter and two builds never share a directory;
2. turn the wheel's dependencies into wheels (`pip wheel`): a dependency published only as
   an sdist (pystachio) is built here, once, and pip's cache keeps it;
3. replace the version-specific wheels of the dependencies in `PURE_REBUILDS` by pure ones
   (below);
4. run shiv with pip restricted to wheels that run on every CPython 3.11 and later: pure
   (`none` ABI) or the stable ABI (`abi3`), resolved for Python 3.11, so psutil's C
   extension in the zipapp loads on 3.11, 3.12, 3.13, ...; a dependency without such a
   wheel fails the build instead of giving a zipapp tied to one Python version;
5. check the bundle (every extension module is abi3, the entry point is `stoker`) and put
   `tools/zipapp_main.py` in place of shiv's `__main__.py` (Python version check, and the
   Mesos sandbox as the default SHIV_ROOT).
It never touches anything in DIST but the two artifacts, and never installs anything into
the running environment: it needs shiv, setuptools and wheel there already (setup.py's
`dist` extra).

Pure rebuilds. thriftpy2 (Aurora's AssignedTask decoder, config/aurora/) and its
dependency ijson publish only per-CPython-version wheels, each with Cython or C
extensions that merely speed up code the package also has in pure Python. The zipapp gets
a wheel made from the one pip chose: the same Python files, minus the native files
(compiled modules and their C/Cython sources), tagged py3-none-any with the local version
`+stoker.pure` so the bundle says what it is. ijson falls back to its pure-Python backend
by itself; its libyajl backends are left out too, because looking for libyajl runs
`ctypes.util.find_library`, which starts ldconfig and gcc as child processes, and no code
in the executor may wait for a child behind its reaper's back. thriftpy2 has no fallback
on CPython (`thriftpy2/_compat.py` says `CYTHON = not PYPY`), so the rebuild sets
`CYTHON = False`: the pure-Python protocol and transports that thriftpy2 runs on PyPy. An
upstream change that makes either edit miss fails the build.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZIPAPP_MAIN = Path(__file__).resolve().with_name("zipapp_main.py")
SHEBANG = "/usr/bin/env python3"
CONSOLE_SCRIPT = "stoker"
# The oldest Python the zipapp supports; pip resolves dependencies as if running on it.
TARGET_PYTHON = "3.11"
# Top-level names never copied into the build's scratch copy of the project.
NOT_SOURCES = {".git", ".venv", "dist", "build", ".pytest_cache", ".hypothesis", "__pycache__"}
PURE_OR_ABI3 = re.compile(r"^(py\d*|cp\d+)-(none|abi3)-")
PURE_LABEL = "stoker.pure"
NATIVE_FILES = re.compile(r".*\.(so|pyd|c|h|pyx|pxd)$")


@dataclasses.dataclass(frozen=True)
class PureRebuild:
    drop: str = r"(?!)"  # a regex of further files to leave out (default: none)
    edits: tuple[tuple[str, str, str], ...] = ()  # (file, exact text, replacement), each found once


PURE_REBUILDS = {
    "thriftpy2": PureRebuild(edits=(("thriftpy2/_compat.py", "CYTHON = not PYPY", "CYTHON = False"),)),
    "ijson": PureRebuild(drop=r"ijson/backends/(yajl\w*|_yajl\w*)\.py"),
}


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def _run(step: str, argv: list[str]) -> None:
    started = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise BuildError(f"{step} failed with exit status {done.returncode}:\n{done.stdout.strip()}")
    print(f"build_dist: {step}: {time.monotonic() - started:.1f} s", file=sys.stderr)


def stage_sources(scratch: Path) -> Path:
    """Copy the project (without VCS, venv and build outputs) to SCRATCH/src."""
    src = scratch / "src"

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = Path(directory) == REPO
        return {n for n in names if n.endswith(".egg-info") or n == "__pycache__" or (top and n in NOT_SOURCES)}

    shutil.copytree(REPO, src, ignore=ignore, symlinks=True)
    return src


def build_wheel(src: Path, dist: Path) -> Path:
    """Build Stoker's own wheel into DIST with the current environment's setuptools."""
    _run("wheel", [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--use-pep517",
                   "--no-build-isolation", "--wheel-dir", str(dist), str(src)])
    wheels = sorted(dist.glob("stoker-*-py3-none-any.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one stoker-*-py3-none-any.whl in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def pure_rebuild(wheel: Path, rebuild: PureRebuild, out_dir: Path) -> Path:
    """OUT_DIR/NAME-VERSION+stoker.pure-py3-none-any.whl from WHEEL (see the module docstring)."""
    name, version = wheel.name.split("-")[:2]
    pure_version = f"{version}+{PURE_LABEL}"
    old_info, new_info = f"{name}-{version}.dist-info/", f"{name}-{pure_version}.dist-info/"
    target = out_dir / f"{name}-{pure_version}-py3-none-any.whl"
    pending = {file: (old, new) for file, old, new in rebuild.edits}
    record: list[str] = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            entry = info.filename
            dropped = NATIVE_FILES.fullmatch(entry) or re.fullmatch(rebuild.drop, entry)
            if dropped or entry == old_info + "RECORD":  # RECORD is written anew below
                continue
            data = src.read(info)
            if entry in pending:
                data = _edit(wheel.name, entry, data, *pending.pop(entry))
            if entry.startswith(old_info):
                data = _pure_metadata(entry[len(old_info):], data, pure_version)
                entry = new_info + entry[len(old_info):]
            dst.writestr(entry, data)
            record.append(_record_line(entry, data))
        if pending:
            raise BuildError(f"pure rebuild of {wheel.name}: {sorted(pending)} not in the wheel")
        dst.writestr(new_info + "RECORD", "\n".join([*record, new_info + "RECORD,,", ""]))
    return target


def _edit(wheel_name: str, entry: str, data: bytes, old: str, new: str) -> bytes:
    text = data.decode("utf-8")
    if text.count(old) != 1:
        raise BuildError(f"pure rebuild of {wheel_name}: {entry} has {old!r} {text.count(old)} times, "
                         f"not once; check how it selects its extensions")
    return text.replace(old, new).encode("utf-8")


def _pure_metadata(name: str, data: bytes, pure_version: str) -> bytes:
    """The dist-info file NAME for the pure wheel: tagged py3-none-any, the local version."""
    if name == "WHEEL":
        text = re.sub(r"^Tag: .*\n", "", data.decode("utf-8"), flags=re.MULTILINE)
        text = text.replace("Root-Is-Purelib: false", "Root-Is-Purelib: true")
        return (text + "Tag: py3-none-any\n").encode()
    if name == "METADATA":
        version = f"Version: {pure_version}".encode()
        return re.sub(rb"^Version: .*$", version, data, count=1, flags=re.MULTILINE)
    return data


def make_pure(wheelhouse: Path) -> list[Path]:
    """Replace each version-specific wheel in WHEELHOUSE named in PURE_REBUILDS by a pure one."""
    made = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        dist_name, tags = wheel.name.split("-")[0], "-".join(wheel.stem.split("-")[-3:])
        rebuild = PURE_REBUILDS.get(dist_name.lower())
        if rebuild is not None and not PURE_OR_ABI3.match(tags):
            made.append(pure_rebuild(wheel, rebuild, wheelhouse))
            wheel.unlink()
    return made


def build_zipapp(wheel: Path, scratch: Path) -> Path:
    """Bundle WHEEL and its dependencies with shiv; returns the raw shiv zipapp."""
    wheelhouse = scratch / "wheelhouse"
    # Dependencies published only as sdists become wheels here (pip caches what it builds).
    _run("dependency wheels", [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse),
                               str(wheel)])
    make_pure(wheelhouse)
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
    if not any(d.startswith("psutil-") for d in tags):
        problems.append(f"psutil is not in the bundle (bundled: {sorted(tags)})")
    for dist_name in PURE_REBUILDS:
        bundled = [d for d in tags if d.lower().startswith(dist_name + "-")]
        if not bundled or not all(d.endswith("+" + PURE_LABEL) for d in bundled):
            problems.append(f"{dist_name} in the bundle is {bundled}, not the pure rebuild")
    bootstrap = archive.read("_bootstrap/__init__.py").decode("utf-8")
    if "def cache_path(archive, root_dir, build_id)" not in bootstrap:
        problems.append("shiv's _bootstrap.cache_path(archive, root_dir, build_id) is gone; "
                        "tools/zipapp_main.py needs updating for this shiv version")
    if problems:
        raise BuildError("the zipapp would not run on every Python >= 3.11: " + "; ".join(problems))
    return tags


def install_main(raw: Path, target: Path) -> None:
    """Write TARGET: RAW's entries with tools/zipapp_main.py as `__main__.py`, executable."""
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(raw) as src, open(tmp, "wb") as out:
        out.write(f"#!{SHEBANG}\n".encode())
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = ZIPAPP_MAIN.read_bytes() if info.filename == "__main__.py" else src.read(info)
                dst.writestr(info, data)
    tmp.chmod(0o755)
    os.replace(tmp, target)


def build(dist: Path) -> tuple[Path, Path, dict[str, list[str]]]:
    """Build both artifacts into DIST; returns (wheel, zipapp, bundled wheel tags)."""
    dist.mkdir(parents=True, exist_ok=True)
    for old in [*dist.glob("stoker-*.whl"), dist / "stoker.pyz"]:
        old.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="stoker-dist-") as tmp:
        scratch = Path(tmp)
        wheel = build_wheel(stage_sources(scratch), dist)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
