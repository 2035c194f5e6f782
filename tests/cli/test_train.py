from __future__ import annotations

import pytest

from tumorseg.cli.train import parse_args, train_config
from tumorseg.training.config import PRESETS


def test_unset_flags_keep_the_preset() -> None:
    assert train_config(parse_args(["--preset", "cpu"])) == PRESETS["cpu"]


def test_flags_replace_the_preset() -> None:
    config = train_config(parse_args(["--preset", "cpu", "--balance-classes", "--seed", "3"]))
    assert config.balance_classes and not PRESETS["cpu"].balance_classes
    assert config.seed == 3
    assert not train_config(parse_args(["--no-balance-classes"])).balance_classes


def test_flags_that_contradict_the_preset_exit_with_the_reason() -> None:
    with pytest.raises(SystemExit, match="--graynet-init scratch"):
        train_config(parse_args(["--preset", "cpu", "--no-baseline"]))
