"""A model set as a folder that leaves the registry (nnU-Net's exported model, MONAI's
bundle): each network's weights and description, the segmenter config, a model card.

Layout::

    DIR/metadata.json        format, intended use, provenance, figures (the model card)
    DIR/MODEL_CARD.md        the same for people
    DIR/segmenter_config.json
    DIR/<role>/weights.safetensors, DIR/<role>/network.json   (tumorseg.networks.weights)
    DIR/<role>.onnx          optional, an ONNX graph per network (tumorseg export --onnx)

Loading needs neither MLflow nor Ray and never unpickles anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tumorseg.config import ENGINES, SegmenterConfig
from tumorseg.errors import ModelArtifactError
from tumorseg.inference.models import ModelSet
from tumorseg.networks.roles import ALL_ROLES, FUSED_ROLES, network_role
from tumorseg.networks.weights import load_network, save_network

FOLDER_FORMAT = "tumorseg-model-folder/1"
METADATA_FILE = "metadata.json"
CARD_FILE = "MODEL_CARD.md"
CONFIG_FILE = "segmenter_config.json"
INTENDED_USE = "Research use only. Not a medical device; not for diagnosis or treatment decisions."


def save_model_folder(
    directory: str | Path,
    models: ModelSet,
    config: SegmenterConfig,
    *,
    baseline: nn.Module | None = None,
    card: dict[str, Any] | None = None,
    onnx: bool = False,
) -> Path:
    """Write the set (and the baseline when given) with its config and model card;
    with ``onnx``, also an ONNX graph per fused network, each checked against torch
    (the largest difference goes in the metadata as ``onnx_max_difference``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    networks = {role: getattr(models, role) for role in FUSED_ROLES}
    if baseline is not None:
        networks["baseline"] = baseline
    for role, model in networks.items():
        save_network(model, role, config.networks, directory / role)
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True))
    metadata = {
        "format": FOLDER_FORMAT,
        "intended_use": INTENDED_USE,
        "roles": list(networks),
        "model_versions": dict(models.versions),
        **(card or {}),
    }
    if onnx:
        metadata["onnx_max_difference"] = _export_onnx_graphs(directory, models, config)
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=1, sort_keys=True))
    (directory / CARD_FILE).write_text(model_card_markdown(metadata))
    return directory


def _export_onnx_graphs(directory: Path, models: ModelSet, config: SegmenterConfig) -> dict:
    """``DIR/<role>.onnx`` for each fused network; ``{role: largest difference}``."""
    from tumorseg.inference.onnx_engine import export_onnx

    differences = {}
    for role in FUSED_ROLES:
        example = network_role(role).example_input(config.networks)
        batch = np.random.default_rng(0).random((4, *example.shape[1:]), dtype=np.float32)
        differences[role] = export_onnx(getattr(models, role), batch, directory / f"{role}.onnx")
    return differences


def load_model_folder(
    directory: str | Path,
    device: str | torch.device = "cpu",
    engine: str = "torch",
    roles: Sequence[str] = FUSED_ROLES,
) -> tuple[ModelSet, SegmenterConfig]:
    """The fused set and config of a model folder; versions as the folder recorded them.

    ``engine="onnx"`` runs the exported ONNX graphs with ONNX Runtime (CPU only);
    ``roles`` loads only those networks (the others stay ``None``).
    """
    directory = Path(directory)
    metadata = read_metadata(directory)
    config = read_folder_config(directory)
    if engine == "onnx":
        load = _onnx_network
    elif engine == "torch":

        def load(folder: Path, role: str) -> nn.Module:
            return load_network(folder / role, device, role=role)
    else:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    models = {role: load(directory, role) if role in roles else None for role in FUSED_ROLES}
    versions = metadata.get("model_versions") or {}
    labels = {role: str(versions.get(role, f"{directory.name}/{role}")) for role in FUSED_ROLES}
    return ModelSet(**models, versions=labels), config


def read_folder_config(directory: str | Path) -> SegmenterConfig:
    """The folder's segmenter config, without loading any network."""
    path = Path(directory) / CONFIG_FILE
    try:
        return SegmenterConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise ModelArtifactError(f"{path}: unreadable ({error})") from None


def _onnx_network(directory: Path, role: str) -> nn.Module:
    from tumorseg.inference.onnx_engine import OnnxNetwork
    from tumorseg.inference.threads import cpu_threads

    path = directory / f"{role}.onnx"
    if not path.is_file():
        raise ModelArtifactError(f"{directory} has no {path.name}: export it with --onnx")
    return OnnxNetwork(path, threads=cpu_threads())  # the CPUs torch was given


def load_folder_baseline(directory: str | Path, device: str | torch.device = "cpu"):
    """The folder's baseline network, or ``None`` when it was exported without one."""
    directory = Path(directory)
    if "baseline" not in read_metadata(directory).get("roles", []):
        return None
    return load_network(directory / "baseline", device, role="baseline")


def read_metadata(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelArtifactError(
            f"{directory} is not a tumorseg model folder (no {METADATA_FILE}); "
            "make one with `tumorseg export`"
        ) from None
    except (OSError, ValueError) as error:
        raise ModelArtifactError(f"{path}: unreadable ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FOLDER_FORMAT:
        raise ModelArtifactError(f"{path} is not a {FOLDER_FORMAT} description")
    unknown = set(metadata.get("roles", [])) - set(ALL_ROLES)
    if unknown:
        raise ModelArtifactError(f"{path} names unknown roles {sorted(unknown)}")
    return metadata


def model_card_markdown(metadata: dict[str, Any]) -> str:
    """A short card: intended use, provenance, data, figures."""
    lines = ["# tumorseg model set", "", f"**Intended use.** {metadata['intended_use']}", ""]
    rows = [
        ("tumorseg version", metadata.get("tumorseg_version")),
        ("git commit", metadata.get("git_commit")),
        ("exported", metadata.get("exported_at")),
        ("registry", metadata.get("source")),
        ("training run", metadata.get("training_run_id")),
        ("training data", metadata.get("training_data")),
    ]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows if value not in (None, "")]
    for role, version in sorted(metadata.get("model_versions", {}).items()):
        lines.append(f"| {role} | {version} |")
    for title, key in (("Data split", "split_counts"), ("Figures", "figures")):
        section = metadata.get(key) or {}
        if section:
            lines += ["", f"## {title}", "", "| | |", "|---|---|"]
            lines += [f"| {name} | {_cell(value)} |" for name, value in sorted(section.items())]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
