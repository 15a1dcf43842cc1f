"""`stoker inspect`'s readable form of a loaded job. Formatting only: no I/O."""
from __future__ import annotations

import json
from typing import Any

from config.templates import port_names


def _flags(proc: dict[str, Any]) -> str:
    flags = [name for name in ("daemon", "ephemeral", "final") if proc.get(name)]
    flags.append(f"max_failures={proc.get('max_failures', 1)}")
    flags.append(f"min_duration={proc.get('min_duration', 5)}")
    return " ".join(flags)


def describe_job(job) -> str:
    doc = json.loads(job.json_dumps())
    task = doc.get("task", {})
    key = "/".join(str(doc.get(k, "?")) for k in ("cluster", "role", "environment", "name"))
    lines = [
        f"job {key}",
        f"  service={doc.get('service', False)} instances={doc.get('instances', 1)} "
        f"max_task_failures={doc.get('max_task_failures', 1)}",
        f"  task {task.get('name', '?')}: max_failures={task.get('max_failures', 1)} "
        f"max_concurrency={task.get('max_concurrency', 0)} finalization_wait={task.get('finalization_wait', 30)}",
    ]
    res = task.get("resources")
    if res:
        lines.append("  resources " + " ".join(f"{k}={v}" for k, v in sorted(res.items())))
    lines.append("  processes:")
    for proc in task.get("processes", []):
        lines.append(f"    {proc.get('name')}  [{_flags(proc)}]")
        for cmd_line in str(proc.get("cmdline", "")).strip("\n").splitlines():
            lines.append(f"      | {cmd_line}")
    for constraint in task.get("constraints", []) or []:
        lines.append("  order " + " → ".join(constraint.get("order", [])))
    hc = doc.get("health_check_config") or {}
    checker = hc.get("health_checker") or {}
    kinds = ", ".join(sorted(checker)) or "http (default)"
    lines.append(
        f"  health_check_config: checker={kinds} initial_interval_secs={hc.get('initial_interval_secs', 15.0)} "
        f"interval_secs={hc.get('interval_secs', 10.0)} timeout_secs={hc.get('timeout_secs', 1.0)} "
        f"max_consecutive_failures={hc.get('max_consecutive_failures', 0)} "
        f"min_consecutive_successes={hc.get('min_consecutive_successes', 1)}"
    )
    lifecycle = (doc.get("lifecycle") or {}).get("http")
    if lifecycle:
        lines.append(
            f"  lifecycle: port={lifecycle.get('port', 'health')} "
            f"{lifecycle.get('graceful_shutdown_endpoint', '/quitquitquit')} then "
            f"{lifecycle.get('shutdown_endpoint', '/abortabortabort')}"
        )
    names = port_names(job)
    lines.append("  ports: " + (", ".join(names) if names else "(none)"))
    return "\n".join(lines) + "\n"
