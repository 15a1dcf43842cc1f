"""`make fuzz`: every harness in this folder (or those named), one after another, each for
FUZZ_SECONDS, niced; prints the executions, the coverage and any finding per harness.

    python -m tests.fuzz.run [NAME ...]     # NAME: mesos_event for fuzz_mesos_event.py

Each harness runs in its own process on a corpus kept in `.fuzz/NAME/corpus` (git-ignored),
started from its seeds (`.fuzz/NAME/seeds`, written afresh each time from the tests' own
inputs); a finding is written to `.fuzz/NAME/crash-*` (or `timeout-*`, `oom-*`) and the
command exits 1. Settings from the environment: FUZZ_SECONDS (60), FUZZ_TIMEOUT (10: one
input's wall-clock limit), FUZZ_RSS_MB (1024), FUZZ_SLOW_SECS (2: one input's CPU limit,
harness.py).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / ".fuzz"
_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_RUNS = re.compile(r"Done (\d+) runs in (\d+) second")
_STATUS = re.compile(r"^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.M)


def harnesses(names: list[str]) -> list[str]:
    known = sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"no harness {', '.join(unknown)}; the harnesses are {', '.join(known)}")
    return names or known


def run_one(name: str, seconds: int) -> tuple[str, bool]:
    work = WORK / name
    corpus, seeds = work / "corpus", work / "seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    module = f"tests.fuzz.fuzz_{name}"
    python = [sys.executable, "-m", module]
    subprocess.run([*python, "--write-seeds", str(seeds)], cwd=ROOT, check=True, capture_output=True)
    flags = [f"-max_total_time={seconds}", f"-timeout={os.environ.get('FUZZ_TIMEOUT', '10')}",
             f"-rss_limit_mb={os.environ.get('FUZZ_RSS_MB', '1024')}", f"-artifact_prefix={work}/",
             f"-dict={HERE / 'json.dict'}", "-max_len=8192"]
    log = work / "log"
    with open(log, "w") as out:
        code = subprocess.run(["nice", "-n", "19", *python, *flags, str(corpus), str(seeds)],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    return summary(name, log.read_text(errors="replace"), code), code == 0


def summary(name: str, text: str, code: int) -> str:
    done, runs = _DONE.search(text), _RUNS.search(text)
    last = done or (_STATUS.findall(text) or [None])[-1]
    if isinstance(last, tuple):
        execs, cov, ft, corp = last
    elif last is not None:
        execs, cov, ft, corp = last.groups()
    else:
        execs = cov = ft = corp = "?"
    secs = runs.group(2) if runs else "?"
    verdict = "ok" if code == 0 else f"FINDING (exit {code}): see .fuzz/{name}/log"
    return f"{name:<18} {execs:>9} execs {secs:>4} s  cov {cov:>5}  ft {ft:>6}  corpus {corp:>5}  {verdict}"


def main(argv: list[str]) -> int:
    seconds = int(os.environ.get("FUZZ_SECONDS", "60"))
    failed = 0
    for name in harnesses(argv):
        line, ok = run_one(name, seconds)
        print(line, flush=True)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
