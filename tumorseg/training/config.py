"""Typed training configuration and the named presets of ``jobs/train.py``.

A :class:`TrainConfig` fixes everything a training job does: the segmenter
config the models are built for (sizes, pass schedule), the per-model budgets,
the data split, and how Ray runs it. Presets are plain instances in
:data:`PRESETS`; CLI flags override single fields with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from tumorseg.config import (
    MultiScaleConfig,
    NetworkConfig,
    SegmenterConfig,
    dataclass_from_dict,
)
from tumorseg.data.split import SplitConfig
from tumorseg.networks.roles import ALL_ROLES


@dataclass(frozen=True)
class ModelBudget:
    """How long and how hard one network trains."""

    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class TileSampling:
    """How FCN training tiles are cut from heterogeneous images (see training.samples),
    at each pass of the segmenter's ``multiscale.pass_tiles``."""

    guided_copies: int = 1
    max_tiles_per_image: int = 160
    seed_copies: int = 8  # whole-canvas samples per image, when the config has coarse_seed


@dataclass(frozen=True)
class TrainConfig:
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    classifier: ModelBudget = field(default_factory=ModelBudget)
    graynet: ModelBudget = field(default_factory=ModelBudget)
    fcn: ModelBudget = field(default_factory=lambda: ModelBudget(batch_size=64))
    baseline: ModelBudget = field(default_factory=ModelBudget)
    tiles: TileSampling = field(default_factory=TileSampling)
    split: SplitConfig = field(default_factory=SplitConfig)
    max_images: int | None = None
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    # Torch threads per training worker (None: Ray's default, one per CPU it holds). The
    # networks train one after another, so on a small machine a worker may use the cores
    # that Ray Data leaves idle.
    torch_threads: int | None = None
    # "PACK": a network's workers on as few nodes as possible; "SPREAD": on different nodes.
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_failures: int = 2
    concurrent: bool = False
    train_baseline: bool = True
    # "baseline": the gray net starts from the trained baseline's weights, then trains
    # on the homogeneous shard only (in-house pretraining: no hub weights); "scratch":
    # random initialisation.
    graynet_init: Literal["scratch", "baseline"] = "scratch"
    # "baseline": the ResNet classifier starts from the trained baseline's encoder (a
    # segmentation-trained encoder knows what a lesion looks like); "scratch": random.
    classifier_init: Literal["scratch", "baseline"] = "scratch"
    # Weigh the classifier's cross-entropy by inverse class frequency on its training
    # shard: normal images are one in six of BUSI, and tumor presence is their class.
    balance_classes: bool = False
    # Choose presence, route, fusion and post-processing on the validation split's saved
    # predictions (tumorseg.evaluation.policy); off: keep the segmenter config's.
    choose_policy: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1, got {self.torch_threads}")
        for role in ("graynet", "classifier"):
            init = self.initialisation(role)
            if init not in ("scratch", "baseline"):
                raise ValueError(f"{role}_init must be 'scratch' or 'baseline', not {init!r}")
            if init == "baseline" and not self.train_baseline:
                raise ValueError(
                    f"the {role} starts from the baseline's weights ({role}_init='baseline'), "
                    f"so the baseline must be trained; train it, or use --{role}-init scratch"
                )
        resnet = self.segmenter.networks.classifier_backbone == "resnet"
        if self.classifier_init == "baseline" and not resnet:
            raise ValueError(
                "classifier_init='baseline' needs the ResNet classifier "
                "(networks.classifier_backbone='resnet'): only it shares the baseline's encoder"
            )

    def budget(self, role: str) -> ModelBudget:
        return getattr(self, role)

    def initialisation(self, role: str) -> str:
        """``"baseline"`` when ``role`` starts from the trained baseline, else ``"scratch"``."""
        return getattr(self, f"{role}_init", "scratch")

    def warm_started(self) -> tuple[str, ...]:
        """The roles that start from the baseline, so train after it."""
        return tuple(r for r in ("classifier", "graynet") if self.initialisation(r) == "baseline")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, data)


