"""Test-only: on PYTHONPATH, makes a process send itself a real signal as it starts to
import a given module, a deterministic moment of its start (tests/e2e/test_start_interrupted.py).

`STOKER_TEST_SIGNAL_AT=MODULE:SIGNUM` (taken out of the environment, so that no child sees
it): the signal is raised once, as `MODULE` is looked for, and a line on stderr says so (a
test then knows the moment came: a module already loaded is never looked for)."""
import _signal  # type: ignore[import-not-found]
import os
import sys

_AT = os.environ.pop("STOKER_TEST_SIGNAL_AT", "")


class SignalAtImport:
    """A finder on `sys.meta_path` that finds nothing: it raises the signal instead."""

    def __init__(self, module: str, signum: int) -> None:
        self.module, self.signum = module, signum

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == self.module:
            sys.meta_path.remove(self)
            sys.stderr.write(f"signal-at-import: {self.signum} at {name}\n")
            sys.stderr.flush()
            _signal.raise_signal(self.signum)


if _AT:
    _module, _signum = _AT.rsplit(":", 1)
    sys.meta_path.insert(0, SignalAtImport(_module, int(_signum)))
