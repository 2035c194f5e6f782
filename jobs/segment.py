"""Thin wrapper of ``tumorseg segment`` (:mod:`tumorseg.cli.segment`), so that
``ray job submit -- python jobs/segment.py …`` runs from a working directory."""

import sys

from tumorseg.cli.segment import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
