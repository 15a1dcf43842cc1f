"""The architecture as a test: pure modules import no I/O, and packages import one way.

The rules are the ones `executor/__init__.py` states:

    cli → {mesos, local, observe} → task → host → procs;   events and logs are shared by all
    mesos and local never import each other; procs imports neither task nor host
    executor/ may use healthcheck/ and config/; healthcheck/ uses config/ only;
    config/ uses neither

Every import counts, including the lazy ones inside functions.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PURE = [
    "executor/task/planner.py",
    "executor/task/process_rules.py",
    "executor/task/plans.py",
    "executor/task/replay.py",
    "executor/task/records.py",
    "executor/task/recordfields.py",
    "executor/task/runfacts.py",
    "executor/task/kill.py",
    "executor/task/status.py",
    "executor/task/disklimit.py",
    "executor/task/usagefigures.py",
    "executor/local/service.py",
    "executor/mesos/errors.py",
    "executor/mesos/recordio.py",
    "executor/mesos/jsonprefix.py",
    "executor/mesos/wire.py",
    "executor/mesos/session.py",
    "executor/mesos/reconnect.py",
    "executor/mesos/containerizer.py",
    "healthcheck/policy.py",
    "config/spec.py",
    "config/order.py",
    "config/orderproblems.py",
    "config/errors.py",
    "config/typed_tree.py",
    "config/jsonconfig.py",
    "config/templates.py",
    "config/refs.py",
    "config/bind.py",
    "config/schema/__init__.py",
    "config/schema/thermos.py",
    "config/schema/aurora.py",
    "config/schema/helpers.py",
    "config/announcer.py",
    "config/zookeeper.py",
    "executor/task/serverset.py",
    "executor/task/membership.py",
    "config/aurora/binary.py",
    "config/aurora/idl.py",
    "config/aurora/errors.py",
    "config/aurora/task.py",
    "config/aurora/launch.py",
    "config/portmap.py",
    "config/environment.py",
    "config/words.py",
    "config/purity.py",
    "config/quickargs.py",
    "config/explain.py",
    "executor/task/compaction.py",
    "executor/task/taskview.py",
    "executor/host/entry.py",
    "executor/host/truth.py",
    "executor/host/controlwire.py",
    "executor/procs/cgroup_paths.py",
    "executor/observe/routes.py",
    "executor/observe/logrange.py",
    "executor/observe/model.py",
    "executor/observe/html.py",
    "executor/observe/pages.py",
    "executor/observe/logpage.py",
    "executor/observe/assets.py",
    "executor/observe/exposition.py",
    "executor/observe/metrics.py",
]
FORBIDDEN = {"requests", "psutil", "subprocess", "socket", "threading", "os", "time", "logging",
             "select", "signal"}

# Which units each unit may import. A unit is a top-level package (config, healthcheck) or
# an executor sub-package / top-level executor module. Every unit must be listed: a new
# package has to say where it sits.
SHARED = {"executor.events", "executor.logs", "executor.spool"}
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "healthcheck": {"config"},
    "executor.events": {"healthcheck", "config"},
    "executor.logs": {"config"},
    "executor.spool": {"config", "executor.logs"},
    "executor.procs": {"config", "healthcheck"} | SHARED,
    "executor.host": {"executor.procs", "config"} | SHARED,
    "executor.task": {"executor.host", "executor.procs", "config", "healthcheck"} | SHARED,
    "executor.local": {"executor.task", "executor.host", "config", "healthcheck"} | SHARED,
    "executor.mesos": {"executor.task", "executor.host", "config", "healthcheck"} | SHARED,
    "executor.observe": {"executor.task", "executor.host", "executor.procs", "config",
                         "healthcheck"} | SHARED,
    "executor.cli": {"executor.mesos", "executor.local", "executor.observe", "executor.task",
                     "executor.host", "executor.procs", "executor.codecache", "executor.nodocs",
                     "executor.codebundle", "executor.deferred", "config", "healthcheck"} | SHARED,
    "executor.codecache": {"executor.nodocs", "executor.attrssteps", "executor.deferred", "executor.host",  # replacefile
                           "executor.codecachewarm", "executor.compileserved",  # `python -m executor.codecache`
                           "executor.codecachewrite",  # save()
                           "executor.nodoccode"},  # lines_only, compiling a class's methods
    "executor.compileserved": set(),
    "executor.codecachewrite": {"executor.codecache", "executor.host"},  # replacefile, turnlock
    "executor.codecachewarm": {"executor.codecache", "executor.codecachewrite", "executor.nodocs",
                               "executor.deferred", "executor.host",  # replacefile: a directory others may write
                               "executor.compileserved",  # its loader, around the one that loads attrs' _make
                               "executor.codebundle"},  # the run's bundle: its file's name, `names_in`
    "executor.attrsmethods": set(),
    "executor.attrssteps": {"executor.attrsmethods"},
    "executor.nodocs": {"executor.host", "executor.nodoccode"},  # replacefile: a directory others may change
    "executor.codebundle": {"executor.nodocs"},  # the files' header, trust and cache directory
    "executor.nodoccode": set(),
    "executor.deferred": set(),
    "executor.__main__": {"executor.cli"},
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name `path` imports (dotted, as written)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "executor":  # `from executor import task`
                names.update(f"executor.{alias.name}" for alias in node.names)
    return names


def unit_of(module: str) -> str | None:
    """'executor.task.owner' -> 'executor.task'; 'config.spec' -> 'config'; None: not ours."""
    parts = module.split(".")
    if parts[0] in ("config", "healthcheck"):
        return parts[0]
    if parts[0] != "executor" or len(parts) < 2:
        return None
    return f"executor.{parts[1]}"


def unit_of_path(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts
    if parts[0] == "executor" and len(parts) >= 2:
        return f"executor.{parts[1]}" if parts[1] != "__init__" else "executor"
    return parts[0]


def layering_violations(root: Path, allowed: dict[str, set[str]]) -> list[str]:
    problems = []
    for package in ("executor", "healthcheck", "config"):
        for path in sorted((root / package).rglob("*.py")):
            unit = unit_of_path(path, root)
            if unit == "executor":  # executor/__init__.py: docstring only
                continue
            if unit not in allowed:
                problems.append(f"{path.relative_to(root)}: package {unit} has no layering rule")
                continue
            for module in sorted(imported_modules(path)):
                target = unit_of(module)
                if target is None or target == unit or target == "executor":
                    continue
                if target not in allowed[unit]:
                    problems.append(f"{path.relative_to(root)} imports {module}: "
                                    f"{unit} may not import {target}")
    return sorted(set(problems))


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module):
    path = ROOT / module
    assert path.exists(), f"{module} is missing"
    bad = {m.split(".")[0] for m in imported_modules(path)} & FORBIDDEN
    assert not bad, f"{module} imports {sorted(bad)}; pure modules must not"


# The schema's structs subclass pystachio's `Struct`, which mypy sees as Any: strict typing
# (`disallow_subclassing_any`) cannot hold there.
NOT_STRICT = {"config.schema", "config.schema.aurora", "config.schema.helpers", "config.schema.thermos"}


def test_every_pure_module_is_in_the_strict_mypy_list():
    """docs/design.md §2: a pure module goes into PURE and into pyproject.toml's strict
    `[[tool.mypy.overrides]]` list, which checks it (nine had been added to PURE only)."""
    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    strict = {name for o in overrides if o.get("disallow_untyped_defs") for name in o["module"]}
    pure = {m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in PURE}
    assert sorted(pure - NOT_STRICT - strict) == []


def test_every_import_follows_the_layering():
    assert layering_violations(ROOT, ALLOWED) == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("executor", "healthcheck", "config"):
        (tmp_path / package).mkdir(exist_ok=True)
    return tmp_path


def test_a_planted_wrong_way_import_is_caught(tmp_path):
    root = _plant(tmp_path, {
        "executor/procs/spawn.py": "from executor.task.owner import TaskOwner\n",
        "executor/mesos/executor.py": "def f():\n    import executor.local.run\n",
        "executor/task/owner.py": "from executor.procs import supervisor\n",
        "healthcheck/loop.py": "from executor.events import TaskState\n",
    })
    assert layering_violations(root, ALLOWED) == [
        "executor/mesos/executor.py imports executor.local.run: executor.mesos may not import executor.local",
        "executor/procs/spawn.py imports executor.task.owner: executor.procs may not import executor.task",
        "healthcheck/loop.py imports executor.events: healthcheck may not import executor.events",
    ]


def test_a_package_without_a_rule_is_caught(tmp_path):
    root = _plant(tmp_path, {"executor/newthing/x.py": "import os\n"})
    assert layering_violations(root, ALLOWED) == [
        "executor/newthing/x.py: package executor.newthing has no layering rule"]
