"""Typed configuration: every knob of the method lives in a frozen dataclass.

Configs are plain data (JSON-able through :func:`dataclasses.asdict`) so that jobs,
MLflow runs and Serve deployments can log, ship and rebuild them unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

ROUTES: tuple[str, str] = ("homogeneous", "heterogeneous")
Route = Literal["homogeneous", "heterogeneous"]
#: The classifier's outputs, in logit order: tumor-free, then one class per route.
CLASSES: tuple[str, str, str] = ("normal", *ROUTES)
#: Route threshold that sends every image to the gray net (p(heterogeneous) never exceeds 1).
GRAYNET_ONLY = 1.0
#: What runs a set's networks: torch, or a model folder's ONNX graphs on ONNX Runtime (CPU).
ENGINES: tuple[str, str] = ("torch", "onnx")


@dataclass(frozen=True)
class ImageLimits:
    """Guards applied while decoding untrusted images (decompression bombs, empty files)."""

    max_pixels: int = 64_000_000
    max_bytes: int = 512 * 1024 * 1024
    # What decoding may allocate (pixels × channels × bytes per sample): 16-bit RGBA
    # takes 8 bytes a pixel where the pixel limit alone would allow it.
    max_decoded_bytes: int = 512 * 1024 * 1024
    max_side: int = 65_535  # the largest width or height (JPEG's; encoders fail beyond)
    # The most frames of a cine loop: a loop is segmented as one unit (one SEG), so its
    # frames are held together; 300 is ten seconds at 30 frames a second.
    max_frames: int = 300
    # Wall-clock seconds one file may take to decode (None: no limit). The byte and
    # pixel budgets bound most decoders' work; this catches what slips past them.
    max_decode_seconds: float | None = 30.0

    def __post_init__(self) -> None:
        if self.max_decode_seconds is not None and not self.max_decode_seconds > 0:
            raise ValueError(
                f"max_decode_seconds must be positive or None, got {self.max_decode_seconds}"
            )


@dataclass(frozen=True)
class TriageConfig:
    """How an image is put in a class from its ground-truth lesion region.

    ``threshold`` applies to :func:`tumorseg.preprocessing.heterogeneity_score`;
    scores above it are ``heterogeneous``. The default was chosen on the BUSI
    corpus (see README, "Grayscale triage") so that neither class falls below a
    quarter of the tumor images.
    """

    threshold: float = 0.50
    smoothing_sigma: float = 2.0


@dataclass(frozen=True)
class BinarizerConfig:
    """Binarizer of the homogeneous branch (patent module 30)."""

    method: Literal["otsu", "adaptive"] = "otsu"
    denoise: Literal["median", "bilateral", "none"] = "median"
    denoise_size: int = 5
    adaptive_block: int = 51
    adaptive_offset: float = 5.0


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the three networks; small by default so that CPUs can train them."""

    classifier_size: int = 128
    classifier_channels: tuple[int, ...] = (16, 32, 64, 128)
    # "cnn": a small strided CNN of ``classifier_channels``; "resnet": the gray net's
    # ResNet encoder with a pooled head, so that it can start from the baseline's
    # segmentation-trained encoder (TrainConfig.classifier_init).
    classifier_backbone: Literal["cnn", "resnet"] = "cnn"
    graynet_size: int = 256
    graynet_resnet_depth: Literal[18, 34] = 18
    graynet_width: int = 32
    graynet_input: Literal["binary", "binary+gray"] = "binary"
    fcn_tile_size: int = 64
    fcn_channels: tuple[int, ...] = (16, 32, 64)
    # The tile FCN outputs a correction to the logit of its guide channel (the previous
    # pass's map) instead of a map of its own, so that passing a good guide through is
    # what it does before it learns anything (networks.tile_fcn.GuideResidual).
    fcn_residual_guide: bool = False

    def __post_init__(self) -> None:
        _check_choice("classifier_backbone", self.classifier_backbone, ("cnn", "resnet"))


@dataclass(frozen=True)
class MultiScaleConfig:
    """Iterative multi-scale FCN (patent modules 50–53).

    ``pass_tiles`` is the number of square tiles of each layering unit, in order;
    every pass after the first is guided by the previous pass's probability map.
    ``fusion`` chooses the final mask: ``"last"`` keeps the last pass,
    ``"weighted"`` averages the passes' probability maps with ``fusion_weights``
    (normalised; defaults to weights growing with the pass index).

    ``coarse_seed`` gives the first layering unit a guide too: the tile FCN first
    sees the whole canvas as a single square (at tile size), and that coarse map
    guides pass one's partition and input, as each pass guides the next. Without
    it the first pass sees no more than three tiles' width of the image and every
    later pass inherits its mistakes. The seed is not one of the fused passes.

    ``feedback`` is what a pass hands the next one: ``"largest_region"`` its map on
    its largest region only (grown by half the boundary band), ``"map"`` its whole
    map. The FCN learns from guides of one lesion (perturbed ground truth), so it
    trusts a guide's high values: handed its own stray islands, it grows them pass
    after pass (README, "The method, and its knobs").
    """

    canvas_size: int = 512
    pass_tiles: tuple[int, ...] = (50, 80, 100)
    coarse_seed: bool = True
    fusion: Literal["last", "weighted"] = "weighted"
    fusion_weights: tuple[float, ...] | None = None
    guide_boundary_width: float = 0.04
    guide_weight: float = 0.75
    feedback: Literal["largest_region", "map"] = "largest_region"

    def __post_init__(self) -> None:
        _check_choice("feedback", self.feedback, ("largest_region", "map"))
        if len(self.pass_tiles) < 2:
            raise ValueError("the multi-scale FCN needs at least two passes (layering units)")
        if any(n < 10 for n in self.pass_tiles):
            raise ValueError(f"each pass needs at least 10 tiles, got {self.pass_tiles}")
        if self.fusion_weights is not None and len(self.fusion_weights) != len(self.pass_tiles):
            raise ValueError("fusion_weights needs one weight per pass")


