"""The Serve application over real HTTP: both routes, the error table, a live model switch.

Models are the untrained tiny sets of the ``champion_store`` fixture (version 1,
``champion``, and version 2, ``candidate``, to
switch to: these tests check the service, not the masks' quality.
"""

from __future__ import annotations

import base64
import io
import re
import socket
import threading
import time
from collections import Counter

import cv2
import numpy as np
import pydicom
import pytest
import requests
from hostile_files import png_claiming
from serving_helpers import MAX_BYTES, MAX_PIXELS, UPLOAD_SECONDS, app_config, deploy

from tumorseg.io.dicom import dicom_bytes
from tumorseg.serving.ingress import BY_VALUE_MAX_BYTES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def busi_png(busi_root) -> tuple[bytes, tuple[int, int]]:
    path = sorted((busi_root / "benign").glob("* ([0-9]).png"))[0]
    data = path.read_bytes()
    return data, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).shape


def post(url: str, data: bytes, content_type: str = "image/png", **params) -> requests.Response:
    return requests.post(
        f"{url}/v1/segment",
        data=data,
        headers={"Content-Type": content_type},
        params=params,
        timeout=120,
    )


def mask_of(payload: dict) -> np.ndarray:
    return cv2.imdecode(
        np.frombuffer(base64.b64decode(payload["mask_png_base64"]), np.uint8), cv2.IMREAD_UNCHANGED
    )


@pytest.mark.parametrize(
    ("route", "deployments"),
    [
        ("homogeneous", ["Classifier", "Binarizer", "GrayNet"]),
        ("heterogeneous", ["Classifier", "Binarizer", "GrayNet", "MultiScaleFCN"]),
    ],
)
def test_each_route_runs_its_deployments(service, busi_png, route, deployments) -> None:
    data, shape = busi_png
    answer = post(service, data, route=route)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["route"] == route and payload["deployments"] == deployments
    assert payload["tumor_present"] is True  # a forced route says a lesion is there
    assert mask_of(payload).shape == shape == (payload["height"], payload["width"])
    assert payload["model_versions"][
        {"homogeneous": "graynet", "heterogeneous": "fcn"}[route]
    ].endswith("/1")
    stage = {"homogeneous": "graynet", "heterogeneous": "fcn"}[route]
    assert {"decode", "classify", "graynet", stage, "encode", "total"} <= set(payload["timings_ms"])
    assert {"graynet", stage} <= set(payload["work_ms"])  # the replicas' own compute


@pytest.mark.parametrize("route", ["homogeneous", "heterogeneous"])
def test_images_too_big_to_pass_by_value_still_segment(service, busi_png, route) -> None:
    """Above ``BY_VALUE_MAX_BYTES`` the ingress passes the image by reference: Serve's
    replica-to-replica gRPC refuses messages over 4 MiB (a 1500² image got 503s)."""
    data, _ = busi_png
    side = int((1.25 * BY_VALUE_MAX_BYTES) ** 0.5)
    assert side * side <= MAX_PIXELS
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    _, jpeg = cv2.imencode(".jpg", cv2.resize(gray, (side, side)))
    answer = post(service, jpeg.tobytes(), "image/jpeg", route=route)
    assert answer.status_code == 200, answer.text
    assert mask_of(answer.json()).shape == (side, side)


def test_the_classifier_routes_when_no_route_is_forced(service, busi_png) -> None:
    data, _ = busi_png
    payload = post(service, data).json()
    assert payload["deployments"][0] == "Classifier"
    assert payload["route"] in ("homogeneous", "heterogeneous")
    assert 0.5 <= payload["route_confidence"] <= 1.0
    assert isinstance(payload["tumor_present"], bool)
    assert 0.0 <= payload["tumor_probability"] <= 1.0
    assert payload["model_versions"]["classifier"] == "tumorseg-classifier/1"
    assert {"classify", "decode"} <= set(payload["timings_ms"])


def test_dicom_jpeg_multipart_and_png_format(service, busi_png) -> None:
    data, shape = busi_png
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    dicom = post(service, dicom_bytes(gray), "application/dicom")
    assert dicom.status_code == 200 and mask_of(dicom.json()).shape == shape
    _, jpeg = cv2.imencode(".jpg", gray)
    assert post(service, jpeg.tobytes(), "image/jpeg").status_code == 200
    multipart = requests.post(
        f"{service}/v1/segment",
        files={"file": ("x.png", io.BytesIO(data), "image/png")},
        timeout=120,
    )
    assert multipart.status_code == 200 and mask_of(multipart.json()).shape == shape
    png = post(service, data, format="png")
    assert png.headers["content-type"] == "image/png" and png.headers["x-tumorseg-route"]
    assert cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == shape


