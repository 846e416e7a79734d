"""``python -m validation.time_figures``: alias of ``dsm-curves time figures`` (:mod:`validation.cli.training_time`)."""
from validation.cli.training_time import figures_main

if __name__ == "__main__":
    raise SystemExit(figures_main(prog="python -m validation.time_figures"))
