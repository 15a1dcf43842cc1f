"""A sandbox whose path holds what bash expands (`$`, `` ` ``, `\\`): its `.thermos_profile`
is sourced by every process, and nothing in the path runs. bash expands `BASH_ENV`'s value
as a word in double quotes before it reads the file, so Stoker writes the path with those
characters escaped (`executor/procs/runenv.py`, `bash_env`). Was: the profile of a sandbox
named `sb$HOME` was never sourced, and a sandbox named `sb$(touch planted)` ran `touch
planted` as each process started. Through the real `stoker run`."""
from __future__ import annotations

import pytest

from tests.e2e.test_cli_conventions import stoker
from tests.support.configs import RESOURCES, write_config

# The first process writes the profile; the second, started after it, shows what it set.
PROFILED = f"""
    setup = Process(name='setup', cmdline='echo "export FROM_PROFILE=sourced" > .thermos_profile')
    show = Process(name='show', cmdline='echo "${{FROM_PROFILE:-not sourced}}"')
    jobs = [Job(cluster='local', role='me', environment='test', name='profiled',
                task=SequentialTask(processes=[setup, show], {RESOURCES}))]
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["sb$HOME", "sb$(touch planted)", "sb`touch ticked`", "sb\\$HOME", "sb${x:=y}\\"])
def test_the_profile_of_a_sandbox_named_with_shell_characters_is_sourced_and_nothing_runs(tmp_path, name):
    config = write_config(tmp_path, PROFILED)
    sandbox = tmp_path / name
    result = stoker("run", str(config), "--sandbox", str(sandbox), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (sandbox / ".logs/show/0/stdout").read_text() == "sourced\n"
    made = sorted(p.name for p in sandbox.iterdir())
    assert made == [".logs", ".stoker", ".thermos_profile"]  # no `planted`, no `ticked`
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([config.name, name])
