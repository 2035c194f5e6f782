"""Package attributes imported on first use.

Ray workers, Serve replicas and the CLI import a package for one name; the others
(torch, MONAI, MLflow behind them) cost seconds per process, so packages export
their heavy names through this.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562): ``name`` comes from ``modules[name]`` (an
    absolute module name), imported the first time it is asked for, then cached."""

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(modules[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
