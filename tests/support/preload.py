"""An LD_PRELOAD library built with the host's C compiler at test time, for the tests that
change what a libc call does in the processes they start (and nothing else on the host).

`build(tmp_dir, name, source)` compiles `source` into `tmp_dir/NAME.so`; a host without a
compiler, or one without libc's headers or libraries, skips the test saying so (a mistake
in `source` fails it). `preloaded(env, library)` is `env` with the library first in
LD_PRELOAD.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest


def build(tmp_dir: Path, name: str, source: str, title: str = "") -> Path:
    """`source` built as the shared library `tmp_dir/NAME.so` (`title`: its name in a skip's or
    a failure's words, NAME by default); its path."""
    title = title or name
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip(f"no C compiler to build the {title} library with")
    code, library = tmp_dir / f"{name}.c", tmp_dir / f"{name}.so"
    code.write_text(source)
    built = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(code), "-ldl"],
                           capture_output=True, text=True, errors="replace", timeout=60)
    if built.returncode != 0:
        said = next((line for line in built.stderr.splitlines() if "error" in line), built.stderr.strip())
        if not any(words in built.stderr for words in ("No such file", "cannot find")):  # its own mistake
            pytest.fail(f"the {title} library does not build ({compiler}, exit {built.returncode}):\n"
                        f"{built.stderr}")
        # a compiler without libc's headers or libraries (`fatal error: dlfcn.h: No such file
        # or directory`, `ld: cannot find crti.o`)
        pytest.skip(f"the {title} library does not build here ({compiler}, exit {built.returncode}): "
                    f"{said[:200]}")
    return library


def preloaded(env: Mapping[str, str], library: Path) -> dict[str, str]:
    """`env` with `library` preloaded (before any library it preloads already)."""
    out = dict(env)
    out["LD_PRELOAD"] = f"{library} {out['LD_PRELOAD']}" if out.get("LD_PRELOAD") else str(library)
    return out
