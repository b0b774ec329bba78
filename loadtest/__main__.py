"""`python -m loadtest` is the same as the `r1-loadtest` console script."""

from loadtest.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
