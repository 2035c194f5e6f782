from __future__ import annotations

import pytest
import torch

from tumorseg.inference.threads import cpu_threads, map_images


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_results_come_back_in_the_images_order(two_threads) -> None:
    assert cpu_threads() == 2
    assert map_images(lambda a, b: a * b, range(50), range(50)) == [i * i for i in range(50)]
    assert map_images(str, []) == []


def test_an_image_that_fails_raises_its_own_error(two_threads) -> None:
    def check(i: int) -> int:
        if i == 7:
            raise ValueError("image 7 is bad")
        return i

    with pytest.raises(ValueError, match="image 7 is bad"):
        map_images(check, range(10))


def test_arguments_of_unequal_length_are_refused() -> None:
    with pytest.raises(ValueError):
        map_images(lambda a, b: a, [1, 2], [1])
