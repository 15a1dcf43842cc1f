"""A task whose supervisor ends cleanly while a reader (`stoker ps`, `stoker status`, the
observer) reads it: the reader read the checkpoint (its last record RUNNING), the real
`stoker run` then recorded KILLED and exited, and only then did the reader look for the
supervisor. Before, that one reading judged the task LOST (a running task that was never
lost, in a row that flipped RUNNING, LOST, KILLED, with its leftovers looked for); a gone
supervisor's checkpoint that changed since it was read is now read again, since nothing
follows its last write. The real run is stopped between the two steps by a wrapper around
the reader's checkpoint read, so the order is forced, not timed."""
from __future__ import annotations

import os
import signal

import pytest

from config.registry import RegistrySettings
from executor.host.registry import Registry
from executor.host.registrylookup import find_sandbox
from executor.task import inspection
from tests.support.stoker_proc import StokerProcess, kill_leftovers, task_pids

pytestmark = pytest.mark.timeout(120)

CONFIG = """\
jobs = [Service(cluster='local', role='me', environment='test', name='web',
                task=Task(processes=[Process(name='web', cmdline='exec sleep 600')],
                          resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
"""


@pytest.mark.parametrize("with_entry", [True, False], ids=["ps", "status-sandbox"])
def test_a_task_that_ends_between_its_checkpoint_read_and_its_supervisor_look_is_not_lost(
        tmp_path, monkeypatch, with_entry):
    (tmp_path / "web.aurora").write_text(CONFIG)
    sandbox = tmp_path / "sandbox"
    run = StokerProcess(["run", str(tmp_path / "web.aurora"), "--sandbox", str(sandbox)], tmp_path)
    pids: set[int] = set()
    try:
        run.wait_output("STARTING → RUNNING", 60)
        pids = task_pids(sandbox)
        listed = find_sandbox(Registry(RegistrySettings(registry_root=os.environ["STOKER_ROOT"])).read(), str(sandbox))
        assert listed is not None and listed.entry.ended_wall is None
        entry = listed.entry if with_entry else None
        real_view = inspection._view

        def view_then_end(*args, **kwargs):  # the run ends after its checkpoint was read
            read = real_view(*args, **kwargs)
            if run.proc.poll() is None:
                run.signal(signal.SIGTERM)
                assert run.wait() == 143, run.stderr()
            return read

        monkeypatch.setattr(inspection, "_view", view_then_end)
        seen = inspection.inspect_sandbox(sandbox, entry)
        assert run.proc.poll() == 143  # the run did end in between
        assert (seen.truth.state, seen.truth.alive) == ("KILLED", False), seen.truth
        # and it let go saying so: `stoker ps` need not replay its checkpoint to know it ended
        after = find_sandbox(Registry(RegistrySettings(registry_root=os.environ["STOKER_ROOT"])).read(), str(sandbox))
        assert after is not None and (after.entry.end_recorded, after.entry.ended_state) == (True, "KILLED")
    finally:
        run.close()
        kill_leftovers(pids | task_pids(sandbox))

