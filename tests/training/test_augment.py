from __future__ import annotations

import torch

from tumorseg.training.augment import augment_batch


def test_geometry_moves_inputs_and_targets_together() -> None:
    mask = torch.zeros(4, 1, 64, 64)
    mask[:, :, 20:40, 10:30] = 1.0
    inputs = torch.cat([mask.clone(), mask.clone()], dim=1)  # channel 1 = binary map
    out, target = augment_batch(
        inputs, mask, gray_channels=(), generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == inputs.shape and target.shape == mask.shape
    agreement = ((out[:, 1:] > 0.5) == (target > 0.5)).float().mean()
    assert agreement > 0.98
    assert not torch.equal(target, mask)  # something moved


def test_intensity_only_touches_gray_channels() -> None:
    inputs = torch.full((2, 3, 16, 16), 0.5)
    generator = torch.Generator().manual_seed(1)
    out, _ = augment_batch(
        inputs,
        None,
        gray_channels=(0,),
        generator=generator,
        max_rotation_deg=0,
        max_scale=0,
        max_shift=0,
    )
    centre = (slice(None), slice(4, 12), slice(4, 12))
    assert not torch.allclose(out[:, 0][centre], inputs[:, 0][centre])
    torch.testing.assert_close(out[:, 2][centre], inputs[:, 2][centre])
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_seeded() -> None:
    inputs = torch.rand(2, 1, 16, 16)
    a, _ = augment_batch(inputs, None, (0,), torch.Generator().manual_seed(3))
    b, _ = augment_batch(inputs, None, (0,), torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
