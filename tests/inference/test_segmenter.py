"""The fused pipeline on real BUSI images, with freshly initialised models.

Untrained weights say nothing about accuracy; these tests check the contract:
shapes, presence, routing, fusion, batching and the fields of the result.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tumorseg import SegmentationResult, Segmenter
from tumorseg.config import MultiScaleConfig, SegmenterConfig
from tumorseg.data import discover_busi


def read_busi(path) -> np.ndarray:
    """Raw decoded pixels: colour files stay RGB so the segmenter's conversion is exercised."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


@pytest.fixture(scope="module")
def busi_images(busi_root) -> list[np.ndarray]:
    """20 real images of different sizes, colour (RGB) ones included."""
    images = [read_busi(record.path) for record in discover_busi(busi_root)]
    colour = [im for im in images if im.ndim == 3][:4]
    by_size: dict[tuple[int, int], np.ndarray] = {}
    for image in images:
        if image.ndim == 2:
            by_size.setdefault(image.shape, image)
    picked = colour + list(by_size.values())[: 20 - len(colour)]
    assert len(picked) == 20 and len({im.shape[:2] for im in picked}) >= 15
    return picked


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.untrained(seed=0)


def assert_valid(result: SegmentationResult, image: np.ndarray) -> None:
    assert result.mask.shape == image.shape[:2]
    assert result.mask.dtype == bool
    assert result.route in ("homogeneous", "heterogeneous")
    assert 0.0 <= result.route_confidence <= 1.0
    assert np.isfinite(result.heterogeneity_score)
    assert set(result.model_versions) == {"classifier", "graynet", "fcn"}
    assert {"classify", "graynet", "score"} <= set(result.timings)
    assert ("fcn" in result.timings) == bool(result.pass_tiles)
    assert isinstance(result.tumor_present, bool) and 0.0 <= result.tumor_probability <= 1.0


@pytest.mark.parametrize("route", ["homogeneous", "heterogeneous"])
def test_masks_match_every_input_shape_on_both_routes(segmenter, busi_images, route) -> None:
    results = segmenter.segment_batch(busi_images, routes=[route] * len(busi_images))
    for result, image in zip(results, busi_images, strict=True):
        assert_valid(result, image)
        assert result.route == route and result.route_confidence == 1.0
        assert result.tumor_present  # a forced route says a lesion of that kind is there
        expected = (50, 80, 100) if route == "heterogeneous" else ()
        assert result.pass_tiles == expected


def test_route_threshold_moves_images_between_routes(busi_images) -> None:
    """The route follows p(heterogeneous) against the threshold; the confidence stays the
    chosen route's probability, so the two thresholds see the same probabilities."""
    decided = {
        threshold: Segmenter.untrained(
            seed=0,
            config=SegmenterConfig(route_threshold=threshold, presence_source="none"),
        ).segment_batch(busi_images[:6])
        for threshold in (0.001, 0.999)
    }
    assert {r.route for r in decided[0.001]} == {"heterogeneous"}
    assert {r.route for r in decided[0.999]} == {"homogeneous"}
    for het, homo in zip(decided[0.001], decided[0.999], strict=True):
        assert het.route_confidence + homo.route_confidence == pytest.approx(1.0, abs=1e-5)
        assert het.pass_tiles and not homo.pass_tiles
    only_gray = Segmenter.untrained(
        seed=0, config=SegmenterConfig(route_threshold=1.0, presence_source="none")
    ).segment_batch(busi_images[:2])
    assert {r.route for r in only_gray} == {"homogeneous"}  # 1.0: every image on the gray net
    for bad in (0.0, 1.01):
        with pytest.raises(ValueError, match="route_threshold"):
            SegmenterConfig(route_threshold=bad)


def test_routes_and_reports_confidence(segmenter, busi_images) -> None:
    results = segmenter.segment_batch(busi_images)
    for result, image in zip(results, busi_images, strict=True):
        assert_valid(result, image)
        assert 0.5 <= result.route_confidence <= 1.0  # threshold 0.5: the winner has ≥ half


@pytest.mark.parametrize("source", ["classifier", "map", "both"])
def test_presence_decision_empties_the_mask_below_its_threshold(busi_images, source) -> None:
    images = busi_images[:4]
    kept = Segmenter.untrained(
        config=SegmenterConfig(presence_source=source, presence_threshold=0.0)
    ).segment_batch(images)
    dropped = Segmenter.untrained(
        config=SegmenterConfig(presence_source=source, presence_threshold=1.0)
    ).segment_batch(images)
    for image, present, absent in zip(images, kept, dropped, strict=True):
        assert_valid(absent, image)
        assert present.tumor_present and not absent.tumor_present
        assert present.tumor_probability == pytest.approx(absent.tumor_probability)
        assert present.tumor_probability < 1.0
        assert not absent.mask.any() and absent.area_px == 0
        assert "fcn" not in absent.timings  # no branch runs on a tumor-free image
    never = Segmenter.untrained(
        config=SegmenterConfig(presence_source="none", presence_threshold=1.0)
    ).segment(images[0])
    assert never.tumor_present and never.tumor_probability == 1.0


