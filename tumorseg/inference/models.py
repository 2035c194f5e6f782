"""The set of trained networks a segmenter runs, with where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tumorseg.config import NetworkConfig
from tumorseg.networks import FUSED_ROLES, build_network


@dataclass
class ModelSet:
    """Classifier, gray net and tile FCN, plus a version label per model role."""

    classifier: nn.Module
    graynet: nn.Module
    fcn: nn.Module
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def untrained(cls, config: NetworkConfig | None = None, seed: int = 0) -> ModelSet:
        """Freshly initialised networks (deterministic for a seed): tests, demos, speed."""
        config = config or NetworkConfig()
        generator_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            models = {role: build_network(role, config) for role in FUSED_ROLES}
        finally:
            torch.random.set_rng_state(generator_state)
        return cls(**models, versions={role: f"untrained-seed{seed}" for role in models})

    def to(self, device: torch.device) -> ModelSet:
        for model in (self.classifier, self.graynet, self.fcn):
            model.to(device).eval()
        return self
