from __future__ import annotations

import numpy as np

from tumorseg.data.phantom import make_phantom
from tumorseg.training.config import PRESETS, TileSampling
from tumorseg.training.samples import image_samples, perturbed_guide, tile_samples


def test_image_samples_have_each_network_input_shape() -> None:
    config = PRESETS["cpu"].segmenter
    phantom = make_phantom(3, 200, 260, kind="homogeneous")
    samples = image_samples(phantom.image, phantom.mask, "homogeneous", config)
    n = config.networks
    assert samples["classifier_input"].shape == (1, n.classifier_size, n.classifier_size)
    assert samples["graynet_input"].shape == (2, n.graynet_size, n.graynet_size)  # binary+gray
    assert samples["seg_mask"].shape == (1, n.graynet_size, n.graynet_size)
    assert samples["canvas"].shape == samples["canvas_mask"].shape == (256, 256)
    assert samples["class_index"] == 1  # CLASSES: normal, homogeneous, heterogeneous
    empty = image_samples(phantom.image, np.zeros_like(phantom.mask), "heterogeneous", config)
    assert empty["class_index"] == 0
    assert set(np.unique(samples["seg_mask"])) == {0.0, 1.0}


def test_tiles_pair_inputs_with_their_mask_and_keep_the_lesion() -> None:
    phantom = make_phantom(5, 256, 256, kind="heterogeneous")
    canvas = phantom.image.astype(np.float32) / 255
    sampling = TileSampling(guided_copies=1, max_tiles_per_image=25)
    mask = phantom.mask.astype(np.float32)
    tiles = tile_samples(canvas, mask, (10, 20), sampling, 32, np.random.default_rng(0))
    assert tiles["inputs"].shape == (25, 3, 32, 32) and tiles["targets"].shape == (25, 1, 32, 32)
    lesion_tiles = tiles["targets"].reshape(25, -1).any(axis=1)
    assert lesion_tiles.sum() >= 10  # lesion tiles are kept first when subsampling
    # The tile channel is darker where the target says lesion (hypoechoic phantom).
    x, y = tiles["inputs"][:, 0], tiles["targets"][:, 0] > 0
    assert x[y].mean() < x[~y].mean()


def test_coarse_seed_adds_whole_canvas_copies_after_subsampling() -> None:
    phantom = make_phantom(5, 256, 256, kind="heterogeneous")
    canvas = phantom.image.astype(np.float32) / 255
    mask = phantom.mask.astype(np.float32)
    sampling = TileSampling(guided_copies=0, max_tiles_per_image=8, seed_copies=3)
    rng = np.random.default_rng(0)
    without = tile_samples(canvas, mask, (10,), sampling, 32, rng, coarse_seed=False)
    seeded = tile_samples(
        canvas, mask, (10,), sampling, 32, np.random.default_rng(0), coarse_seed=True
    )
    assert len(without["inputs"]) == 8 and len(seeded["inputs"]) == 8 + 3
    seeds, seed_targets = seeded["inputs"][-3:], seeded["targets"][-3:, 0]
    assert (seeds[:, 2] == 0.5).all()  # the seed itself has no guide
    # Its target is the whole lesion mask at tile size: the lesion's share of the canvas.
    assert abs(seed_targets[0].mean() - phantom.mask.mean()) < 0.02


def test_perturbed_guides_are_probabilities_near_the_truth() -> None:
    phantom = make_phantom(1, 128, 128)
    rng = np.random.default_rng(0)
    for _ in range(5):
        guide = perturbed_guide(phantom.mask, rng)
        assert guide.dtype == np.float32 and guide.min() >= 0 and guide.max() <= 1
        assert guide[phantom.mask].mean() > guide[~phantom.mask].mean()
