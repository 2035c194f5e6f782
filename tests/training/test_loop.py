from __future__ import annotations

import pytest
import torch

from tumorseg.networks import network_role
from tumorseg.training.loop import _loss, balanced_weights


def test_balanced_weights_give_each_class_the_same_total() -> None:
    labels = [0] * 10 + [1] * 30 + [2] * 20
    weights = balanced_weights(labels, 3)
    assert weights == pytest.approx([2.0, 2 / 3, 1.0])
    totals = [weights[k] * labels.count(k) for k in range(3)]
    assert totals == pytest.approx([20.0, 20.0, 20.0])


def test_an_absent_class_weighs_one() -> None:
    assert balanced_weights([1, 1, 2, 2], 3) == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert balanced_weights([], 3) == [1.0, 1.0, 1.0]


def test_the_classifier_loss_uses_the_weights() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([1, 1])
    plain = _loss(network_role("classifier"))(logits, labels)
    weighted = _loss(network_role("classifier"), [5.0, 1.0, 1.0])(logits, labels)
    assert float(weighted) == pytest.approx(float(plain))  # one class present: same mean
    # a missed normal image (label 0, predicted 1) weighs five times a right one
    mixed = torch.tensor([0, 1])
    wrong_normal = torch.tensor([[0.0, 2.0, 0.0], [0.0, 2.0, 0.0]])
    plain = _loss(network_role("classifier"))(wrong_normal, mixed)
    weighted = _loss(network_role("classifier"), [5.0, 1.0, 1.0])(wrong_normal, mixed)
    assert float(weighted) > float(plain)
