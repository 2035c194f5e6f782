"""Thin wrapper of ``tumorseg train`` (:mod:`tumorseg.cli.train`), so that
``ray job submit -- python jobs/train.py …`` runs from a working directory."""

import sys

from tumorseg.cli.train import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
