"""The `stoker` command line: parses argv, configures logging (the only package that does),
and calls the front-ends (`mesos`, `local`) or reads a sandbox for `status`/`tail`.

May import: every other executor package, config/, healthcheck/.
"""


class UsageError(Exception):
    """An argument names something that cannot be used: a sandbox that is no directory, a
    task id no registered task has. The message says which (exit 2). Here, not in
    `targets`, so that `stoker run` catches it without loading the inspection commands'
    target lookup."""
