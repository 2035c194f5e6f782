"""PNG figures for MLflow artifacts and evaluation reports: learning curves and overlays.

Figures are drawn on matplotlib's Agg canvas through the object API (no ``pyplot``,
no global backend switch), so they work headless, in Ray workers and in threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Contour colours of :func:`overlay_png` (RGB).
TRUTH_COLOR: tuple[int, int, int] = (0, 255, 0)
PREDICTION_COLOR: tuple[int, int, int] = (255, 0, 0)


def learning_curve_png(
    history: Mapping[str, Sequence[float]], path: str | Path, title: str | None = None
) -> Path:
    """Plot one line per metric against the epoch (1, 2, …) and write a PNG.

    Metrics whose name contains ``loss`` go on a left panel, the others (Dice, IoU,
    accuracy …) on a right one, so that their scales do not squash each other; a
    single panel when only one kind is present. NaN values leave gaps. Returns the
    path written (parent folders are created).
    """
    series = {name: np.asarray(values, dtype=float) for name, values in history.items()}
    series = {name: values for name, values in series.items() if values.size}
    if not series:
        raise ValueError("learning_curve_png needs at least one metric with values")
    losses = {n: v for n, v in series.items() if "loss" in n.lower()}
    others = {n: v for n, v in series.items() if n not in losses}
    panels = [(label, group) for label, group in (("loss", losses), ("metric", others)) if group]

    figure = Figure(figsize=(5.5 * len(panels), 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for index, (label, group) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for name, values in group.items():
            epochs = np.arange(1, values.size + 1)
            axes.plot(epochs, values, marker="o" if values.size <= 30 else None, ms=3, label=name)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        longest = max(values.size for values in group.values())
        if longest <= 20:
            axes.set_xticks(np.arange(1, longest + 1))
    if title:
        figure.suptitle(title)
    path = _prepare(path)
    figure.savefig(path, format="png")
    return path


def overlay_array(
    image: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray
) -> np.ndarray:
    """RGB ``uint8`` image: the gray image with the truth's contour in green, the
    prediction's in red (drawn last, so it is on top where they coincide)."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(
            f"overlay needs a 2-D uint8 gray image, got {image.dtype} of shape {image.shape}"
        )
    rgb = np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    thickness = max(1, round(min(image.shape) / 256))
    for mask, color, what in (
        (truth, TRUTH_COLOR, "truth"),
        (prediction, PREDICTION_COLOR, "prediction"),
    ):
        if mask is None:
            continue
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise ValueError(f"{what} mask has shape {mask.shape}, image has {image.shape}")
        contours, _ = cv2.findContours(
            mask.astype(bool).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(rgb, contours, -1, color, thickness)
    return rgb


def overlay_png(
    image: np.ndarray,
    truth: np.ndarray | None,
    prediction: np.ndarray,
    path: str | Path,
) -> Path:
    """Write :func:`overlay_array` as a PNG (parent folders created); returns the path."""
    from tumorseg.io import png_bytes

    path = _prepare(path)
    path.write_bytes(png_bytes(overlay_array(image, truth, prediction)))
    return path


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
