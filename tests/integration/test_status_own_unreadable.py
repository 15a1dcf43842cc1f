"""`stoker status` of a user's own task whose state its owner's own mode keeps from them
(`chmod 000` of `.stoker` or of its checkpoint: a mistaken chmod, a restore without modes).
It said "only the supervisor's user (or root) may read its task's state" to that very user;
it now says the mode is the cause, and which of the two holds it. Needs root, to be nobody."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.support.users import as_nobody, needs_root

pytestmark = [needs_root, pytest.mark.timeout(30)]

NOBODY = 65534


@pytest.mark.parametrize(("closed", "mode"), [(".stoker", 0o000), (".stoker/checkpoint.jsonl", 0o000)])
def test_a_checkpoint_its_owner_s_own_mode_hides_says_so(closed, mode):
    from executor.task.inspection import inspect_sandbox

    top = tempfile.mkdtemp(prefix="stoker-own-")
    try:
        os.chmod(top, 0o755)
        sandbox = os.path.join(top, "sandbox")
        os.makedirs(os.path.join(sandbox, ".stoker"), mode=0o700)
        with open(os.path.join(sandbox, ".stoker", "checkpoint.jsonl"), "w") as checkpoint:
            checkpoint.write('{"kind":"header"}\n')
        for path in (sandbox, sandbox + "/.stoker", sandbox + "/.stoker/checkpoint.jsonl"):
            os.chown(path, NOBODY, NOBODY)
        os.chmod(os.path.join(sandbox, closed), mode)
        answer = as_nobody(lambda: inspect_sandbox(sandbox).problem or "")
    finally:
        shutil.rmtree(top)
    assert answer == (f"cannot read the checkpoint in {sandbox}/.stoker: Permission denied (EACCES): "
                      f"{closed.rpartition('/')[2]} is yours, but its mode (000) lets not even its owner read "
                      "it (chmod u+rwx .stoker, u+rw .stoker/checkpoint.jsonl)")
