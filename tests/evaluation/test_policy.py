"""Choosing the policy from saved predictions, on hand-made cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from hand_made import hand_predictions

from tumorseg.config import SegmenterConfig
from tumorseg.evaluation import choose_policy
from tumorseg.evaluation.policy import compare_policies, plateau_centre


def square(y: int, x: int, side: int = 20, size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y : y + side, x : x + side] = True
    return mask


@pytest.fixture
def predictions(tmp_path):
    """A: homogeneous lesion the gray net finds and the FCN misses, classifier sure it is
    homogeneous; B: heterogeneous lesion the gray net misplaces and the FCN (guided by
    the gray net) finds, classifier sure it is heterogeneous; N: a normal image where
    the gray net sees a weak blob and the classifier says "normal"."""
    return hand_predictions(tmp_path, _items(n_heterogeneous=4))


def _items(n_heterogeneous: int) -> list:
    a, b = square(10, 10), square(30, 30)
    empty = np.zeros((64, 64), np.float32)
    heterogeneous = (
        b,
        {"graynet": square(5, 40) * 1.0, "fcn_graynet": b * 1.0, "fcn_own": empty},
        (0.05, 0.1, 0.85),
    )
    return [
        ("A", a, {"graynet": a * 1.0, "fcn_graynet": empty, "fcn_own": empty}, (0.05, 0.8, 0.15)),
        *((f"B{i}", *heterogeneous) for i in range(n_heterogeneous)),
        ("N", np.zeros((64, 64), bool), {"graynet": square(0, 0) * 0.6}, (0.9, 0.05, 0.05)),
    ]


#: No cost cap: four of the five tumor images here are best on the FCN route.
UNCAPPED = 1.0


def test_choice_finds_the_known_best_policy(predictions) -> None:
    config, report = choose_policy(
        predictions, SegmenterConfig(presence_source="classifier"), max_fcn_share=UNCAPPED
    )
    assert config.route_source == "classifier"  # the score cannot tell A from B here
    assert config.fcn_guide == "graynet"  # the FCN on its own seed finds nothing
    # p(heterogeneous | tumor): A 0.158, B 0.895; every threshold between them is right
    assert 0.158 < config.route_threshold < 0.895
    assert report["segmentation"]["dice"] == pytest.approx(1.0)
    # presence: the classifier separates N (p_tumor 0.1) from A and B (0.95)
    assert config.presence_source == "classifier"
    assert 0.1 < config.presence_threshold <= 0.95
    assert report["presence_sweep"]["none"] == pytest.approx(5 / 6)  # N would score 0


def test_a_routing_that_wins_within_chance_gives_way_to_the_gray_net(tmp_path) -> None:
    """One heterogeneous image in two: routing wins, but a resampling of the pair can
    hold only the image it does not help, so the gray net alone is kept."""
    predictions = hand_predictions(tmp_path, _items(n_heterogeneous=1))
    config, report = choose_policy(predictions, SegmenterConfig(), max_fcn_share=UNCAPPED)
    assert config.route_threshold == 1.0
    assert report["routing_minus_graynet_alone"]["mean"] == 0.5
    assert report["routing_minus_graynet_alone"]["low"] == 0.0


def test_presence_source_is_kept_and_only_its_threshold_chosen(predictions) -> None:
    config, report = choose_policy(predictions, SegmenterConfig(presence_source="map"))
    assert config.presence_source == "map"
    assert 0.6 < config.presence_threshold <= 1.0  # N's peak 0.6, the tumors' 1.0
    assert not any(key.startswith("classifier@") for key in report["presence_sweep"])


def test_a_routing_over_the_cost_cap_is_not_a_candidate(predictions) -> None:
    """Routing B's four images to the FCN is best, but four in five is over a cap of
    one in five: no threshold between A and B is tried, and the gray net takes all."""
    config, report = choose_policy(predictions, SegmenterConfig(), max_fcn_share=0.2)
    assert config.route_threshold == 1.0
    assert report["max_fcn_share"] == 0.2
    assert report["segmentation"]["dice"] == pytest.approx(0.2)  # only A is right
    tried = [key for key in report["segmentation_sweep"] if key.startswith("classifier/")]
    assert tried and not any("@0.50" in key for key in tried)  # 0.2-0.85 route B's four
    uncapped, _ = choose_policy(predictions, SegmenterConfig(), max_fcn_share=UNCAPPED)
    assert 0.158 < uncapped.route_threshold < 0.895


def test_alternatives_are_scored_from_the_same_predictions(predictions) -> None:
    config, _ = choose_policy(
        predictions, SegmenterConfig(presence_source="classifier"), max_fcn_share=UNCAPPED
    )
    table = compare_policies(predictions, config, 0.001)
    assert table["chosen"]["dice"] == pytest.approx(1.0)
    assert table["chosen"]["normal_fp_rate"] == 0.0 and table["chosen"]["miss_rate"] == 0.0
    assert table["no presence decision"]["normal_fp_rate"] == 1.0
    # only A (one tumor image in five) is then right
    assert table["FCN first pass guided by its own coarse seed"]["dice"] == pytest.approx(0.2)
    assert table["gray net alone (every image homogeneous)"]["dice"] == pytest.approx(0.2)


def test_plateau_centre_keeps_the_middle_of_the_best_run() -> None:
    assert plateau_centre({0.1: 0.5, 0.2: 0.9, 0.3: 0.9, 0.4: 0.9, 0.5: 0.2}) == (0.3, 0.9)
    assert plateau_centre({0.1: 0.4}) == (0.1, 0.4)


def test_presence_keeps_the_miss_rate_under_its_cap(tmp_path) -> None:
    """C is a tumor that looks more normal than N to every source and that the gray net
    misplaces: dropping it with N costs no Dice, but missing a tumor is capped."""
    from tumorseg.evaluation.policy import choose_presence

    c = square(10, 10)
    items = [
        ("A", square(30, 30), {"graynet": square(30, 30) * 1.0}, (0.05, 0.9, 0.05)),
        ("C", c, {"graynet": square(14, 14) * 0.2 + square(40, 40) * 0.9}, (0.8, 0.1, 0.1)),
        ("N", np.zeros((64, 64), bool), {"graynet": square(0, 40) * 0.95}, (0.7, 0.2, 0.1)),
    ]
    predictions = hand_predictions(tmp_path, items)
    config = SegmenterConfig(
        route_source="classifier", largest_component_routes=(), presence_source="classifier"
    )
    free, _ = choose_presence(predictions, config, max_miss_rate=1.0)
    capped, _ = choose_presence(predictions, config, max_miss_rate=0.0)
    # uncapped, the classifier drops N and C alike (C scores 0 either way)
    assert free["presence_source"] == "classifier" and 0.3 < free["presence_threshold"] <= 0.95
    assert capped["presence_source"] in ("none", "classifier")
    probe = SegmenterConfig(**{**config.__dict__, **capped})
    from tumorseg.evaluation import evaluate_predictions

    assert evaluate_predictions(predictions, probe).summary["miss_rate"] == 0.0


def test_the_gray_net_alone_alternative_sends_no_image_to_the_fcn(tmp_path) -> None:
    """Even an image the router is all but certain of (p(het) 0.9995) stays on the gray
    net: the alternative is the threshold 1.0, which no probability exceeds."""
    b = square(30, 30)
    sure = ("S", b, {"graynet": b * 1.0, "fcn_graynet": b * 1.0, "fcn_own": b * 1.0},
            (0.0, 0.0005, 0.9995))  # fmt: skip
    predictions = hand_predictions(tmp_path, [sure])
    config = SegmenterConfig(route_source="classifier", route_threshold=0.5)
    table = compare_policies(predictions, config, 0.001)
    assert table["chosen"]["fcn_share"] == 1.0
    assert table["gray net alone (every image homogeneous)"]["fcn_share"] == 0.0
