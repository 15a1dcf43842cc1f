"""Task documents and Aurora AssignedTasks as the tests make them (the seeds of the task
harnesses): the examples' documents, the property tests' documents, the Thrift test tasks."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def documents() -> list[bytes]:
    from config import document
    from config.loader import load_job
    from tests.support.task_documents import valid_documents

    out = [document.encode(load_job(path), 1, {"http": 31000})
           for path in sorted((ROOT / "examples").glob("*.aurora"))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out += [json.dumps(valid_documents().example()).encode() for _ in range(10)]
    return out


def aurora_tasks() -> list[bytes]:
    from tests.support import aurora_tasks as at

    out = [at.assigned_task(at.JOB_JSON, role="www-data", ports={"http": 31000, "admin": 31001}, order=order)
           for order in at.Order]
    out += [at.encode(at.scheduler_task(at.module(at.Order.ASCENDING, future=True), kind))
            for kind in ("mesos", "docker")]
    return out