def _smoke() -> TrainConfig:
    """About a minute on two cores: tiny networks, tiny images, two epochs."""
    networks = NetworkConfig(
        classifier_size=64,
        classifier_channels=(8, 16, 32),
        graynet_size=64,
        graynet_resnet_depth=18,
        graynet_width=8,
        fcn_tile_size=32,
        fcn_channels=(8, 16),
    )
    multiscale = MultiScaleConfig(canvas_size=128, pass_tiles=(10, 16))
    tiny = ModelBudget(epochs=2, batch_size=8, learning_rate=2e-3)
    return TrainConfig(
        segmenter=SegmenterConfig(networks=networks, multiscale=multiscale),
        classifier=tiny,
        graynet=tiny,
        fcn=replace(tiny, batch_size=32),
        baseline=tiny,
        tiles=TileSampling(guided_copies=1, max_tiles_per_image=32),
        cpus_per_worker=0.5,
        max_failures=1,
    )


def _cpu() -> TrainConfig:
    """The whole BUSI corpus on a 2-core machine in under 40 minutes (35.5 measured)."""
    networks = NetworkConfig(
        classifier_size=128,
        classifier_channels=(16, 32, 64, 96),
        classifier_backbone="resnet",
        graynet_size=128,
        graynet_resnet_depth=18,
        graynet_width=16,
        graynet_input="binary+gray",
        fcn_tile_size=48,
        fcn_channels=(16, 32, 64),
    )
    multiscale = MultiScaleConfig(canvas_size=256, pass_tiles=(50, 80, 100))
    return TrainConfig(
        segmenter=SegmenterConfig(networks=networks, multiscale=multiscale),
        # Trained from scratch (a small CNN, 30 epochs at 3e-4) the classifier's presence
        # AUC stayed at 0.50-0.65; it now fine-tunes the baseline's encoder.
        classifier=ModelBudget(epochs=15, batch_size=16, learning_rate=3e-4),
        # The gray net starts from the baseline: at 1e-3 its specialisation lost 0.06 Dice
        # to the baseline on the validation tumor images (0.682 vs 0.744, seed 0), so it
        # fine-tunes at a fifth of the rate.
        graynet=ModelBudget(epochs=12, batch_size=8, learning_rate=2e-4),
        fcn=ModelBudget(epochs=24, batch_size=64, learning_rate=2e-3),
        baseline=ModelBudget(epochs=20, batch_size=8, learning_rate=1e-3),
        tiles=TileSampling(guided_copies=1, max_tiles_per_image=120, seed_copies=4),
        cpus_per_worker=1.0,
        # With one thread the worker used ~1.3 of the 2 cores; two threads made a
        # baseline training step 1.55x faster (460 vs 715 ms, README "Measured").
        torch_threads=2,
        graynet_init="baseline",
        classifier_init="baseline",
    )


def _gpu() -> TrainConfig:
    """Full resolution and a long schedule, for a GPU cluster."""
    networks = NetworkConfig(
        graynet_input="binary+gray", graynet_resnet_depth=34, classifier_backbone="resnet"
    )
    return TrainConfig(
        segmenter=SegmenterConfig(networks=networks),
        classifier=ModelBudget(epochs=40, batch_size=32),
        graynet=ModelBudget(epochs=150, batch_size=16),
        fcn=ModelBudget(epochs=60, batch_size=256),
        baseline=ModelBudget(epochs=150, batch_size=16),
        tiles=TileSampling(guided_copies=2, max_tiles_per_image=300),
        num_workers=4,
        use_gpu=True,
        cpus_per_worker=4.0,
        concurrent=True,
        graynet_init="baseline",
        classifier_init="baseline",
    )


PRESETS: dict[str, TrainConfig] = {"smoke": _smoke(), "cpu": _cpu(), "gpu": _gpu()}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """A preset with top-level fields replaced (``None`` values leave the preset's)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    config = PRESETS[name]
    chosen = {k: v for k, v in overrides.items() if v is not None}
    epochs = chosen.pop("epochs", None)
    if epochs is not None:
        chosen.update({role: replace(config.budget(role), epochs=epochs) for role in ALL_ROLES})
    return replace(config, **chosen)
