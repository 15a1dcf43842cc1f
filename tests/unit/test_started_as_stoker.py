"""`executor._started_as_stoker`: which processes get the quiet Ctrl-C while `stoker` loads
(`executor/__init__.py`): the console script and `python -m executor`, however the `-m` is
spelled, and no process that imports Stoker's modules as a library."""
from __future__ import annotations

import pytest

from executor import _started_as_stoker


@pytest.mark.parametrize("argv, orig_argv", [
    (["/opt/stoker/bin/stoker", "run", "job.aurora"], ["/opt/stoker/bin/python", "/opt/stoker/bin/stoker", "run",
                                                      "job.aurora"]),
    (["stoker"], ["python3", "stoker"]),
    (["-m", "status", "."], ["python3", "-m", "executor", "status", "."]),
    (["-m"], ["python3", "-P", "-X", "importtime", "-m", "executor"]),
    (["-m", "-m"], ["python3", "-m", "executor", "-m"]),  # an argument that looks like the option
    (["-m", "ps"], ["python3", "-mexecutor", "ps"]),
    (["-m", "ps"], ["python3", "-Imexecutor", "ps"]),
])
def test_stoker_and_python_m_executor_are_stoker(argv, orig_argv):
    assert _started_as_stoker(argv, orig_argv)


@pytest.mark.parametrize("argv, orig_argv", [
    (["-m"], ["python3", "-P", "-m", "executor.codecache"]),
    (["-m", "executor"], ["python3", "-m", "mytool", "executor"]),  # a tool's argument named so
    (["-m"], ["python3", "-mexecutor.nodocs"]),
    (["-m"], ["python3", "-mmexecutor"]),  # a module named `mexecutor`: the word after the first m
    (["-m", "-q"], ["python3", "-m", "pytest", "-q"]),
    (["-c"], ["python3", "-c", "import executor"]),
    (["/usr/bin/stoker-tests"], ["python3", "/usr/bin/stoker-tests"]),
    (["./stoker/run.py"], ["python3", "./stoker/run.py"]),
    ([], []),
    (["-m"], []),  # an embedding interpreter's
])
def test_any_other_process_is_not(argv, orig_argv):
    assert not _started_as_stoker(argv, orig_argv)
