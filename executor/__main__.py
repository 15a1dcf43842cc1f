"""`python -m executor` is the same as `stoker` (a project's `config.py` in the working
directory stays out of its way: `executor.forget_working_directory`)."""
import executor

executor.forget_working_directory()

from executor.cli.start import run  # noqa: E402  (after the path is settled)

if __name__ == "__main__":
    run()
