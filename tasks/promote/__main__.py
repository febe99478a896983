"""``python -m tasks.promote``: the DVC entry point of the promote stage."""

from tasks.promote import main

if __name__ == "__main__":
    raise SystemExit(main())
