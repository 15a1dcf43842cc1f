"""The fuzz harnesses are run by `make fuzz` (tests/fuzz/run.py), never collected by pytest:
they need atheris, which is no test or CI dependency."""

collect_ignore_glob = ["*.py"]
