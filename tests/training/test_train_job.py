"""The smoke preset end to end: real Ray, real Ray Train, a real MLflow sqlite store."""

from __future__ import annotations

from dataclasses import replace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tumorseg.data import discover
from tumorseg.io import load_image
from tumorseg.tracking import ModelNames, load_baseline, load_model_set
from tumorseg.training.config import preset_config
from tumorseg.training.job import TrainJobOptions, run_train_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(ray_session, busi24, tmp_path_factory):
    """One smoke training job, shared by the checks below (Train start-up is costly);
    its gray net and ResNet classifier start from the baseline, as in the cpu and gpu
    presets, and the networks train two at a time, as in the gpu preset (baseline and
    FCN, then the two that start from the baseline)."""
    root = tmp_path_factory.mktemp("smoke")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    smoke = preset_config("smoke")
    networks = replace(smoke.segmenter.networks, classifier_backbone="resnet")
    config = replace(
        smoke,
        segmenter=replace(smoke.segmenter, networks=networks),
        graynet_init="baseline",
        classifier_init="baseline",
        balance_classes=True,
        concurrent=True,
    )
    outcome = run_train_job(
        TrainJobOptions(
            config=config,
            data=str(busi24),
            tracking_uri=uri,
            storage_path=str(root / "ray"),
            experiment="smoke-test",
        )
    )
    return outcome, uri


def test_every_network_trained_and_registered(trained) -> None:
    outcome, uri = trained
    assert set(outcome.fits) == {"classifier", "graynet", "fcn", "baseline"}
    assert sum(outcome.split_counts.values()) == 24 and outcome.errors == []
    client = MlflowClient(uri)
    names = ModelNames()
    for role in outcome.fits:
        version = client.get_model_version_by_alias(names.for_role(role), "candidate")
        assert str(version.version) == str(outcome.versions[role])
    assert outcome.promoted  # first registration becomes the champion


def test_models_load_by_alias_and_segment(trained, busi24) -> None:
    outcome, uri = trained
    models, config = load_model_set(uri)  # the champion
    assert models.versions["fcn"].endswith(f"/{outcome.versions['fcn']}")
    assert load_baseline(uri) is not None
    # the policy chosen on the validation split's predictions travels with the models
    params = MlflowClient(uri).get_run(outcome.parent_run_id).data.params
    assert config.route_threshold == pytest.approx(float(params["policy.route_threshold"]))
    assert config.presence_source == params["policy.presence_source"]
    assert config.fusion == params["policy.fusion"]
    from tumorseg import Segmenter

    image = load_image(discover(busi24)[0].path)
    result = Segmenter(models, config).segment(image)
    assert result.mask.shape == image.shape


def test_metrics_and_artifacts_logged(trained) -> None:
    outcome, uri = trained
    client = MlflowClient(uri)
    parent = client.get_run(outcome.parent_run_id)
    assert np.isfinite(parent.data.metrics["fused_val_dice"])
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    assert {"train_config.json", "splits.json", "policy.json", "validation"} <= artifacts
    validation = [a.path for a in client.list_artifacts(outcome.parent_run_id, "validation")]
    assert "validation/summary.json" in validation and "validation/report.md" in validation
    overlays = [
        a.path
        for folder in validation
        if not folder.endswith((".json", ".md", ".png", ".parquet"))
        for a in client.list_artifacts(outcome.parent_run_id, folder)
    ]
    assert any(path.endswith(".png") for path in overlays), validation
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'",
    )
    by_role = {run.info.run_name: run for run in children}
    assert {"classifier", "graynet", "fcn", "baseline"} <= set(by_role)
    assert by_role["graynet"].data.params["init"] == "baseline"
    assert by_role["fcn"].data.params["init"] == "scratch"
    dice_history = client.get_metric_history(by_role["graynet"].info.run_id, "val_dice")
    assert [m.step for m in dice_history] == [0, 1]  # one value per epoch
    auc = client.get_metric_history(by_role["classifier"].info.run_id, "val_auc")
    assert len(auc) == 2
    child_artifacts = {a.path for a in client.list_artifacts(by_role["fcn"].info.run_id)}
    assert "learning_curves.png" in child_artifacts
    mlflow.set_tracking_uri(None)


def test_evaluate_job_on_the_trained_models_validation_split(trained, busi24, tmp_path) -> None:
    """``jobs/evaluate.py`` as a user runs it, on the split the training run logged."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    outcome, uri = trained
    repo = Path(__file__).resolve().parents[2]
    output = tmp_path / "evaluation"

    arguments = [
        "--data", str(busi24), "--split", "val", "--tracking-uri", uri,
        "--output", str(output), "--experiment", "smoke-test",
    ]  # fmt: skip

    def evaluate(*extra: str) -> dict:
        done = subprocess.run(
            [sys.executable, str(repo / "jobs" / "evaluate.py"), *arguments, *extra],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((output / "summary.json").read_text())

    summary = evaluate()
    assert summary["n_images"] == outcome.split_counts["val"]
    for method in ("fused", "baseline"):
        assert 0.0 <= summary[method]["dice"] <= 1.0
    # The fused figure is the one training computed on the same split with the same models.
    assert summary["fused"]["dice"] == pytest.approx(outcome.fused_val_dice, abs=1e-6)
    assert (output / "report.md").is_file() and list(output.glob("*.parquet"))
    assert (output / "predictions" / "cases.parquet").is_file()
    assert "## Alternatives, from the same predictions" in (output / "report.md").read_text()
    # The saved predictions rescored under another policy.
    # (in this process: the CLI's own main, without a second interpreter's start-up)
    from tumorseg.cli.evaluate import main

    rescore = ["--reuse-predictions", "--policy", "presence_source=none", "--no-compare"]
    assert main([*arguments, *rescore]) == 0
    mlflow.set_tracking_uri(None)  # main set this process's default; later tests use theirs
    again = json.loads((output / "summary.json").read_text())
    assert again["n_images"] == summary["n_images"]
    assert again["settings"]["policy"]["presence_source"] == "none"
    assert again["fused"]["miss_rate"] == 0.0 or again["fused"]["dice"] is None
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("smoke-test").experiment_id],
        filter_string="tags.job = 'evaluate'",
    )
    assert runs and "fused_dice" in runs[0].data.metrics
