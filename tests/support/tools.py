"""The checkout's tools/*.py as modules, for their tests (tools/ is no package to import)."""
from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.support.stoker_proc import REPO


def load_tool(file_name: str, module_name: str) -> ModuleType:
    """tools/`file_name` loaded afresh as a module named `module_name`."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / "tools" / file_name)
    assert spec is not None and spec.loader is not None, file_name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
