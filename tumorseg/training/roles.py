"""What differs between the four trainings: inputs, targets, loss and validation score."""

from __future__ import annotations

from dataclasses import dataclass

from tumorseg.config import NetworkConfig


@dataclass(frozen=True)
class RoleSpec:
    """Column names of a role's Ray dataset and how its score is computed."""

    input_column: str
    target_column: str
    task: str  # "segmentation" | "classification"
    score_name: str
    # Which of the baseline's tensors a warm start takes ("": all; see transfer_weights).
    warm_start_part: str = ""

    def gray_channels(self, networks: NetworkConfig) -> tuple[int, ...]:
        """Input channels holding gray levels (augmented in intensity)."""
        if self.input_column == "graynet_input":
            return (1,) if networks.graynet_input == "binary+gray" else ()
        if self.input_column == "inputs":  # FCN: tile and context, not the guide
            return (0, 1)
        return (0,)


ROLE_SPECS: dict[str, RoleSpec] = {
    "classifier": RoleSpec(
        "classifier_input", "class_index", "classification", "val_auc", "encoder."
    ),
    "graynet": RoleSpec("graynet_input", "seg_mask", "segmentation", "val_dice"),
    "fcn": RoleSpec("inputs", "targets", "segmentation", "val_dice"),
    "baseline": RoleSpec("baseline_input", "seg_mask", "segmentation", "val_dice"),
}