def test_a_dicom_upload_gets_its_seg_and_a_preview(service, busi_png) -> None:
    data, _ = busi_png
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    source = pydicom.dcmread(io.BytesIO(dicom_bytes(gray)))
    source.PixelSpacing = [0.1, 0.2]
    buffer = io.BytesIO()
    source.save_as(buffer, enforce_file_format=True)
    dicom = buffer.getvalue()
    answer = post(service, dicom, "application/dicom", route="heterogeneous")
    body = answer.json()
    assert body["pixel_spacing_mm"] == [0.1, 0.2]
    assert body["area_mm2"] == pytest.approx(body["area_px"] * 0.02)
    preview = cv2.imdecode(
        np.frombuffer(base64.b64decode(answer.json()["image_png_base64"]), np.uint8),
        cv2.IMREAD_UNCHANGED,
    )
    np.testing.assert_array_equal(preview, gray)  # what the viewer draws under the mask
    seg = post(service, dicom, "application/dicom", format="dicom-seg", route="heterogeneous")
    assert seg.status_code == 200 and seg.headers["content-type"] == "application/dicom"
    assert seg.headers["x-tumorseg-route"] == "heterogeneous"
    dataset = pydicom.dcmread(io.BytesIO(seg.content))
    assert dataset.Modality == "SEG" and dataset.StudyInstanceUID == source.StudyInstanceUID
    (referenced,) = dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    np.testing.assert_array_equal(dataset.pixel_array.astype(bool), mask_of(answer.json()) > 0)
    png_body = post(service, data).json()
    assert "image_png_base64" not in png_body  # the browser shows a PNG itself
    assert png_body["area_mm2"] is None and png_body["bbox_mm"] is None  # no size stated


def test_a_cine_loop_answers_per_frame_and_as_one_seg(service, busi_png) -> None:
    data, _ = busi_png
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    gray = cv2.resize(gray, (200, 150))  # 60 frames within the test app's byte limit
    frames = [np.roll(gray, 2 * index, axis=1) for index in range(60)]
    loop = dicom_bytes(frames)
    answer = post(service, loop, "application/dicom")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["frame_count"] == 60 and len(body["frames"]) == 60
    masks = np.stack([mask_of(frame) > 0 for frame in body["frames"]])
    assert masks.shape == (60, 150, 200) and "image_png_base64" in body
    for index in (0, 59):  # a loop's frame is segmented as the same still image
        still = post(service, dicom_bytes(frames[index]), "application/dicom").json()
        np.testing.assert_array_equal(mask_of(still) > 0, masks[index])
        assert still["route"] == body["frames"][index]["route"]
    seg = post(service, loop, "application/dicom", format="dicom-seg")
    assert seg.status_code == 200 and seg.headers["content-type"] == "application/dicom"
    dataset = pydicom.dcmread(io.BytesIO(seg.content))
    assert dataset.NumberOfFrames == 60
    np.testing.assert_array_equal(dataset.pixel_array.astype(bool), masks)
    png = post(service, loop, "application/dicom", format="png")
    assert png.status_code == 400 and "cine loop" in png.json()["detail"]
    too_long = post(service, dicom_bytes([gray[:8, :8]] * 121), "application/dicom")
    assert too_long.status_code == 413 and "121 frames" in too_long.json()["detail"]


DICOM = "application/dicom"


