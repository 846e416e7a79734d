"""``python -m validation.report``: alias of ``dsm-curves report`` (:mod:`validation.cli.report`)."""
from validation.cli.report import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m validation.report"))
