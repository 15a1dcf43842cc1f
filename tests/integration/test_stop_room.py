"""The room a supervisor keeps in the address space for its task's stop (`earlyfork.keep_stop_room`,
kept as its start ends at its first idle, let go as the stop begins: `Supervisor.stop_begun`)."""
from __future__ import annotations

import os

import pytest

from executor.procs import earlyfork
from executor.procs.supervisor import Supervisor

pytestmark = pytest.mark.timeout(30)
MARKER = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def supervisor(tmp_path):
    earlyfork.let_go_stop_room()
    sup = Supervisor(sandbox=tmp_path, task_label="test.0", env={"PATH": os.environ["PATH"]},
                     post=lambda event: None, marker=MARKER)
    try:
        yield sup
    finally:
        sup.close()
        earlyfork.let_go_stop_room()


def test_the_room_is_kept_as_the_start_ends_and_let_go_as_the_stop_begins(supervisor):
    supervisor.idle()  # the start's end
    assert earlyfork._stop_room is not None
    supervisor.stop_begun()
    assert earlyfork._stop_room is None
    supervisor.idle()  # a step of the stop
    assert earlyfork._stop_room is None


def test_a_stop_begun_before_the_start_ended_keeps_no_room(supervisor):
    """A stop queued before the owner's first step (a SIGTERM as `stoker run` started) begins
    before the start's end: the room kept then would take 4 MiB from the stop itself, under
    the limit of a full address space, until the close (it was kept: the stop had less room
    than with none kept at all)."""
    supervisor.stop_begun()
    supervisor.idle()  # the start's end, the stop under way
    assert earlyfork._stop_room is None
