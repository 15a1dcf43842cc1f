"""Every state the observer's pages colour (`executor.observe.html.state`: a `s-NAME` class)
has a colour in its stylesheet: a task's NEW (its first moment, and the first state of
every change it lists), a run RESTARTED by the operator and the ServerSet membership's
states were shown in the plain text colour, as if they were not states; so were the
supervisor's phases (the task page's "Supervisor phases": ACTIVE, CLEANING, FINALIZING)."""
from __future__ import annotations

import re

from executor.events import ProcessState, RunOutcome, TaskPhase, TaskStage
from executor.observe.assets import STYLE
from executor.observe.html import state
from executor.observe.metrics import HEALTH_OUTCOMES, HEALTH_STATES, PROCESS_STATES, TASK_STATES
from executor.task.membership import MemberState


def test_every_state_the_pages_show_has_a_colour():
    coloured = set(re.findall(r"\.s-(\w+)", STYLE))
    shown = {*TASK_STATES, *PROCESS_STATES, *HEALTH_STATES, *HEALTH_OUTCOMES, "HEALTHY", "UNHEALTHY",
             *(s.value for s in (*TaskStage, *TaskPhase, *ProcessState, *RunOutcome, *MemberState))}
    assert sorted(shown - coloured) == []


def test_a_task_whose_sandbox_is_gone_has_a_colour_of_its_own():
    """`SANDBOX GONE` (a live supervisor whose sandbox was renamed or deleted) was given the
    class of any other text, `s-other`, and shown uncoloured beside the states around it."""
    css = re.search(r'class="state s-([^"]+)"', state("SANDBOX GONE")).group(1)
    assert re.search(rf"\.s-{css}[ ,][^{{]*\{{ color: var\(--bad\)", STYLE), css