def dicom_without(data: bytes, *names: str) -> bytes:
    """The DICOM ``data`` without the named elements (as some exports write them)."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    for name in names:
        delattr(dataset, name)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def test_error_table_case_by_case_and_the_service_survives(service, busi_png) -> None:
    data, _ = busi_png
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    dicom = dicom_bytes(gray)
    cases = {
        "corrupt": (post(service, np.random.default_rng(0).bytes(5000)), 400),
        "empty": (post(service, b""), 400),
        "truncated png": (post(service, data[: len(data) // 2]), 400),
        "truncated dicom": (post(service, dicom[: len(dicom) // 3], "application/dicom"), 400),
        "wrong type": (post(service, b"hello", "text/plain"), 415),
        "no type": (requests.post(f"{service}/v1/segment", data=data, timeout=60), 415),
        "too many bytes": (post(service, data + b"\0" * MAX_BYTES), 413),
        "too many pixels": (post(service, png_claiming(3000, 3000)), 413),
        "bad format": (post(service, data, format="gif"), 422),
        "SEG of a PNG": (post(service, data, format="dicom-seg"), 415),
        "SEG of a DICOM without UIDs": (
            post(service, dicom_without(dicom, "SOPInstanceUID"), DICOM, format="dicom-seg"),
            400,
        ),
        "bad route": (post(service, data, route="sideways"), 422),
        "multipart without file": (
            requests.post(f"{service}/v1/segment", files={"other": ("a", b"x")}, timeout=60),
            400,
        ),
        "multipart with two files": (
            requests.post(
                f"{service}/v1/segment",
                files={"file": ("x.png", data, "image/png"), "more": ("y.png", data, "image/png")},
                timeout=60,
            ),
            400,
        ),
        "chunked, too many bytes": (
            requests.post(
                f"{service}/v1/segment",
                data=iter([data, b"\0" * MAX_BYTES]),  # no Content-Length: counted as it comes
                headers={"Content-Type": "image/png"},
                timeout=60,
            ),
            413,
        ),
    }
    wrong = {
        name: (r.status_code, r.text[:200])
        for name, (r, want) in cases.items()
        if r.status_code != want
    }
    assert not wrong
    for response, _ in cases.values():
        assert "detail" in response.json()
    assert post(service, data).status_code == 200  # no replica was harmed


def read_reply(client: socket.socket) -> bytes:
    """One whole HTTP/1.1 reply: its head, then as many body bytes as it declares (the
    head and the body may arrive in separate segments)."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = client.recv(65536)
        if not chunk:
            return reply
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    declared = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while declared and len(body) < int(declared.group(1)):
        chunk = client.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_body_slower_than_the_upload_time_is_a_408(service, busi_png) -> None:
    """A client that sends a tenth of what it declares and waits (a slow upload) gets
    a 408 once ``upload_seconds`` have passed, not a replica slot held indefinitely."""
    data, _ = busi_png
    host, port = service.removeprefix("http://").split(":")
    head = (
        "POST /v1/segment HTTP/1.1\r\n"
        f"Host: {host}\r\nContent-Type: image/png\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=60) as client:
        client.sendall(head.encode("ascii") + data[: len(data) // 10])
        start = time.monotonic()
        reply = read_reply(client)
        waited = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"did not arrive within" in reply
    assert UPLOAD_SECONDS - 0.5 <= waited < UPLOAD_SECONDS + 30
    assert post(service, data).status_code == 200  # the replica is free again


def test_health_models_and_docs(service) -> None:
    health = requests.get(f"{service}/v1/health", timeout=30)
    assert health.status_code == 200 and health.json() == {
        "status": "ok",
        "deployments": {
            "classifier": "tumorseg-classifier/1",
            "binarizer": "binarizer otsu",
            "graynet": "tumorseg-graynet/1",
            "fcn": "tumorseg-fcn/1",
        },
    }
    models = requests.get(f"{service}/v1/models", timeout=30).json()
    assert models == {
        "Classifier": "tumorseg-classifier/1",
        "GrayNet": "tumorseg-graynet/1",
        "MultiScaleFCN": "tumorseg-fcn/1",
    }
    spec = requests.get(f"{service}/openapi.json", timeout=30).json()
    assert "/v1/segment" in spec["paths"]
    assert requests.get(f"{service}/docs", timeout=30).status_code == 200
    assert "tumorseg" in requests.get(service, timeout=30).text


def test_live_alias_switch_loses_no_request(service, busi_png, champion_store) -> None:
    data, _ = busi_png
    outcomes: list[tuple[int, str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            answer = post(service, data, route="homogeneous")
            version = (
                answer.json()["model_versions"].get("graynet", "") if answer.ok else answer.text
            )
            outcomes.append((answer.status_code, version))

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    time.sleep(2)
    port = int(service.rsplit(":", 1)[1])
    deploy(app_config(champion_store, port, user_config={"model_alias": "candidate"}))
    # ^ only user_config changed: a lightweight update, replicas reconfigure in place
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (outcomes and outcomes[-1][1].endswith("/2")):
        time.sleep(0.2)
    time.sleep(1)
    stop.set()
    for thread in clients:
        thread.join(timeout=120)
    statuses = Counter(status for status, _ in outcomes)
    versions = [version for _, version in outcomes]
    assert statuses == Counter({200: len(outcomes)}), statuses
    assert versions[0].endswith("/1") and versions[-1].endswith("/2")
    assert (
        requests.get(f"{service}/v1/models", timeout=30).json()["GrayNet"] == "tumorseg-graynet/2"
    )
