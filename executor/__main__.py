"""`python -m executor` is the same as `stoker`."""
from executor.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
