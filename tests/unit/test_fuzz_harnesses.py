"""Every fuzz harness (tests/fuzz/fuzz_NAME.py, run by `make fuzz`, never by pytest) still
fits the code it drives: its `load`, `seeds` and `target` run, without atheris, on each of
its seeds. `config`'s called `json_jobs` without the `named` argument it gained and `text`'s
called the loader's `_reason`, since moved to `config.explain.unread`: `make fuzz` stopped
each at its first input with an error of its own that it reported as a finding."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

HARNESSES = sorted(p.stem for p in (Path(__file__).parents[1] / "fuzz").glob("fuzz_*.py"))


@pytest.mark.parametrize("name", HARNESSES)
def test_the_harness_takes_its_own_seeds(name):
    harness = importlib.import_module(f"tests.fuzz.{name}")
    harness.load()
    seeds = harness.seeds()
    assert seeds, f"{name} has no seeds"
    for seed in seeds[:50]:
        harness.target(seed)
