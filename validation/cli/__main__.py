"""``python -m validation.cli``: the ``dsm-curves`` command."""
from validation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
