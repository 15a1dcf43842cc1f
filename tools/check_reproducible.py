"""`make test-reproducible`: build the release artifacts twice from the checkout's commit and
compare them byte for byte.

Each build runs in a fresh clone of HEAD (uncommitted changes are in neither), cloned and
built under its own umask, TZ and LANG, seconds apart, by this Python's tools/build_dist.py
(what `make dist` runs; the venv's shiv, setuptools and wheel). SOURCE_DATE_EPOCH is unset,
so the builds date their entries from the commit as `make dist` does. Prints each
artifact's sha256 from both builds and, when they differ, the entries that differ and how.
Exit status 0 when both are identical, 1 otherwise. Removes its clones and builds.

    .venv/bin/python tools/check_reproducible.py
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# (umask, TZ, LANG) of each build: the second as unlike the first as a developer's shell is
BUILDS = ((0o022, "UTC", "C.UTF-8"), (0o077, "Asia/Kolkata", "de_DE.UTF-8"))


def build_once(work: Path, index: int, commit: str) -> Path:
    """Clone COMMIT into WORK/clone-INDEX and build it into WORK/dist-INDEX."""
    umask, tz, lang = BUILDS[index]
    clone, dist = work / f"clone-{index}", work / f"dist-{index}"
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"} | {"TZ": tz, "LANG": lang}

    def run(argv: list[str], cwd: Path) -> None:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              preexec_fn=lambda: os.umask(umask))
        if done.returncode != 0:
            raise SystemExit(f"check_reproducible: {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")

    run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], work)
    run(["git", "checkout", "-q", commit], clone)
    run([sys.executable, "tools/build_dist.py", "--dist-dir", str(dist)], clone)
    return dist


def differences(first: Path, second: Path) -> list[str]:
    """How two zip files' entries differ: order, names, dates, modes, contents."""
    with zipfile.ZipFile(first) as a, zipfile.ZipFile(second) as b:
        left, right = a.infolist(), b.infolist()
        if [i.filename for i in left] != [i.filename for i in right]:
            return [f"entries differ: {len(left)} and {len(right)}, or in another order"]
        found = []
        for x, y in zip(left, right):
            if x.date_time != y.date_time:
                found.append(f"{x.filename}: dated {x.date_time} and {y.date_time}")
            if x.external_attr != y.external_attr:
                found.append(f"{x.filename}: mode {x.external_attr >> 16:o} and {y.external_attr >> 16:o}")
            if x.compress_type != y.compress_type:
                found.append(f"{x.filename}: compression {x.compress_type} and {y.compress_type}")
            if a.read(x) != b.read(y):
                found.append(f"{x.filename}: contents")
        return found


def main() -> int:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="stoker-reproducible-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        first = build_once(work, 0, commit)
        time.sleep(2)  # a zip keeps even seconds: the second build starts in another one
        second = build_once(work, 1, commit)
        print(f"built {commit[:7]} twice in {time.monotonic() - started:.0f} s")
        same = True
        for artifact in sorted(p.name for p in first.iterdir()):
            digests = [hashlib.sha256((d / artifact).read_bytes()).hexdigest() for d in (first, second)]
            print(f"  {artifact}: {digests[0]}" if digests[0] == digests[1] else
                  f"  {artifact}: DIFFERS {digests[0]} / {digests[1]}")
            if digests[0] != digests[1]:
                same = False
                for line in differences(first / artifact, second / artifact)[:20]:
                    print(f"    {line}")
    print("identical" if same else "not reproducible")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
