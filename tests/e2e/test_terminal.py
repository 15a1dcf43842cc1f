"""`stoker run` at an operator's terminal: the live view and the log share one screen.

A real pseudo-terminal (tests/support/pty_proc.py) and real processes. The signals a stop
takes (SIGINT, SIGTERM, SIGHUP, a second one) and a closed stdout are in
tests/e2e/test_run_signals.py.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.support.pty_proc import PtyProcess
from tests.support.stoker_proc import kill_leftovers, task_pids

RESOURCES = "resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)"


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "job.aurora"
    path.write_text(textwrap.dedent(body))
    return path


def batch(tmp_path: Path, cmdline: str = "echo done") -> Path:
    return write_config(tmp_path, f"""
        main = Process(name='main', cmdline={cmdline!r})
        jobs = [Job(cluster='local', role='me', environment='test', name='batch',
                    task=Task(processes=[main], {RESOURCES}))]
    """)


def screen_lines(output: bytes) -> list[str]:
    """The terminal's lines (the pty writes \\r\\n) as they stay on the screen: what the
    console's "\\r ESC[2K" cleared is gone."""
    return [line.rsplit("\r\x1b[2K", 1)[-1] for line in output.decode().split("\r\n")]


def test_json_log_records_never_share_a_line_with_the_live_view(tmp_path):
    """`--log-format json` on a terminal: every log record is a JSON object on a line of its
    own, never glued after the live view the console keeps under its lines."""
    sandbox = tmp_path / "sandbox"
    term = PtyProcess(["run", str(batch(tmp_path)), "--sandbox", str(sandbox), "--log-format", "json",
                       "--log-level", "debug"], tmp_path)
    try:
        assert term.wait(20) == 0
        output = term.read_to_end(5)
    finally:
        term.close()
        kill_leftovers(task_pids(sandbox))
    records = [line for line in screen_lines(output) if '{"ts"' in line]
    assert any('"event": "process_spawned"' in r for r in records), output  # one came during the view
    for line in records:
        assert line.startswith('{"ts"'), f"a record shares its line: {line!r}"
        json.loads(line)
    assert b"\x1b[7m[" in output  # the live view was drawn
