"""A sandbox a later `stoker run --sandbox` took over: the earlier task's logs were kept as
`.logs.attempt-N` and `.logs` is the later run's, so the observer's log route answers 404
for the earlier task, saying where its logs went, instead of the later run's logs under
the earlier task's id."""
from __future__ import annotations

import time

import pytest

from config.registry import RegistrySettings
from executor.host.entry import FrontEnd, RegistryEntry
from executor.host.identity import ProcessIdentity, own_identity
from executor.host.registry import Registry
from executor.observe.logrange import LogQuery
from executor.observe.reader import NotFound, Reader

pytestmark = pytest.mark.timeout(60)


def _two_runs(tmp_path, retention_secs: float, registered: tuple[float, float]) -> tuple[Reader, ProcessIdentity]:
    """A sandbox two runs of this process's supervisor took in turn (the second one's start a
    tick later on the boot's clock): the first's logs kept as `.logs.attempt-0`, ended 5 s
    ago, the second's `.logs`, live; registered at the wall times given. The reader, and who
    this process is."""
    me, settings = own_identity(), RegistrySettings(registry_root=str(tmp_path / "root"),
                                                    registry_retention_secs=retention_secs)
    sandbox = tmp_path / "sandbox"
    for logs, said in ((".logs.attempt-0", "first run\n"), (".logs", "second run\n")):
        (sandbox / logs / "web/0").mkdir(parents=True)
        (sandbox / logs / "web/0/stdout").write_text(said)
    ends = (time.time() - 5, None)
    for n, task_id in enumerate(("hello-0-first", "hello-0-second")):
        Registry(settings).write(RegistryEntry(
            sandbox=str(sandbox), supervisor_pid=me.pid, supervisor_start=me.start_ticks + n,
            supervisor_boot=me.boot_id, front_end=FrontEnd.RUN, registered_wall=registered[n],
            task_id=task_id, ended_wall=ends[n]), prune=False)
    return Reader(settings), me


def test_the_logs_of_a_task_whose_sandbox_a_later_run_took_are_not_the_later_run_s(tmp_path):
    now = time.time()
    reader, me = _two_runs(tmp_path, 600, (now - 10, now - 9))
    sandbox = tmp_path / "sandbox"
    assert reader.log("hello-0-second", "web", LogQuery()).data == "second run\n"
    with pytest.raises(NotFound) as found:
        reader.log("hello-0-first", "web", LogQuery(), supervisor=f"{me.pid}-{me.start_ticks}")
    assert str(found.value) == (
        f"the logs of task 'hello-0-first' are no longer in {sandbox}/.logs: a later run in the "
        f"sandbox (task 'hello-0-second') kept them as .logs.attempt-N "
        f"(`stoker tail --attempt N {sandbox} PROCESS`)")
    with pytest.raises(NotFound):
        reader.log("hello-0-first", "web", LogQuery())  # by its id alone too


def test_a_later_run_registered_after_a_step_back_of_the_wall_clock_is_still_the_later_one(tmp_path):
    """The wall clock stepped back an hour (NTP, a VM's clock set) between the two runs: the
    later run's registration reads an hour older than the earlier one's. Which run took the
    sandbox later is told by their supervisors' starts on the boot's clock, which no step
    moves (was: by the wall clock, and the later run's logs were served as the earlier
    task's)."""
    now = time.time()
    reader, me = _two_runs(tmp_path, 7200, (now - 10, now - 3600))  # stepped back between
    assert reader.log("hello-0-second", "web", LogQuery()).data == "second run\n"
    with pytest.raises(NotFound) as found:
        reader.log("hello-0-first", "web", LogQuery(), supervisor=f"{me.pid}-{me.start_ticks}")
    assert "a later run in the sandbox (task 'hello-0-second')" in str(found.value)
