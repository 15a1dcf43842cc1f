"""A plan's lease (`planfiles.lock`: its `.lock` file opened, then `flock`ed) and the pruning of
the plan cache (`plancache._unlink_unheld`: a lock file no run holds is removed, as a run that
stores a plan keeps at most KEEP): a run that had opened the lock file when another run's
pruning took that file's lock and unlinked it then took the lock of a file no longer there, and
held a lease a third run of the same config, making the file anew, held too: two runs of one
config, both keeping its plan and launch record. The pruning runs here between the open and
the `flock` (by a wrapper around the lease's open): the lease is then taken on the file the
path names, or not at all, never on a removed one."""
from __future__ import annotations

import os

from executor.local import plancache, planfiles


def test_a_lease_whose_file_was_pruned_as_it_was_taken_is_not_held_alongside_another(tmp_path, monkeypatch):
    path = str(tmp_path / "plan-0123456789abcdef.lock")
    real_open = os.open
    pruned = []

    def open_then_prune(name, *args, **kwargs):  # another run's pruning, between open and flock
        fd = real_open(name, *args, **kwargs)
        if name == path and not pruned:
            pruned.append(True)
            plancache._unlink_unheld(path)
        return fd

    monkeypatch.setattr(planfiles.os, "open", open_then_prune)
    first = planfiles.lock(path)
    monkeypatch.undo()
    assert pruned
    second = planfiles.lock(path)  # a run of the same config, after
    try:
        assert first is None or second is None, "two leases on one plan"
        held = first if first is not None else second
        assert held is not None and os.fstat(held).st_ino == os.stat(path).st_ino
    finally:
        for fd in (first, second):
            if fd is not None:
                os.close(fd)
