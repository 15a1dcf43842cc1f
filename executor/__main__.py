"""`python -m executor` is the same as `stoker`."""
from executor.cli.start import run

if __name__ == "__main__":
    run()
