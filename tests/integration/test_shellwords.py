"""tests/support/shellwords.py, through a real shell and a real `.aurora` load: a path with a
space, a non-ASCII letter and every character the shell reads stays one word, and a line quoted
for a config's Python string is that line again once loaded (docs/testing.md §15). The tests'
command lines name this Python and the checkout through it, so a checkout anywhere runs them."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from config.loader import load_job
from tests.support.configs import job_text, plain, write_config
from tests.support.shellwords import in_aurora, python_sh

# A space, a non-ASCII letter, both quotes, a backslash and what else the shell reads
ODD = "sp ace ü 'q' \"d\" $HOME `id` \\n ; & | < > ( ) * ? [ ] # ~ { } !"
ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


@pytest.fixture
def odd(tmp_path: Path) -> Path:
    """A directory named ODD holding argv.py, which prints its arguments as JSON."""
    directory = tmp_path / ODD
    directory.mkdir()
    (directory / "argv.py").write_text(ARGV)
    return directory


def test_a_quoted_path_is_one_word_to_the_shell(odd):
    line = f"exec {python_sh(odd / 'argv.py', odd)} plain *"
    done = subprocess.run(["/bin/sh", "-c", line], cwd=odd, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [str(odd), "plain", "argv.py"]  # the unquoted * still globs


@pytest.mark.parametrize("quote", ["'", '"', "'''"])
def test_a_line_quoted_for_an_aurora_string_is_the_line_once_loaded(odd, tmp_path, quote):
    line = f"exec {python_sh(odd / 'argv.py', odd)} {{{{thermos.ports[http]}}}}"
    processes = f"[Process(name='p', cmdline={quote}{in_aurora(line)}{quote})]"
    job = load_job(write_config(tmp_path, job_text(processes)))
    assert plain(job)["task"]["processes"][0]["cmdline"] == line
