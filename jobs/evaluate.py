"""Thin wrapper of ``tumorseg evaluate`` (:mod:`tumorseg.cli.evaluate`), so that
``ray job submit -- python jobs/evaluate.py …`` runs from a working directory."""

import sys

from tumorseg.cli.evaluate import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
