"""What every fuzz harness shares: the decoder's contract as a check, and the atheris main.

A harness module (`fuzz_NAME.py`) defines `INSTRUMENT` (the product packages atheris
instruments for coverage), `target(data)` (one input: call the pure decoder, assert its
contract) and `seeds()` (the seed corpus, built from the unit tests' own inputs), and ends
with `main(__name__)`. `run.py` (`make fuzz`) runs each one in its own process.

The contract a target asserts, per decoder: it returns a valid value or raises the error
type its module documents, with a message (`expect`); any other exception is a finding and
atheris stops with the input that raised it (`.fuzz/NAME/crash-*`). An input that takes
more than `FUZZ_SLOW_SECS` of CPU (default 2) is a finding too (`SlowInput`), and
libFuzzer's own `-timeout` and `-rss_limit_mb` catch a hang or unbounded memory.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")
SLOW_SECS = float(os.environ.get("FUZZ_SLOW_SECS", "2"))


class SlowInput(AssertionError):
    """One small input took longer than SLOW_SECS of CPU."""


class Finding(AssertionError):
    """The decoder broke its contract on this input (the message says how)."""


def expect(errors: type[BaseException] | tuple[type[BaseException], ...], call: Callable[..., _T],
           *args: Any, **kwargs: Any) -> _T | None:
    """`call(*args)`'s value, or None when it raised one of `errors` with a message;
    any other exception goes on, as a finding."""
    try:
        return call(*args, **kwargs)
    except errors as exc:
        if not str(exc).strip():
            raise Finding(f"{type(exc).__name__} without a message") from exc
        return None


def timed(target: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def one(data: bytes) -> None:
        start = time.process_time()
        target(data)
        spent = time.process_time() - start
        if spent > SLOW_SECS:
            raise SlowInput(f"{len(data)} bytes took {spent:.2f} s of CPU")
    return one


def write_seeds(seeds: Iterable[bytes], directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, seed in enumerate(seeds, 1):
        (directory / f"seed-{count:04d}").write_bytes(seed)
    return count


def main(name: str) -> None:
    """`python -m tests.fuzz.fuzz_NAME --write-seeds DIR` writes the seeds; any other
    arguments go to atheris (libFuzzer's flags and corpus directories)."""
    if name != "__main__":
        return
    module = sys.modules["__main__"]
    if sys.argv[1:2] == ["--write-seeds"]:
        print(write_seeds(module.seeds(), Path(sys.argv[2])), "seeds")
        return
    import atheris

    with atheris.instrument_imports(include=list(module.INSTRUMENT)):
        for product in module.INSTRUMENT:
            importlib.import_module(product)
        module.load()
    atheris.Setup(sys.argv, timed(module.target))
    atheris.Fuzz()
