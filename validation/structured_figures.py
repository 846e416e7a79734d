"""``python -m validation.structured_figures``: alias of ``dsm-curves structured figures`` (:mod:`validation.cli.structured`)."""
from validation.cli.structured import figures_main

if __name__ == "__main__":
    raise SystemExit(figures_main(prog="python -m validation.structured_figures"))
