"""Every name a Stoker module lists in `__all__` is there at run time, so that `from MODULE
import *` (and tools that read `__all__`: pydoc, a linter's re-export check) gets it.

`executor/task/ports.py` listed its eight Protocols after they became the type checker's
only (under `TYPE_CHECKING`): `from executor.task.ports import *` raised AttributeError.
"""
from __future__ import annotations

import importlib
import pkgutil

import config
import executor
import healthcheck


def stoker_modules() -> list[str]:
    return [info.name for package in (executor, config, healthcheck)
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
            if not info.name.endswith("__main__")]


def test_every_name_in_a_modules_all_is_there_at_run_time():
    missing = {}
    for name in stoker_modules():
        module = importlib.import_module(name)
        absent = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
        if absent:
            missing[name] = absent
    assert missing == {}


def test_a_star_import_of_the_task_ports_gets_what_runs():
    namespace: dict = {}
    exec("from executor.task.ports import *", namespace)  # the statement under test
    assert {"OwnerPorts", "SpawnError"} <= namespace.keys()