@pytest.mark.parametrize("fusion", ["hard", "soft"])
@pytest.mark.parametrize("guide", ["graynet", "own"])
def test_fusion_modes_combine_the_branch_maps(busi_images, fusion, guide) -> None:
    """Hard routing keeps the FCN's map on its route; soft fusion weighs the FCN's and
    the gray net's maps by p(heterogeneous), recomputed here from the stages."""
    config = SegmenterConfig(
        route_source="classifier",
        route_threshold=0.001,
        fusion=fusion,
        fcn_guide=guide,
        presence_source="none",
        largest_component_routes=(),
    )
    segmenter = Segmenter.untrained(config=config)
    grays = [image if image.ndim == 2 else image[..., 0] for image in busi_images[:3]]
    results = segmenter.segment_batch(grays)
    classes = segmenter.class_probabilities(grays)
    graynet = segmenter.graynet_probabilities(grays)
    fcn = segmenter.fcn_probabilities(grays, graynet)
    for i, result in enumerate(results):
        p_het = classes[i, 2] / (classes[i, 1] + classes[i, 2])
        assert result.route == "heterogeneous" and result.route_confidence == pytest.approx(p_het)
        expected = fcn[i] if fusion == "hard" else p_het * fcn[i] + (1 - p_het) * graynet[i]
        assert np.mean((expected >= 0.5) != result.mask) < 1e-3


def test_batch_equals_single_calls(segmenter, busi_images) -> None:
    images = busi_images[:4]
    routes = ["heterogeneous", "homogeneous", "heterogeneous", "homogeneous"]
    batched = segmenter.segment_batch(images, routes=routes)
    for image, route, together in zip(images, routes, batched, strict=True):
        alone = segmenter.segment(image, route=route)
        # Same arithmetic up to float reduction order: identical except at p == 0.5 ties.
        assert np.mean(alone.mask != together.mask) < 1e-3
        assert alone.pass_tiles == together.pass_tiles
        assert alone.heterogeneity_score == pytest.approx(together.heterogeneity_score, abs=1e-3)
    unforced = segmenter.segment_batch(images)
    for image, together in zip(images, unforced, strict=True):
        alone = segmenter.segment(image)
        assert (alone.route, pytest.approx(alone.route_confidence, abs=1e-5)) == (
            together.route,
            together.route_confidence,
        )


def test_untrained_models_are_seeded() -> None:
    image = np.random.default_rng(0).integers(0, 255, (90, 120), dtype=np.uint8)
    first = Segmenter.untrained(seed=3).segment(image, route="heterogeneous")
    second = Segmenter.untrained(seed=3).segment(image, route="heterogeneous")
    np.testing.assert_array_equal(first.mask, second.mask)


@pytest.mark.parametrize("fusion", ["last", "weighted"])
def test_fusion_and_schedule_are_configurable(fusion) -> None:
    config = SegmenterConfig(
        multiscale=MultiScaleConfig(pass_tiles=(10, 40), fusion=fusion, canvas_size=256)
    )
    segmenter = Segmenter.untrained(config=config)
    result = segmenter.segment(np.full((70, 50), 128, np.uint8), route="heterogeneous")
    assert result.pass_tiles == (10, 40) and result.mask.shape == (70, 50)


def test_the_stages_called_one_by_one_equal_segment_batch(segmenter, busi_images) -> None:
    """What the bulk stages and the Serve deployments do, worker by worker."""
    grays = [image if image.ndim == 2 else image[..., 0] for image in busi_images[:3]]
    routes = ["heterogeneous", "homogeneous", None]
    firsts = segmenter.first_stage(grays, routes)
    assert [f.needs_fcn for f in firsts[:2]] == [True, False]
    members = [i for i, first in enumerate(firsts) if first.needs_fcn]
    maps = segmenter.fcn_stage([grays[i] for i in members], [firsts[i] for i in members])
    fcn_maps = dict(zip(members, maps, strict=True))
    staged = [
        segmenter.finish(g, f, fcn_maps.get(i))
        for i, (g, f) in enumerate(zip(grays, firsts, strict=True))
    ]
    for one, other in zip(staged, segmenter.segment_batch(grays, routes), strict=True):
        assert one.route == other.route and np.array_equal(one.mask, other.mask)
    assert "fcn" in staged[0].timings and "fcn" not in staged[1].timings
    with pytest.raises(ValueError, match="needs the multi-scale FCN's map"):
        segmenter.finish(grays[0], firsts[0])


@pytest.mark.parametrize(
    ("images", "routes", "match"),
    [
        ([np.zeros((5,), np.uint8)], None, "shape"),
        ([np.zeros((8, 8), np.uint8)], ["sideways"], "unknown route"),
        ([np.zeros((8, 8), np.uint8)], ["homogeneous", "homogeneous"], "routes for"),
    ],
)
def test_bad_calls_raise_value_error(segmenter, images, routes, match) -> None:
    with pytest.raises(ValueError, match=match):
        segmenter.segment_batch(images, routes=routes)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="two passes"):
        MultiScaleConfig(pass_tiles=(50,))
    with pytest.raises(ValueError, match="at least 10"):
        MultiScaleConfig(pass_tiles=(5, 50))
    with pytest.raises(ValueError, match="feedback must be one of"):
        MultiScaleConfig(feedback="everything")
    config = SegmenterConfig()
    assert SegmenterConfig.from_dict(config.to_dict()) == config
    for bad in ({"fusion": "average"}, {"presence_source": "oracle"}, {"route_source": "x"}):
        with pytest.raises(ValueError, match="must be one of"):
            SegmenterConfig(**bad)
    with pytest.raises(ValueError, match="presence_threshold"):
        SegmenterConfig(presence_threshold=1.5)
