"""Layering unit (square partitions) and feedback unit (guide importance)."""

from tumorseg.partition.guide import importance_map
from tumorseg.partition.squares import is_exact_cover, partition_squares

DEFAULT_PASS_SCHEDULE: tuple[int, ...] = (50, 80, 100)

__all__ = ["DEFAULT_PASS_SCHEDULE", "importance_map", "is_exact_cover", "partition_squares"]
