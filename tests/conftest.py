"""Every test's `stoker` runs register in a registry of their own, never the machine's.

Sets `STOKER_ROOT` for the whole session to a private temporary directory, before any test
starts a supervisor (in this process or as a child, which inherits the environment). A
test that looks at the registry itself gives its runs a root of its own.
"""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_stoker_root(tmp_path_factory: pytest.TempPathFactory):
    before = os.environ.get("STOKER_ROOT")
    os.environ["STOKER_ROOT"] = str(tmp_path_factory.mktemp("stoker-root"))
    yield
    if before is None:
        os.environ.pop("STOKER_ROOT", None)
    else:
        os.environ["STOKER_ROOT"] = before
