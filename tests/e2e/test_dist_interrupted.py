"""A Ctrl-C that reaches the log's hook (`logsetup._crashed`) in stoker.pyz ends it as it ends
`stoker` (the console script): what it spooled written, atexit's functions run, exit 130, no
traceback. The built zipapp run by a plain Python (`tests/e2e/test_dist.py`'s fixtures, its
clean directory and environment), a test-only sitecustomize on PYTHONPATH making the moment."""
from __future__ import annotations

import textwrap

import pytest

from tests.e2e.test_dist import app, dist, work  # noqa: F401  (its fixtures: the one built zipapp)
from tests.support.distapp import run_app
from tests.support.importhook import TWO_CTRL_CS_AS_IT_ENDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]



def test_a_ctrl_c_reaching_the_log_s_hook_in_the_zipapp_flushes_the_spool_and_runs_atexit(app, tmp_path):  # noqa: F811
    """Was: the log's hook handed it to the hook found, the zipapp's own loading hook (not
    `stoker`'s: `executor.QUIET` marks both now), which ended the process with
    os._exit(130): no atexit function ran, and what `stoker run` had spooled could be lost."""
    (tmp_path / "sitecustomize.py").write_text(TWO_CTRL_CS_AS_IT_ENDS)
    (app["dir"] / "ended.aurora").write_text(textwrap.dedent("""
        jobs = [Job(cluster='local', role='me', environment='test', name='ended',
                    task=Task(processes=[Process(name='a', cmdline='echo done')],
                              resources=Resources(cpu=0.1, ram=1*MB, disk=1*MB)))]
    """))
    sandbox = app["work"] / "interrupted-sandbox"
    done = run_app(app, [app["python"], "stoker.pyz", "run", "ended.aurora", "--sandbox", str(sandbox)],
                   env={**app["env"], "PYTHONPATH": str(tmp_path)})
    assert (done.returncode, "Traceback" in done.stderr) == (130, False), (done.stdout, done.stderr)
    assert "atexit ran" in done.stderr and done.stdout.endswith("spooled last\n"), (done.stdout, done.stderr)
    assert (sandbox / ".logs/a/0/stdout").read_text() == "done\n"
