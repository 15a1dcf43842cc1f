"""The `stoker` command line: parses argv, configures logging (the only package that does),
and calls the front-ends (`mesos`, `local`) or reads a sandbox for `status`/`tail`.

May import: every other executor package, config/, healthcheck/.
"""
