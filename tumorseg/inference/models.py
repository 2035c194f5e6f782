"""The set of trained networks a segmenter runs, with where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tumorseg.config import NetworkConfig
from tumorseg.networks import FUSED_ROLES, build_network


class MissingNetworkError(RuntimeError):
    """A stage needs a network the set was loaded without (``roles=``)."""


@dataclass
class ModelSet:
    """Classifier, gray net and tile FCN, plus a version label per model role.

    A process that runs one stage may load only that stage's network (a Serve
    deployment does); the others stay ``None`` and :meth:`network` says so.
    ``versions`` names every role of the set either way.
    """

    classifier: nn.Module | None
    graynet: nn.Module | None
    fcn: nn.Module | None
    versions: dict[str, str] = field(default_factory=dict)

    def network(self, role: str) -> nn.Module:
        model = getattr(self, role)
        if model is None:
            loaded = [name for name in FUSED_ROLES if getattr(self, name) is not None]
            raise MissingNetworkError(
                f"this model set was loaded without its {role} network (loaded: {loaded})"
            )
        return model

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
            if model is not None:
                model.to(device).eval()
        return self
