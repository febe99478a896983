"""``python -m flows.cli``: the ``s2s`` command."""

from flows.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
