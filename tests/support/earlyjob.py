"""The early start's tests' job (tests/e2e/test_early_start.py, test_early_start_signals.py):
a config of the given processes, and what a run printed."""
from __future__ import annotations

import textwrap
from pathlib import Path

JOB = """
    jobs = [Job(cluster='local', role='me', environment='test', name='early',
                task=Task(processes=[{processes}], resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB),
                          finalization_wait=2))]
"""


def write(tmp_path: Path, *processes: str) -> Path:
    config = tmp_path / "job.aurora"
    config.write_text(textwrap.dedent(JOB.format(processes=", ".join(processes))))
    return config


def stdout_of(sandbox: Path, process: str, run: int = 0) -> str:
    return (sandbox / ".logs" / process / str(run) / "stdout").read_text()
