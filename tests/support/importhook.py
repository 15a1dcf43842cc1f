"""Test-only `sitecustomize` texts that change a module of Stoker's as it loads, in a process
a test starts (the file on that process's PYTHONPATH alone): a moment of a real run held for
the test, with nothing changed in the product."""
from __future__ import annotations

import textwrap

_FINDER = """\
import importlib.util, os, sys, time

class _Finder:
    def find_spec(self, name, path, target=None):
        if name != {module!r}:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loaded = spec.loader.exec_module

        def exec_module(module):
            loaded(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec

{patch}
sys.meta_path.insert(0, _Finder())
"""


def patched_at_load(module: str, patch: str) -> str:
    """A sitecustomize that calls `_patch(module)` once `module` is loaded, before anything
    imports a name of it; `patch` is source that defines `_patch` (and what it uses) at the
    top level, where `importlib.util`, `os`, `sys` and `time` are imported."""
    return _FINDER.format(module=module, patch=textwrap.dedent(patch))
