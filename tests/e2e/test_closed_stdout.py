"""A command whose reader closed its stdout before it wrote (`stoker inspect ... | true`):
the write's BrokenPipeError ends it with status 0 and no word, its stdout sent to /dev/null
so that the interpreter's last flush says nothing either (`executor/cli/main.py`'s
`_handled`)."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.stoker_proc import REPO


def test_a_reader_gone_before_the_output_ends_the_command_with_0_and_no_word():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: the first write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "executor", "inspect", str(REPO / "examples/batch_job.aurora")],
                              cwd=REPO, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")
