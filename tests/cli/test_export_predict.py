"""``tumorseg export`` then ``tumorseg predict``, as a user runs them (console script, fresh
processes, no MLflow or Ray in predict), against the bulk job with the same models.

The models are the untrained tiny ``champion`` set of the ``champion_store`` fixture:
the checks are that the three paths give the same masks, not that the masks are good.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tumorseg.bulk import SegmentJobConfig, run_segmentation
from tumorseg.bulk.ledger import MASKS_DIR

pytestmark = pytest.mark.slow

N_IMAGES = 20


def tumorseg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "-c", "import sys; from tumorseg.cli import main; sys.exit(main())"]
    if shutil.which("tumorseg"):
        command = [shutil.which("tumorseg")]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def images(busi_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scans")
    for label in ("benign", "malignant", "normal"):
        for path in sorted((busi_root / label).glob("*).png"))[: N_IMAGES // 3 + 1]:
            shutil.copy(path, root / path.name)
    for extra in sorted(root.glob("*.png"))[N_IMAGES:]:
        extra.unlink()
    return root


@pytest.fixture(scope="module")
def exported(champion_store, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("export")
    done = tumorseg("export", "-o", "model", "--tracking-uri", champion_store, "--onnx", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "model"


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {
        path.relative_to(folder).as_posix(): cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        for path in sorted(folder.rglob("*.png"))
    }


def test_the_folder_holds_weights_config_onnx_and_a_card(exported) -> None:
    metadata = json.loads((exported / "metadata.json").read_text())
    assert metadata["intended_use"].startswith("Research use only")
    assert metadata["model_versions"]["fcn"] == "tumorseg-fcn/1"
    assert set(metadata["onnx_max_difference"]) == {"classifier", "graynet", "fcn"}
    for role in ("classifier", "graynet", "fcn"):
        assert (exported / role / "weights.safetensors").is_file()
        assert (exported / f"{role}.onnx").is_file()
    assert "Research use only" in (exported / "MODEL_CARD.md").read_text()


@pytest.fixture(scope="module")
def predicted(exported, images, tmp_path_factory) -> dict[str, Path]:
    """``tumorseg predict`` with each engine: ``{engine: output folder}``."""
    work = tmp_path_factory.mktemp("predicted")
    for engine in ("torch", "onnx"):
        done = tumorseg(
            *("predict", "-i", str(images), "-o", engine, "-m", str(exported)),
            *("--engine", engine),
            cwd=work,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return {engine: work / engine for engine in ("torch", "onnx")}


def test_predict_gives_the_bulk_jobs_masks(
    ray_session, champion_store, images, predicted, tmp_path
) -> None:
    with open(predicted["torch"] / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == N_IMAGES and {row["status"] for row in rows} == {"ok"}
    assert {row["fcn_model"] for row in rows} == {"tumorseg-fcn"}
    bulk = tmp_path / "bulk"
    summary = run_segmentation(
        SegmentJobConfig(input=str(images), output=str(bulk), tracking_uri=champion_store)
    )
    assert summary.segmented == N_IMAGES
    mine, segmented = masks(predicted["torch"] / MASKS_DIR), masks(bulk / MASKS_DIR)
    assert mine.keys() == segmented.keys() and len(mine) == N_IMAGES
    for name, mask in mine.items():  # batches differ: allow ties at p = 0.5 to move
        assert np.mean(mask != segmented[name]) <= 1e-3, name


def test_the_onnx_engine_gives_torchs_masks_within_tolerance(predicted) -> None:
    """Tolerance: at most 0.2 % of an image's pixels differ (float reduction order moves
    probabilities that sit at the 0.5 threshold)."""
    torch_masks = masks(predicted["torch"] / MASKS_DIR)
    onnx_masks = masks(predicted["onnx"] / MASKS_DIR)
    assert torch_masks.keys() == onnx_masks.keys() and len(torch_masks) == N_IMAGES
    for name, mask in torch_masks.items():
        assert np.mean(mask != onnx_masks[name]) <= 2e-3, name


def test_every_input_failing_exits_non_zero(exported, tmp_path, capsys) -> None:
    from tumorseg.cli import main

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    out = str(tmp_path / "out")
    assert main(["predict", "-i", str(tmp_path / "bad"), "-o", out, "-m", str(exported)]) == 1
    assert "0 segmented, 1 errors" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not a tumorseg model folder"):
        main(["predict", "-i", str(tmp_path / "bad"), "-o", out, "-m", str(tmp_path)])
