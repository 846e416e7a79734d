"""``python -m validation.time_table``: alias of ``dsm-curves time`` (:mod:`validation.cli.training_time`)."""
from validation.cli.training_time import table_main

if __name__ == "__main__":
    raise SystemExit(table_main(prog="python -m validation.time_table"))
