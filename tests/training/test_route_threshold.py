"""Choosing the router's threshold from per-image branch Dice (pure; no models)."""

from __future__ import annotations

import pytest

from tumorseg.training.route_threshold import (
    BranchDice,
    choose_route_threshold,
    fused_dice_by_threshold,
)


def test_the_threshold_keeps_homogeneous_images_out_of_a_weak_branch() -> None:
    images = [
        BranchDice(p_heterogeneous=0.9, homogeneous=0.6, heterogeneous=0.8),  # truly het
        BranchDice(p_heterogeneous=0.6, homogeneous=0.7, heterogeneous=0.3),  # homo, misrouted
        BranchDice(p_heterogeneous=0.2, homogeneous=0.7, heterogeneous=0.4),
    ]
    sweep = fused_dice_by_threshold(images, thresholds=(0.5, 0.7, 0.95))
    assert sweep[0.5] == pytest.approx((0.8 + 0.3 + 0.7) / 3)
    assert sweep[0.7] == pytest.approx((0.8 + 0.7 + 0.7) / 3)
    assert sweep[0.95] == pytest.approx((0.6 + 0.7 + 0.7) / 3)
    threshold, full = choose_route_threshold(images)
    assert full[threshold] == max(full.values())
    assert 0.6 <= threshold < 0.9  # every threshold in [0.6, 0.9) ties; the nearest to 0.5
    assert threshold == pytest.approx(0.6)


def test_no_tumor_image_keeps_the_default() -> None:
    assert choose_route_threshold([], default=0.5) == (0.5, {})
