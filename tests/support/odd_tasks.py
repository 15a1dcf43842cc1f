"""Real tasks whose `/metrics` label values hold every character the text format must
carry, and one `stoker observe` over them: for the tests that read the observer's metrics
with other implementations of the format (prometheus_client's parser, Prometheus, promtool).

`odd_tasks(tmp, observer_port)` starts a real `stoker executor` under the agent simulator
whose task id is `ODD_ID` (a Mesos task id is any string: a double quote, a backslash, a
line feed, a carriage return, a tab, non-ASCII letters, an emoji, U+2028), a real `stoker run`
task in a sandbox named `ODD_SANDBOX` (the `sandbox` label of `stoker_task_info`) with a
shell health check, then the observer on `observer_port` (None: any free port), and yields
the `ObservedHost`; on exit everything is stopped and whatever the tasks left is killed.
Process names cannot be odd in a real task (the config's rules allow letters, digits, `_`,
`.` and `-`): tests/integration/test_observe_metrics.py writes such names into a checkpoint.
"""
from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from config.document import encode
from config.loader import load_job
from tests.support.agent_sim import AgentSimulator, make_task_info
from tests.support.observer import ObservedHost, config
from tests.support.stoker_proc import kill_leftovers, task_pids

ODD_ID = 'q"uote\\back\\\\slash\nline\r\ttab é 😀\u2028-0'
ODD_SANDBOX = 'sandbox "quoted" back\\slash\nline é'
HEALTHY = "true"


def _checked_service(directory: Path) -> Path:
    """A service `checked` with one process and a shell health check every 0.2 s."""
    path = directory / "checked.aurora"
    path.write_text(textwrap.dedent(f"""
        jobs = [Service(cluster='local', role='me', environment='test', name='checked',
                        task=Task(processes=[Process(name='server', cmdline='exec sleep 1000')],
                                  resources=Resources(cpu=0.25, ram=2*MB, disk=3*MB), finalization_wait=2),
                        health_check_config=HealthCheckConfig(
                            health_checker=HealthCheckerConfig(shell=ShellHealthChecker(shell_command={HEALTHY!r})),
                            initial_interval_secs=0.1, interval_secs=0.2),
                        lifecycle=DisableLifecycle)]
    """))
    return path


@contextlib.contextmanager
def odd_tasks(tmp: Path, observer_port: int | None = None) -> Iterator[ObservedHost]:
    host = ObservedHost(tmp)
    with contextlib.ExitStack() as stack:
        # last: whatever the run task left (`stoker run` prints its sandbox escaped, one line,
        # so `host.close` does not find this one from the printed path)
        stack.callback(lambda: kill_leftovers(task_pids(tmp / ODD_SANDBOX)))
        stack.callback(host.close)
        sandbox = tmp / "executor-sandbox"
        sandbox.mkdir()
        stack.callback(lambda: kill_leftovers(task_pids(sandbox)))  # after its agent closed
        sim = stack.enter_context(AgentSimulator(sandbox=sandbox))
        sim.launch_executor([sys.executable, "-m", "executor", "executor"], cwd=sandbox,
                            env_overrides={"STOKER_ROOT": str(host.root)})
        sim.wait_subscribed(timeout_secs=15)
        sim.launch(make_task_info(ODD_ID, encode(load_job(config(tmp, "odd", {"web": "exec sleep 1000"})))))
        host.run(_checked_service(tmp), "--sandbox", str(tmp / ODD_SANDBOX))
        sim.wait_for_state(ODD_ID, "TASK_RUNNING", 20)
        host.observe(*(("--port", str(observer_port)) if observer_port is not None else ()))
        yield host
