"""`make test`'s last run, `-m serial`, imports only the test modules that say
`pytest.mark.serial` (tests/conftest.py); a test marked serial another way is refused by
name in every run, since neither of `make test`'s runs would run it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest with the suite's conftest and pytest.ini on the test files in `directory`."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-c", str(REPO / "pytest.ini"),
                           "--rootdir", str(directory), "-p", "no:cacheprovider", *args, str(directory)],
                          cwd=REPO, capture_output=True, text=True, timeout=50)


MARKED = "import pytest\n\n@pytest.mark.serial\ndef test_alone():\n    assert True\n\ndef test_beside():\n    assert True\n"
HIDDEN = "import pytest\n\nALONE = getattr(pytest.mark, 'ser' + 'ial')\n\n@ALONE\ndef test_alone():\n    assert True\n"


def test_the_serial_run_imports_only_the_modules_that_name_the_mark(tmp_path):
    (tmp_path / "test_marked.py").write_text(MARKED)
    (tmp_path / "test_plain.py").write_text("raise SystemExit('imported')\n")  # imported, it fails the run
    (tmp_path / "test_hidden.py").write_text(HIDDEN)  # imported, its test would run
    done = run_pytest(tmp_path, "-m", "serial")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 deselected" in done.stdout


def test_a_test_marked_serial_without_the_marks_text_is_refused_naming_its_module(tmp_path):
    (tmp_path / "test_marked.py").write_text(MARKED)
    (tmp_path / "test_hidden.py").write_text(HIDDEN)
    done = run_pytest(tmp_path, "-m", "not serial")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "marked serial without the text 'pytest.mark.serial'" in done.stderr
    assert str(tmp_path / "test_hidden.py") in done.stderr and "test_marked.py" not in done.stderr
