"""The layering unit's cut and paste as batched tensor operations on the model's device.

The splitter and merger of the multi-scale FCN on a GPU, shaped like MONAI's
sliding-window inferer (it never owns the model): :func:`cut_tiles` makes every FCN
input of a pass (tile, context window, guide) for all images in one resampling call
per channel group, and :func:`paste_tiles` puts the outputs back in one more. Both
resample as :func:`tumorseg.inference.tensors.resize` does, area when shrinking and
linear when enlarging with OpenCV's pixel-centre convention, so that these tiles
equal those cut tile by tile with OpenCV (:func:`~tumorseg.inference.multiscale.tile_inputs`),
which the training corpus's tasks (no torch there) and CPU inference (faster there) use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tumorseg.inference.multiscale import UNKNOWN


def resample_boxes(
    source: torch.Tensor,
    box_y: torch.Tensor,
    box_x: torch.Tensor,
    box_side: torch.Tensor,
    dest_i: torch.Tensor,
    dest_j: torch.Tensor,
    dest_side: torch.Tensor,
) -> torch.Tensor:
    """Values of square boxes of ``source`` resized to ``dest_side``, at given points.

    ``source`` is ``(B, C, H, W)``; every other argument is ``(B, P)``: point ``p`` of
    image ``b`` is pixel ``(dest_i, dest_j)`` of the box at ``(box_y, box_x)`` of side
    ``box_side`` resized to ``dest_side × dest_side``. Returns ``(B, C, P)``. A box
    larger than its destination is area-averaged (exactly, from a summed-area table);
    a smaller or equal one is interpolated linearly, clamped to the box's own pixels.
    """
    scale = box_side.to(torch.float64) / dest_side.to(torch.float64)
    linear = _linear(source, box_y, box_x, box_side, dest_i, dest_j, scale)
    shrinking = box_side > dest_side
    if not bool(shrinking.any()):
        return linear
    area = _area(source, box_y, box_x, dest_i, dest_j, scale)
    return torch.where(shrinking[:, None, :], area, linear)


def _linear(source, box_y, box_x, box_side, dest_i, dest_j, scale) -> torch.Tensor:
    last = (box_side - 1).to(torch.float64)
    sy = box_y + ((dest_i + 0.5) * scale - 0.5).clamp(min=0).minimum(last)
    sx = box_x + ((dest_j + 0.5) * scale - 0.5).clamp(min=0).minimum(last)
    height, width = source.shape[-2:]
    grid = torch.stack([(sx + 0.5) / width * 2 - 1, (sy + 0.5) / height * 2 - 1], dim=-1)
    sampled = F.grid_sample(
        source, grid[:, :, None].to(source.dtype), align_corners=False, padding_mode="border"
    )
    return sampled[..., 0]


def _area(source, box_y, box_x, dest_i, dest_j, scale) -> torch.Tensor:
    """Box means from the summed-area table, whose bilinear interpolation is the exact
    integral of the piecewise-constant image (float64: sums of a whole canvas)."""
    table = F.pad(source.to(torch.float64).cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    height, width = source.shape[-2:]
    y0, x0 = box_y + dest_i * scale, box_x + dest_j * scale
    y1, x1 = y0 + scale, x0 + scale
    corners = [(y1, x1), (y0, x1), (y1, x0), (y0, x0)]
    grid = torch.cat(
        [torch.stack([x / width * 2 - 1, y / height * 2 - 1], dim=-1) for y, x in corners], dim=1
    )
    sampled = F.grid_sample(table, grid[:, :, None], align_corners=True, padding_mode="border")
    a, b, c, d = sampled[..., 0].chunk(4, dim=-1)
    return ((a - b - c + d) / (scale * scale)[:, None]).to(source.dtype)


def layout_tensor(layouts: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """``(B, n_max, 3)`` ``(y, x, side)`` of each image's tiles; missing tiles are
    ``(0, 0, 1)`` (valid boxes whose results are dropped)."""
    n_max = max(len(tiles) for tiles in layouts)
    out = np.tile(np.array([0, 0, 1], dtype=np.int64), (len(layouts), n_max, 1))
    for b, tiles in enumerate(layouts):
        out[b, : len(tiles)] = tiles
    return torch.from_numpy(out).to(device)


def _present(layouts: Sequence[np.ndarray], n_max: int, device: torch.device) -> torch.Tensor:
    """``(B, n_max)``: which rows of :func:`layout_tensor` are real tiles."""
    counts = torch.tensor([len(tiles) for tiles in layouts], device=device)
    return torch.arange(n_max, device=device)[None, :] < counts[:, None]


def cut_tiles(
    canvases: torch.Tensor,
    guides: torch.Tensor | None,
    layouts: Sequence[np.ndarray],
    tile_size: int,
) -> torch.Tensor:
    """``(ΣN, 3, t, t)`` FCN inputs of every image's tiles, in layout order: the tile, its
    surroundings three tiles wide (zero outside the canvas) and the guide
    (:data:`UNKNOWN` without one). ``canvases`` and ``guides`` are ``(B, H, W)``."""
    if guides is None:
        guides = torch.full_like(canvases, UNKNOWN)
    boxes = layout_tensor(layouts, canvases.device)
    batch, n_max = boxes.shape[:2]
    y, x, side = (boxes[..., k, None, None].expand(-1, -1, tile_size, tile_size) for k in range(3))
    grid = torch.arange(tile_size, device=canvases.device, dtype=torch.float64)
    dest_i = grid[:, None].expand(tile_size, tile_size).expand(batch, n_max, -1, -1)
    dest_j = grid[None, :].expand(tile_size, tile_size).expand(batch, n_max, -1, -1)
    dest = torch.full_like(side, tile_size)

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, -1)

    points = (flat(dest_i), flat(dest_j), flat(dest))
    inside = resample_boxes(
        torch.stack([canvases, guides], dim=1), flat(y), flat(x), flat(side), *points
    )
    pad = int(boxes[..., 2].max())
    padded = F.pad(canvases[:, None], (pad, pad, pad, pad))
    context = resample_boxes(
        padded, flat(y + pad - side), flat(x + pad - side), flat(3 * side), *points
    )
    channels = torch.cat([inside[:, :1], context, inside[:, 1:]], dim=1)
    channels = channels.reshape(batch, 3, n_max, tile_size, tile_size).transpose(1, 2)
    return channels[_present(layouts, n_max, canvases.device)]


def paste_tiles(outputs: torch.Tensor, layouts: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """``(B, size, size)`` maps from per-tile ``(ΣN, 1, t, t)`` outputs in layout order:
    the inverse of :func:`cut_tiles` (each output resized back to its square)."""
    device, tile = outputs.device, outputs.shape[-1]
    boxes = layout_tensor(layouts, device)
    batch, n_max = boxes.shape[:2]
    stacked = outputs.new_zeros((batch, n_max, tile, tile))
    stacked[_present(layouts, n_max, device)] = outputs[:, 0]
    labels = torch.from_numpy(_tile_labels(layouts, size)).to(device)  # (B, size, size)
    owner = torch.gather(boxes, 1, labels.reshape(batch, -1, 1).expand(-1, -1, 3))
    rows = torch.arange(size, device=device, dtype=torch.float64)
    yy = rows[:, None].expand(size, size).reshape(1, -1)
    xx = rows[None, :].expand(size, size).reshape(1, -1)
    flat_labels = labels.reshape(batch, -1)
    pasted = resample_boxes(
        stacked.reshape(batch, 1, n_max * tile, tile),
        box_y=(flat_labels * tile).to(torch.float64),
        box_x=torch.zeros_like(yy).expand(batch, -1),
        box_side=torch.full_like(flat_labels, tile),
        dest_i=yy - owner[..., 0],
        dest_j=xx - owner[..., 1],
        dest_side=owner[..., 2],
    )
    return pasted.reshape(batch, size, size)


def _tile_labels(layouts: Sequence[np.ndarray], size: int) -> np.ndarray:
    """``(B, size, size)`` index of the tile covering each pixel."""
    labels = np.zeros((len(layouts), size, size), dtype=np.int64)
    for b, tiles in enumerate(layouts):
        for k, (y, x, side) in enumerate(tiles):
            labels[b, y : y + side, x : x + side] = k
    return labels
