"""Where the planning child's WAKE may start a first run's runs (`launchfirst._in_own_module`):
in the code of one of Stoker's modules as it loads, or the import system loading one; never
while another module is half loaded (the start might import it) nor outside any import."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import FrameType

from executor.cli.launchfirst import _in_own_module

CAPTURE = "import sys\nFRAME = sys._getframe()\n"  # a module's code, as a signal would interrupt it


def frame_of_module(tmp_path: Path, name: str, text: str = CAPTURE) -> FrameType:
    """The frame of module `name`'s own code as it loads (imported from a file under tmp_path)."""
    path = tmp_path / (name.replace(".", "_") + ".py")
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FRAME


def test_a_module_of_stokers_as_it_loads_is_a_moment_to_start(tmp_path):
    assert _in_own_module(frame_of_module(tmp_path, "executor.wakeprobe"))


def test_what_a_module_of_stokers_calls_as_it_loads_is_a_moment_to_start(tmp_path):
    text = "import sys\ndef made():\n    return sys._getframe()\nFRAME = made()\n"
    assert _in_own_module(frame_of_module(tmp_path, "config.wakeprobe", text))


def test_another_module_half_loaded_is_not(tmp_path):
    assert not _in_own_module(frame_of_module(tmp_path, "wakeprobe"))


# the import system's frame that loads the module (its `spec` says which), as a signal that
# came while the module's code was being read would find it first
AT_LOAD = ("import sys\nFRAME = sys._getframe()\nwhile FRAME.f_code.co_name != '_load_unlocked':\n"
           "    FRAME = FRAME.f_back\n")


def loaded_by_the_import_system(tmp_path: Path, name: str) -> FrameType:
    path = tmp_path / (name.replace(".", "_") + ".py")
    path.write_text(AT_LOAD)
    spec = importlib.util.spec_from_file_location(name, path)
    try:
        module = importlib._bootstrap._load(spec)  # type: ignore[attr-defined]  # as an import does
    finally:
        sys.modules.pop(name, None)
    assert module.FRAME.f_code.co_filename.startswith("<frozen importlib")
    return module.FRAME


def test_the_import_system_loading_a_module_of_stokers_is_a_moment_to_start(tmp_path):
    assert _in_own_module(loaded_by_the_import_system(tmp_path, "executor.wakeload"))


def test_the_import_system_loading_another_module_is_not(tmp_path):
    assert not _in_own_module(loaded_by_the_import_system(tmp_path, "wakeload"))


def test_code_outside_any_import_is_not():
    assert not _in_own_module(sys._getframe())
