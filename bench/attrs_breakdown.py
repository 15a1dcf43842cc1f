"""Where attrs' class-making goes in `stoker run`'s imports (issue 14, attrscost).

    .venv/bin/python bench/attrs_breakdown.py [--runs 11] [--repo DIR]

Each run is a fresh interpreter that imports what `stoker run` imports, with the loaders and
the code cache installed as `bench/importcut_ab.py --imports` installs them, and attrs'
class-making steps wrapped (`attr._make`'s `attrs()` as `attrs.define` and `attrs.frozen`
call it, `_ClassBuilder`'s steps, `_transform_attrs`): the CPU time of each step
(`time.thread_time_ns`, summed over every class; a step inside another is in both), the
classes made, the collector's passes during the imports and their CPU time, the objects
they found unreachable, and what the code cache served and compiled. Runs alternate
between the collector as the interpreter has it and the collector off
(`gc.disable()` before the imports: attrs' own Python, without the passes its allocations
set off). Prints each step's median per mode, and the load.

A breakdown only: the wrappers cost a little themselves (some 0.3 µs a call), so the
steps' sum is above the unwrapped figure; the headline figure is `importcut_ab.py
--imports`'s, taken without them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import benchlib
from bench_launch import PLAIN_IMPORTS
from importcut_ab import IMPORTS

STEPS = ("__init__", "add_init", "add_repr", "add_eq", "add_hash", "add_setattr", "add_match_args",
         "build_class", "_eval_snippets", "_create_slots_class", "_patch_original_class")
# wraps attrs' steps (by name, those this attrs has), then counts the collector's passes
WRAPS = f"""
import gc, json, time
if {{gc_off}}:
    gc.disable()
from attr import _make, _next_gen
spent = {{{{}}}}
def timed(owner, name, label):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        start = time.thread_time_ns()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0) + time.thread_time_ns() - start
    setattr(owner, name, wrapper)
for step in {STEPS!r}:
    if hasattr(_make._ClassBuilder, step):
        timed(_make._ClassBuilder, step, step)
timed(_make, "_transform_attrs", "_transform_attrs")
timed(_next_gen, "attrs", "attrs() in all")
made = []
build = _make._ClassBuilder.build_class
_make._ClassBuilder.build_class = lambda self: made.append(1) or build(self)
passes = []
def watch(phase, info, started=[0]):
    if phase == "start":
        started[0] = time.thread_time_ns()
    else:
        passes.append((time.thread_time_ns() - started[0], info["collected"]))
gc.callbacks.append(watch)
"""
REPORT = """
gc.callbacks.remove(watch)
spent["classes"] = len(made)
spent["collector passes"] = len(passes)
spent["collector, CPU"] = sum(ns for ns, _ in passes)
spent["found unreachable"] = sum(found for _, found in passes)
spent["code cache served, compiled"] = list(codecache.counts())
print(json.dumps(spent), flush=True)
"""


def probe(gc_off: bool) -> str:
    """`importcut_ab`'s imports, with attrs' steps wrapped and a JSON line of what they spent."""
    statement = PLAIN_IMPORTS["stoker run"]
    wrapped = WRAPS.format(gc_off=gc_off) + statement + REPORT
    return IMPORTS.replace("; " + statement, "\n" + wrapped, 1)


def one_run(repo: Path, gc_off: bool) -> dict[str, object]:
    """What one fresh interpreter of checkout `repo` spent (its JSON line), and its imports' CPU."""
    lines = subprocess.run([sys.executable, "-c", probe(gc_off)], check=True, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(repo)), stdin=subprocess.DEVNULL,
                           cwd=repo).stdout.strip().splitlines()
    spent: dict[str, object] = json.loads(lines[-2])
    spent["imports, CPU"] = float(lines[-1]) * 1e9
    return spent


def table(runs: dict[str, list[dict[str, object]]]) -> list[str]:
    """Each figure's median per mode: ms for CPU times, a count otherwise."""
    first = ("attrs() in all", "__init__", "_transform_attrs", *STEPS[1:])
    found = [name for name in runs["collector on"][0] if name != "code cache served, compiled"]
    names = [name for name in first if name in found] + [name for name in found if name not in first]
    rows = ["| figure | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for name in names:
        cells = []
        for spent in runs.values():
            values = [float(one.get(name, 0)) for one in spent]  # type: ignore[arg-type]
            median = statistics.median(values)
            counted = name in ("classes", "collector passes", "found unreachable")
            cells.append(f"{median:.0f}" if counted else f"{median / 1e6:.2f} ms")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    served = {tuple(one["code cache served, compiled"]) for spent in runs.values() for one in spent}  # type: ignore[arg-type]
    rows.append(f"code cache (served, compiled) in the runs: {sorted(served)}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/attrs_breakdown.py")
    parser.add_argument("--runs", type=int, default=11, help="runs of each mode, alternated")
    parser.add_argument("--repo", type=Path, default=benchlib.REPO, help="the checkout (this one by default)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    benchlib.compile_bytecode(repo)
    loads = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, object]]] = {"collector on": [], "collector off": []}
    for _ in range(args.runs):
        for mode, spent in runs.items():
            spent.append(one_run(repo, mode == "collector off"))
    loads.append(os.getloadavg()[0])
    print(f"{repo}: {args.runs} runs of each mode; 1-minute load {min(loads):.1f}-{max(loads):.1f}")
    print("\n".join(table(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
