"""``python -m validation.main``: alias of ``dsm-curves`` (:mod:`validation.cli`)."""
from validation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
