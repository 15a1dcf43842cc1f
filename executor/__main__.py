"""`python -m executor` is the same as `stoker`."""
from executor.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
