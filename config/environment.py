"""The environment `stoker executor`'s task processes start from (docs/contract.md §4).

Owns `task_environment`: as Thermos gives it, only `PATH` (and `MESOS_SANDBOX`,
`MESOS_DIRECTORY`, which the agent sets), unless `preserve_env` (Thermos' `--preserve_env`)
asks for the executor's whole environment; never the agent's token, and the agent's address
and IDs only with `keep_agent_env` (`config.settings.pop_secrets`). The executor then adds
`HOME`, `USER` and `LOGNAME` for the user the processes run as, and the supervisor the
markers and `BASH_ENV`. `stoker run` does not use it: a developer's processes keep their
environment. Pure: no I/O.
"""
from __future__ import annotations

from collections.abc import Mapping

from config.settings import AGENT_VARIABLES, pop_secrets

# The PATH a task gets when the executor's own environment has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEPT = ("PATH", "MESOS_SANDBOX", "MESOS_DIRECTORY")


def task_environment(environ: Mapping[str, str], *, preserve_env: bool = False,
                     keep_agent_env: bool = False) -> dict[str, str]:
    """`KEPT` (and the AGENT_VARIABLES with `keep_agent_env`) from `environ`, or with
    `preserve_env` the whole of it; never the token."""
    if preserve_env:
        env = dict(environ)
    else:
        kept = KEPT + (AGENT_VARIABLES if keep_agent_env else ())
        env = {name: environ[name] for name in kept if environ.get(name)}
        env.setdefault("PATH", DEFAULT_PATH)
    pop_secrets(env, keep_agent_env=keep_agent_env)
    return env
