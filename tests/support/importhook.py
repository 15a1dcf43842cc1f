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


# Once a run is over, as `stoker` saves what it compiled: an atexit function, a spooled line
# and a Ctrl-C, which the entry point's handler (`executor.cli.start.run`) takes; a second
# one inside that handler, which reaches the log's hook (`logsetup._crashed`). What a test of
# that moment looks for: "atexit ran" on stderr, stdout ending "spooled last", exit 130.
TWO_CTRL_CS_AS_IT_ENDS = patched_at_load("executor.cli.main", """
    import _signal  # (the builtin: the `signal` module loads no earlier than it would)
    import atexit

    def _patch(module):
        start = sys.modules["executor.cli.start"]
        real_save, real_status = module.codecache.save, start.exit_status

        def save():
            from executor.spool import spool
            atexit.register(os.write, 2, b"atexit ran\\n")
            spool().put(sys.stdout, "spooled last\\n", lambda exc: None)
            _signal.raise_signal(_signal.SIGINT)
            return real_save()

        def exit_status(interrupt):
            start.exit_status = real_status
            _signal.raise_signal(_signal.SIGINT)
            return real_status(interrupt)

        module.codecache.save, start.exit_status = save, exit_status
    """)
