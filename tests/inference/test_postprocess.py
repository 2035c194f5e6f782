from __future__ import annotations

import numpy as np
import pytest

from tumorseg.config import SegmenterConfig
from tumorseg.inference import FirstStageOutput, Segmenter
from tumorseg.inference.fusion import Decision
from tumorseg.inference.postprocess import largest_component


def islands() -> np.ndarray:
    mask = np.zeros((40, 40), bool)
    mask[5:20, 5:20] = True  # the lesion
    mask[30:33, 30:33] = True  # a stray island
    mask[2, 35] = True
    return mask


def test_largest_component_keeps_only_the_biggest_region() -> None:
    kept = largest_component(islands())
    assert kept.sum() == 15 * 15 and kept[10, 10] and not kept[31, 31]
    assert not largest_component(np.zeros((5, 5), bool)).any()
    single = np.eye(6, dtype=bool)  # diagonal pixels touch: one 8-connected component
    np.testing.assert_array_equal(largest_component(single), single)


@pytest.mark.parametrize("route", ["homogeneous", "heterogeneous"])
def test_finish_applies_it_to_the_configured_routes_only(route) -> None:
    config = SegmenterConfig(largest_component_routes=("heterogeneous",))
    segmenter = Segmenter.untrained(config=config)
    gray = np.full((40, 40), 128, np.uint8)
    decision = Decision(True, 0.9, route, 0.9, 0.9 if route == "heterogeneous" else 0.1)
    probability = islands().astype(np.float32)
    fcn_map = probability if route == "heterogeneous" else None
    result = segmenter.finish(gray, FirstStageOutput(decision, probability), fcn_map)
    expected = 225 if route == "heterogeneous" else islands().sum()
    assert result.mask.sum() == expected
    absent = FirstStageOutput(Decision(False, 0.2, route, 0.9, 0.5), probability)
    assert not segmenter.finish(gray, absent).mask.any()


def test_unknown_routes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown routes"):
        SegmenterConfig(largest_component_routes=("cystic",))
