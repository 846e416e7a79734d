"""``python -m validation.structured_table``: alias of ``dsm-curves structured`` (:mod:`validation.cli.structured`)."""
from validation.cli.structured import table_main

if __name__ == "__main__":
    raise SystemExit(table_main(prog="python -m validation.structured_table"))
