"""Request and response plumbing of the ingress, without a server."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from tumorseg.inference.result import SegmentationResult
from tumorseg.io import png_bytes
from tumorseg.serving.http import (
    RequestError,
    check_declared_length,
    media_type,
    segment_payload,
    upload_name,
)
from tumorseg.serving.settings import ModelChoice, ServeSettings
from tumorseg.tracking import ModelSelector


def test_media_types_map_to_decoder_names_and_others_are_415() -> None:
    assert media_type("image/PNG; charset=binary") == "image/png"
    assert upload_name("application/dicom") == "upload.dcm"
    assert upload_name("image/jpeg") == "upload.jpg"
    for bad in ("text/plain", None, "application/json"):
        with pytest.raises(RequestError) as caught:
            upload_name(bad)
        assert caught.value.status == 415


def test_declared_length_over_the_limit_is_413_and_garbage_is_400() -> None:
    check_declared_length(None, 10)
    check_declared_length("10", 10)
    with pytest.raises(RequestError) as caught:
        check_declared_length("11", 10)
    assert caught.value.status == 413
    with pytest.raises(RequestError) as caught:
        check_declared_length("ten", 10)
    assert caught.value.status == 400


def test_payload_carries_the_contract_fields_and_a_decodable_mask() -> None:
    mask = np.zeros((30, 40), bool)
    mask[5:10, 7:20] = True
    result = SegmentationResult(
        mask=mask,
        route="homogeneous",
        route_confidence=0.9,
        heterogeneity_score=0.3,
        model_versions={"classifier": "c/1", "graynet": "g/1"},
        timings={"graynet": 0.0125},
    )
    payload = segment_payload(
        result, png_bytes(mask), deployments=["Classifier"], timings={"decode": 0.001}
    )
    decoded = cv2.imdecode(
        np.frombuffer(base64.b64decode(payload["mask_png_base64"]), np.uint8),
        cv2.IMREAD_UNCHANGED,
    )
    assert decoded.shape == (30, 40) and set(np.unique(decoded)) == {0, 255}
    assert payload["bbox"] == {"y0": 5, "x0": 7, "y1": 10, "x1": 20}
    assert payload["area_px"] == 65 and payload["timings_ms"] == {"decode": 1.0}
    assert payload["work_ms"] == {"graynet": 12.5} and "timings" not in payload
    assert (payload["width"], payload["height"]) == (40, 30)


def test_settings_come_from_args_then_environment(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    monkeypatch.setenv("TUMORSEG_MODEL_ALIAS", "candidate")
    monkeypatch.delenv("TUMORSEG_API_TOKEN", raising=False)
    settings = ServeSettings.from_args({})
    assert settings.models.tracking_uri == "sqlite:///env.db"
    assert ServeSettings.from_args({"model_version": 2}).models.selector.version == "2"
    assert settings.models.model_alias == "candidate" and settings.api_token is None
    monkeypatch.setenv("TUMORSEG_API_TOKEN", "s3cret")
    settings = ServeSettings.from_args({"model_alias": "champion", "max_pixels": 100})
    assert settings.models.model_alias == "champion" and settings.limits.max_pixels == 100
    assert settings.api_token == "s3cret"
    with pytest.raises(ValueError, match="unknown application args"):
        ServeSettings.from_args({"modle_alias": "x"})


def test_user_config_switches_the_model_choice() -> None:
    default = ModelChoice(model_alias="champion", tracking_uri="sqlite:///a.db")
    switched = ModelChoice.from_user_config({"model_version": 3}, default)
    assert switched.selector == ModelSelector(version="3")
    assert switched.tracking_uri == "sqlite:///a.db"
    back = ModelChoice.from_user_config({"model_alias": "candidate"}, switched)
    assert back.selector == ModelSelector("candidate")
    with pytest.raises(ValueError, match="not both"):
        ModelChoice.from_user_config({"model_alias": "a", "model_version": 2}, default)
    assert ModelChoice.from_user_config(None, default) == default
    with pytest.raises(ValueError, match="unknown user_config keys"):
        ModelChoice.from_user_config({"alias": "x"}, default)


def test_bearer_token_is_checked_only_when_set() -> None:
    from tumorseg.serving.http import authorized

    assert authorized(None, None) and authorized("anything", None)
    assert authorized("Bearer s3cret", "s3cret")
    assert authorized("bearer s3cret", "s3cret") and authorized("BEARER  s3cret ", "s3cret")
    assert not authorized(None, "s3cret") and not authorized("Bearer nope", "s3cret")
    assert not authorized("Basic s3cret", "s3cret") and not authorized("s3cret", "s3cret")


def test_an_empty_token_variable_is_refused_not_an_open_api(monkeypatch) -> None:
    monkeypatch.setenv("TUMORSEG_API_TOKEN", "  ")
    with pytest.raises(ValueError, match="TUMORSEG_API_TOKEN is set but empty"):
        ServeSettings.from_args({})
    monkeypatch.delenv("TUMORSEG_API_TOKEN")
    assert ServeSettings.from_args({}).api_token is None  # unset: local use, open


def test_only_passing_failures_are_a_503_to_retry() -> None:
    from ray.exceptions import ActorDiedError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    from tumorseg.errors import InvalidImageError
    from tumorseg.serving.http import failure_response

    assert failure_response(BackPressureError(num_queued_requests=9, max_queued_requests=8))[
        ::2
    ] == (503, True)
    assert failure_response(ActorDiedError())[::2] == (503, True)
    status, detail, retry = failure_response(RayTaskError("segment", "tb", ValueError("boom")))
    assert (status, retry) == (500, False) and detail == "segmentation failed: ValueError: boom"
    bad = RayTaskError("segment", "tb", InvalidImageError("x.dcm", "no frames"))
    assert failure_response(bad)[:2] == (400, "x.dcm: no frames")
