"""``python -m validation.real``: alias of ``dsm-curves real`` (:mod:`validation.cli.real`)."""
from validation.cli.real import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m validation.real"))
