from __future__ import annotations

import cv2
import numpy as np

from tumorseg.data.phantom import make_phantom, phantom_corpus, write_phantom_corpus


def test_seeded_and_exact() -> None:
    a, b = make_phantom(7), make_phantom(7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.image.dtype == np.uint8 and a.mask.dtype == bool and a.mask.any()
    assert a.image[a.mask].mean() < a.image[~a.mask].mean()  # hypoechoic lesion


def test_corpus_alternates_kinds_and_writes_busi_layout(tmp_path) -> None:
    assert [p.kind for p in phantom_corpus(4)] == ["homogeneous", "heterogeneous"] * 2
    root = write_phantom_corpus(tmp_path, n=4)
    images = sorted(p for p in (root / "phantom").glob("*.png") if "_mask" not in p.stem)
    assert len(images) == 4
    mask = cv2.imread(str(images[0].with_name(images[0].stem + "_mask.png")), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) == {0, 255}