@dataclass(frozen=True)
class SegmenterConfig:
    """Everything the fused pipeline needs besides the model weights.

    Every image goes through the classifier and the gray net (the first stage). Then:

    * **Presence** (``presence_source``): ``"classifier"`` takes its p(tumor),
      ``"map"`` the gray net map's peak probability, ``"both"`` their geometric
      mean, ``"none"`` says every image has a tumor (the patent's behaviour). Below
      ``presence_threshold`` the mask is empty and no branch runs.
    * **Route** (``route_source``): p(heterogeneous) from the classifier, or from the
      heterogeneity score measured on the gray net's mask (the patent's own criterion
      on a predicted lesion: ``sigmoid((score - triage.threshold) / route_score_scale)``).
      Above ``route_threshold`` the image takes the FCN route; at 1.0 every image
      takes the gray net.
    * **Fusion** on the FCN route: ``"hard"`` keeps the FCN's map (patent-faithful),
      ``"soft"`` averages the FCN's and the gray net's maps weighted by
      p(heterogeneous). The homogeneous route keeps the gray net's map.
    * ``fcn_guide``: the FCN's first pass is guided by the gray net's map
      (``"graynet"``) or by the FCN's own coarse whole-canvas view (``"own"``,
      :attr:`MultiScaleConfig.coarse_seed`).

    The training job chooses these on the validation split from saved predictions
    (:mod:`tumorseg.evaluation.policy`) and registers its choice with the models; the
    defaults only serve untrained segmenters and jobs run with ``--no-choose-policy``.
    """

    triage: TriageConfig = field(default_factory=TriageConfig)
    binarizer: BinarizerConfig = field(default_factory=BinarizerConfig)
    networks: NetworkConfig = field(default_factory=NetworkConfig)
    multiscale: MultiScaleConfig = field(default_factory=MultiScaleConfig)
    limits: ImageLimits = field(default_factory=ImageLimits)
    mask_threshold: float = 0.5
    # Routes whose mask keeps only its largest connected region (one lesion per image).
    largest_component_routes: tuple[str, ...] = ("heterogeneous",)
    route_source: Literal["classifier", "score"] = "score"
    route_score_scale: float = 0.1
    route_threshold: float = 0.5
    fusion: Literal["hard", "soft"] = "soft"
    fcn_guide: Literal["graynet", "own"] = "graynet"
    presence_source: Literal["none", "classifier", "map", "both"] = "map"
    presence_threshold: float = 0.5
    # Average the full-image networks' maps with those of the left-right flipped image.
    flip_tta: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.largest_component_routes) - set(ROUTES))
        if unknown:
            raise ValueError(f"largest_component_routes: unknown routes {unknown}")
        if not 0.0 < self.route_threshold <= 1.0:
            raise ValueError(f"route_threshold must lie in (0, 1], got {self.route_threshold}")
        if not 0.0 <= self.presence_threshold <= 1.0:
            raise ValueError(
                f"presence_threshold must lie in [0, 1], got {self.presence_threshold}"
            )
        if self.route_score_scale <= 0:
            raise ValueError(f"route_score_scale must be positive, got {self.route_score_scale}")
        _check_choice("route_source", self.route_source, ("classifier", "score"))
        _check_choice("fusion", self.fusion, ("hard", "soft"))
        _check_choice("fcn_guide", self.fcn_guide, ("graynet", "own"))
        _check_choice("presence_source", self.presence_source, PRESENCE_SOURCES)

    @property
    def routes_to_fcn(self) -> bool:
        """Whether any image can take the FCN route (no probability exceeds 1.0); a
        forced route (an expert's) still can."""
        return self.route_threshold < GRAYNET_ONLY

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterConfig:
        return dataclass_from_dict(cls, data)


#: Where the tumor-presence probability comes from (see :class:`SegmenterConfig`).
PRESENCE_SOURCES: tuple[str, ...] = ("none", "classifier", "map", "both")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a nested frozen dataclass from ``asdict`` output (lists become tuples)."""
    kwargs: dict[str, Any] = {}
    by_name = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(by_name)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    for name, value in data.items():
        default = getattr(cls(), name) if _has_defaults(cls) else None
        if is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = dataclass_from_dict(type(default), value)
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _has_defaults(cls: type) -> bool:
    try:
        cls()
    except TypeError:
        return False
    return True
