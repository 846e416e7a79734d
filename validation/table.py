"""``python -m validation.table``: alias of ``dsm-curves table`` (:mod:`validation.cli.table`)."""
from validation.cli.table import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m validation.table"))
