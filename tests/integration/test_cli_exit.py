"""How `stoker` ends (`executor.cli.main.run`): its status, once the command returned."""
from __future__ import annotations

import pytest

from executor.cli import main as cli_main


def test_a_ctrl_c_while_the_output_drains_exits_130_without_a_traceback(monkeypatch):
    """`stoker run` returned (its signal relay closed) and waits, at most 2 s, for a terminal
    that stopped reading (Ctrl-S) to take its last lines; a Ctrl-C then was a KeyboardInterrupt
    out of the wait: a traceback, and not the shell's 130. Now it ends at once with 130."""
    exits: list[int] = []

    def drained() -> bool:
        raise KeyboardInterrupt

    def ended(status: int) -> None:
        exits.append(status)
        raise SystemExit(status)

    monkeypatch.setattr(cli_main, "main", lambda: 0)
    monkeypatch.setattr(cli_main, "drain_spool", drained)
    monkeypatch.setattr(cli_main.codecache, "save", lambda: False)
    monkeypatch.setattr(cli_main.os, "_exit", ended)
    with pytest.raises(SystemExit):
        cli_main.run()
    assert exits == [130]
